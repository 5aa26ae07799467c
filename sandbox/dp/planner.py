"""Planning a dp-mode SQL query and turning exact aggregates into released noisy ones.

Supported: one SELECT over one table, or tables joined on the privacy unit;
WHERE filters; GROUP BY keys that are a categorical column with a public
category list, or an expression of one (``SUBSTRING(icd10, 1, 1)``) whose
public domain is computed from that list — every key is released, empty
groups too; COUNT(*), COUNT(x), SUM(x), AVG(x) where x is a bounded column or
arithmetic of one with literals (``2022 - birth_year``), bounds propagated.
Each person contributes at most ``max_rows_per_person`` rows, picked by a
keyed hash with a fresh secret salt (not data order); values are clamped to
their bounds. The exact aggregates are computed by DuckDB in one pass inside
the runner and never leave the worker unnoised.
"""

from __future__ import annotations

import itertools
import math
import secrets
import time
from dataclasses import dataclass
from functools import cache
from statistics import NormalDist
from typing import Any

import duckdb
import pandas as pd
import sqlglot
from sqlglot import exp

from datasets.manifest import ColumnClass, ColumnType, Manifest, Table
from policies.decision import Finding
from policies.sql_check import AGGREGATES, DIALECT, CheckedQuery, location_of
from sandbox.dp import mechanisms

MAX_GROUPS = 10_000
NUMERIC = (ColumnType.INTEGER, ColumnType.FLOAT, ColumnType.BOOLEAN)


class DpUnsupported(Exception):
    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


@dataclass(frozen=True)
class Key:
    """A released group key and every value it can take (public, from the manifest)."""

    name: str
    sql: str
    domain: tuple[Any, ...]
    # A key with no public list: its groups come from the data and are released
    # only above a noisy threshold, which costs δ.
    private: bool = False


@dataclass(frozen=True)
class Measure:
    """One noisy measurement: a count of rows (value None = COUNT(*)) or a clamped sum."""

    kind: str  # "count" | "sum"
    value: str | None  # the SQL of the counted or summed expression
    bounds: tuple[float, float] | None = None
    index: int = 0

    @property
    def alias(self) -> str:
        return f"__dp_{self.kind}_{self.index}"


@dataclass(frozen=True)
class Slot:
    """One aggregate of the query (COUNT, SUM or AVG) as a noisy value per group."""

    kind: str  # "count" | "sum" | "avg"
    measures: tuple[Measure, ...]


@dataclass(frozen=True)
class DpPlan:
    sql: str
    keys: tuple[Key, ...]
    measures: tuple[Measure, ...]
    slots: tuple[Slot, ...]
    # Post-processing of the noisy groups (the analyst's outputs, HAVING, ORDER BY,
    # LIMIT), run on the released values only, over the table "noisy".
    post_sql: str
    output_names: tuple[str, ...]
    epsilon: float
    rows_per_person: int
    # δ > 0: Gaussian noise under zCDP, the measurements' ρ composed; else Laplace.
    delta: float = 0.0

    @property
    def mechanism(self) -> str:
        return "gaussian" if self.delta > 0 else "laplace"

    @property
    def epsilon_per_measure(self) -> float:
        return self.epsilon / len(self.measures)

    @property
    def rho_per_measure(self) -> float:
        return mechanisms.rho_for(self.epsilon, self.noise_delta) / len(self.measures)

    @property
    def private_keys(self) -> bool:
        return any(k.private for k in self.keys)

    @property
    def noise_delta(self) -> float:
        """The δ the Gaussian noise may use; with private keys half goes to the threshold."""
        return self.delta / 2 if self.private_keys else self.delta

    @property
    def threshold_measure(self) -> Measure | None:
        return next((m for m in self.measures if m.kind == "persons"), None)

    def threshold(self) -> float:
        """Distinct persons a group must show (noisily) to be released.

        A person can make at most ``rows_per_person`` groups exist; each such
        group, holding that person alone, passes with probability at most
        (δ/2) / rows_per_person, so the whole release stays within δ.
        """
        measure = self.threshold_measure
        assert measure is not None and self.delta > 0
        per_group = (self.delta / 2) / self.rows_per_person
        scale = self.scale(measure)
        if self.mechanism == "gaussian":
            return 1.0 + scale * NormalDist().inv_cdf(1.0 - per_group)
        return 1.0 + scale * math.log(1.0 / (2.0 * per_group))

    def error95(self, measure: Measure) -> float:
        if self.mechanism == "gaussian":
            return mechanisms.gaussian_error95(self.scale(measure))
        return mechanisms.error95(self.scale(measure))

    @property
    def groups(self) -> int:
        if self.private_keys:
            return 1 << 62  # unknown in advance: as many as there are rows
        total = 1
        for key in self.keys:
            total *= len(key.domain)
        return total

    def sensitivity(self, measure: Measure) -> float:
        if measure.kind == "persons":
            # A person is one of the distinct persons of at most as many groups
            # as the rows they keep.
            return float(min(self.rows_per_person, self.groups))
        if measure.kind == "count":
            return float(self.rows_per_person)
        low, high = measure.bounds or (0.0, 0.0)
        return self.rows_per_person * max(abs(low), abs(high))

    def scale(self, measure: Measure) -> float:
        if self.mechanism == "gaussian":
            # A person's rows may all fall in one group: the L2 bound is the L1 bound.
            return mechanisms.gaussian_scale(self.sensitivity(measure), self.rho_per_measure)
        return mechanisms.laplace_scale(self.sensitivity(measure), self.epsilon_per_measure)


def _unsupported(message: str, node: exp.Expr | None = None) -> DpUnsupported:
    return DpUnsupported(
        Finding("dp.unsupported", message, location_of(node) if node is not None else None)
    )


def plan_dp_query(
    checked: CheckedQuery, manifest: Manifest, *, epsilon: float, delta: float = 0.0
) -> DpPlan:
    statement = checked.statement
    if statement is None or not checked.allowed:
        raise ValueError("only an allowed query can be planned")
    if not checked.is_simple:
        raise _unsupported(
            "dp mode takes one SELECT over one table or tables joined on the privacy unit "
            "(no CTE, subquery or UNION) for now.",
            statement,
        )
    assert isinstance(statement, exp.Select)
    if statement.args.get("distinct"):
        raise _unsupported("SELECT DISTINCT is not supported in dp mode.", statement)
    tables = {ref.alias: ref.table for ref in checked.tables}
    unit = manifest.privacy_unit
    first_alias = next(iter(tables))
    for table in tables.values():
        if table.view_column(unit) is None:
            raise _unsupported(f"The table {table.name} has no privacy unit {unit}.")
    _check_joins(statement, unit)

    keys: list[Key] = []
    group = statement.args.get("group")
    for position, expression in enumerate(group.expressions if group else []):
        try:
            keys.append(_key(expression, tables, position))
        except DpUnsupported:
            if delta <= 0:
                raise  # a private key needs δ for its threshold
            text = expression.sql(dialect=DIALECT, comments=False)
            name = expression.name if isinstance(expression, exp.Column) else f"__dp_key_{position}"
            keys.append(Key(name, text, (), private=True))

    measures: dict[tuple[str, str | None], Measure] = {}
    slots: dict[str, Slot] = {}
    post = statement.copy()
    for node in list(post.find_all(*AGGREGATES)):
        text = node.sql(dialect=DIALECT, comments=False)
        if text not in slots:
            slots[text] = _slot(node, tables, measures, unit)
        node.replace(exp.column(f"__dp_a{list(slots).index(text)}"))
    if not measures:
        raise _unsupported("A dp query needs at least one COUNT, SUM or AVG.", statement)
    if any(k.private for k in keys) and ("persons", f"{first_alias}.{unit}") not in measures:
        measures[("persons", f"{first_alias}.{unit}")] = Measure(
            "persons", f"{first_alias}.{unit}", None, index=len(measures)
        )
    _replace_keys(post, keys)
    for projection in post.expressions:
        outside = [c for c in projection.find_all(exp.Column) if not c.name.startswith("__dp_")]
        if outside:
            raise _unsupported(
                f"{outside[0].name} is used outside an aggregate and is not a GROUP BY key.",
                outside[0],
            )
    output_names = tuple(p.alias or p.sql(dialect=DIALECT) for p in statement.expressions)
    post_sql = _post_sql(post, statement, list(slots))

    groups = 1
    for key in keys:
        groups *= len(key.domain) if not key.private else 1
    if groups > MAX_GROUPS:
        raise _unsupported(f"The GROUP BY would release {groups} groups (at most {MAX_GROUPS}).")

    rows_per_person = max(t.max_rows_per_person for t in tables.values())
    plan_measures = tuple(measures.values())
    return DpPlan(
        sql=_exact_sql(statement, tables, keys, plan_measures, unit, rows_per_person),
        keys=tuple(keys),
        measures=plan_measures,
        slots=tuple(slots.values()),
        post_sql=post_sql,
        output_names=output_names,
        epsilon=epsilon,
        rows_per_person=rows_per_person,
        delta=delta,
    )


SPREADS = {exp.Stddev, exp.StddevSamp, exp.StddevPop, exp.Variance, exp.VariancePop}


def _replace_keys(post: exp.Select, keys: list[Key]) -> None:
    by_sql = {k.sql: i for i, k in enumerate(keys)}
    for node in list(post.walk()):
        if not isinstance(node, exp.Expr) or node is post:
            continue
        text = (
            node.sql(dialect=DIALECT, comments=False) if not isinstance(node, exp.Alias) else None
        )
        if text in by_sql and node.parent is not None:
            node.replace(exp.column(f"__dp_k{by_sql[text]}"))


def _post_sql(post: exp.Select, statement: exp.Select, slot_sql: list[str]) -> str:
    """The analyst's SELECT, re-pointed at the noisy groups; error bounds ride along."""
    for part in ("from_", "joins", "where", "group", "with_"):
        post.set(part, None)
    having = post.args.get("having")
    post.set("having", None)
    errors = []
    for index, projection in enumerate(statement.expressions):
        inner = projection.unalias().sql(dialect=DIALECT, comments=False)
        bound = f"__dp_e{slot_sql.index(inner)}" if inner in slot_sql else "NULL"
        errors.append(exp.alias_(exp.maybe_parse(bound), f"__dp_err{index}"))
    post.set("expressions", list(post.expressions) + errors)
    post = post.from_("noisy")
    if having is not None:
        post = post.where(having.this)
    return post.sql(dialect=DIALECT)


def _check_joins(statement: exp.Select, unit: str) -> None:
    """Tables join only on the privacy unit, so each joined row belongs to one person."""
    for join in statement.args.get("joins") or []:
        condition = join.args.get("on")
        kind = (join.args.get("kind") or "").upper()
        side = (join.args.get("side") or "").upper()
        if side or kind not in ("", "INNER") or condition is None:
            raise _unsupported("dp mode joins with INNER JOIN ... ON only.", join)
        equalities = list(condition.flatten()) if isinstance(condition, exp.And) else [condition]
        on_unit = any(
            isinstance(e, exp.EQ)
            and all(isinstance(s, exp.Column) and s.name == unit for s in (e.this, e.expression))
            for e in equalities
        )
        if not on_unit:
            raise DpUnsupported(
                Finding(
                    "dp.join_not_on_privacy_unit",
                    f"dp mode joins tables on the privacy unit ({unit}) only.",
                    location_of(join),
                )
            )


def _key(expression: exp.Expr, tables: dict[str, Table], position: int) -> Key:
    columns = list(expression.find_all(exp.Column))
    sources = {(c.table, c.name) for c in columns}
    if len(sources) != 1:
        raise _private_key(expression, tables)
    ((alias, name),) = sources
    column = tables[alias].view_column(name) if alias in tables else None
    if column is None or not column.categories:
        raise _private_key(expression, tables)
    text = expression.sql(dialect=DIALECT, comments=False)
    if isinstance(expression, exp.Column):
        return Key(name, text, tuple(column.categories))
    return Key(f"__dp_key_{position}", text, _domain(expression, column.categories))


def _private_key(expression: exp.Expr, tables: dict[str, Table]) -> DpUnsupported:
    public = sorted({c.name for t in tables.values() for c in t.view_columns() if c.categories})
    return DpUnsupported(
        Finding(
            "dp.private_group_key",
            "In dp mode GROUP BY takes a column with a public category list, or an expression "
            f'of one ({", ".join(public)}); other keys need δ > 0 ("delta"), and their '
            "groups are released only above a noisy threshold.",
            location_of(expression),
        )
    )


def _domain(expression: exp.Expr, categories: tuple[str, ...]) -> tuple[Any, ...]:
    """The values an expression of one categorical column takes over its public list."""
    template = expression.copy()
    for column in template.find_all(exp.Column):
        column.replace(exp.column("category", table="c"))
    return _evaluate_domain(template.sql(dialect=DIALECT), categories)


@cache
def _evaluate_domain(sql: str, categories: tuple[str, ...]) -> tuple[Any, ...]:
    # Public values only: the category list from the manifest, no data.
    connection = duckdb.connect()
    rows = connection.execute(
        f"SELECT DISTINCT {sql} AS v, MIN(i) AS first FROM (SELECT unnest(?) AS category, "
        "generate_subscripts(?, 1) AS i) AS c GROUP BY v ORDER BY first",
        [list(categories), list(categories)],
    ).fetchall()
    connection.close()
    return tuple(r[0] for r in rows)


def _slot(
    node: exp.Expr,
    tables: dict[str, Table],
    measures: dict[tuple[str, str | None], Measure],
    unit: str,
) -> Slot:
    def measure(kind: str, value: exp.Expr | None, bounds: tuple[float, float] | None) -> Measure:
        text = None if value is None else value.sql(dialect=DIALECT, comments=False)
        found = measures.get((kind, text))
        if found is None:
            found = Measure(kind, text, bounds, index=len(measures))
            measures[(kind, text)] = found
        return found

    if isinstance(node, exp.Count):
        argument = node.this
        if isinstance(argument, exp.Distinct):
            (counted,) = argument.expressions or [None]
            if isinstance(counted, exp.Column) and counted.name == unit:
                return Slot("count", (measure("persons", counted, None),))
            raise _unsupported(
                f"COUNT(DISTINCT ...) counts the privacy unit ({unit}) only in dp mode.", node
            )
        if isinstance(argument, exp.Star):
            return Slot("count", (measure("count", None, None),))
        return Slot("count", (measure("count", argument, None),))
    if isinstance(node, exp.Sum | exp.Avg):
        bounds = _bounds(node.this, tables, node)
        total = measure("sum", node.this, bounds)
        if isinstance(node, exp.Sum):
            return Slot("sum", (total,))
        return Slot("avg", (total, measure("count", node.this, None)))
    if type(node) in SPREADS:
        low, high = _bounds(node.this, tables, node)
        squared = exp.Mul(this=exp.paren(node.this.copy()), expression=exp.paren(node.this.copy()))
        square_bounds = (0.0 if low < 0 < high else min(low * low, high * high),
                         max(low * low, high * high))  # fmt: skip
        kind = (
            "stddev"
            if isinstance(node, exp.Stddev | exp.StddevSamp | exp.StddevPop)
            else "variance"
        )
        return Slot(
            kind,
            (
                measure("sum", node.this, (low, high)),
                measure("sum", squared, square_bounds),
                measure("count", node.this, None),
            ),
        )
    raise _unsupported(
        f"{node.sql(dialect=DIALECT)}: dp mode computes COUNT, SUM, AVG, VARIANCE and STDDEV "
        "of bounded values.",
        node,
    )


def _bounds(value: exp.Expr, tables: dict[str, Table], node: exp.Expr) -> tuple[float, float]:
    """Interval arithmetic: the range of a value from its column's bounds."""
    if isinstance(value, exp.Paren):
        return _bounds(value.this, tables, node)
    if isinstance(value, exp.Literal) and value.is_number:
        number = float(value.name)
        return (number, number)
    if isinstance(value, exp.Neg):
        low, high = _bounds(value.this, tables, node)
        return (-high, -low)
    if isinstance(value, exp.Column):
        table = tables.get(value.table)
        column = table.view_column(value.name) if table else None
        if column is None or column.cls in (ColumnClass.PERSON_KEY, ColumnClass.RECORD_KEY):
            raise _unsupported(f"{value.name} is a key, not a measurement.", node)
        if column.type is ColumnType.BOOLEAN:
            return (0.0, 1.0)
        if column.type in NUMERIC and column.bounds is not None:
            return (float(column.bounds[0]), float(column.bounds[1]))
        raise DpUnsupported(
            Finding(
                "dp.unbounded_column",
                f"{column.name} has no bounds in the manifest, so its sum cannot be noised.",
                location_of(node),
            )
        )
    if isinstance(value, exp.Add | exp.Sub | exp.Mul | exp.Div):
        a = _bounds(value.this, tables, node)
        b = _bounds(value.expression, tables, node)
        if isinstance(value, exp.Add):
            return (a[0] + b[0], a[1] + b[1])
        if isinstance(value, exp.Sub):
            return (a[0] - b[1], a[1] - b[0])
        if isinstance(value, exp.Mul):
            corners = [x * y for x in a for y in b]
            return (min(corners), max(corners))
        if b[0] == b[1] and b[0] != 0:  # division by a literal
            corners = [a[0] / b[0], a[1] / b[0]]
            return (min(corners), max(corners))
    raise DpUnsupported(
        Finding(
            "dp.unbounded_column",
            "dp aggregates take a bounded column, or + - * / of one with literals.",
            location_of(node),
        )
    )


def _exact_sql(
    statement: exp.Select,
    tables: dict[str, Table],
    keys: list[Key],
    measures: tuple[Measure, ...],
    unit: str,
    rows_per_person: int,
) -> str:
    """One pass in DuckDB: bound each person's rows, clamp, aggregate.

    Only persons with more rows than the bound are ranked; which of their rows
    they keep is decided by a keyed hash of each row's identity with a fresh
    secret salt: not by data order, and not predictable by the analyst.
    """
    source = statement.copy()
    where = source.args.get("where")
    where_sql = f" WHERE {where.this.sql(dialect=DIALECT)}" if where else ""
    from_sql = source.args["from_"].sql(dialect=DIALECT)
    joins_sql = " ".join(j.sql(dialect=DIALECT) for j in source.args.get("joins") or [])
    first = next(iter(tables))
    salt = secrets.token_hex(16)
    identity = " || '|' || ".join(
        _row_identity(alias, table, unit) for alias, table in tables.items()
    )
    inner = [f"{k.sql} AS __dp_k{i}" for i, k in enumerate(keys)]
    inner += [f"{m.value} AS __dp_v{m.index}" for m in measures if m.value is not None]
    inner += [f"{first}.{unit} AS __dp_person", f"{identity} AS __dp_id"]
    outer = [f"__dp_k{i}" for i in range(len(keys))]
    for m in measures:
        if m.kind == "count":
            counted = "*" if m.value is None else f"__dp_v{m.index}"
            outer.append(f'COUNT({counted}) AS "{m.alias}"')
        elif m.kind == "persons":
            outer.append(f'COUNT(DISTINCT __dp_v{m.index}) AS "{m.alias}"')
        else:
            low, high = m.bounds or (0.0, 0.0)
            value = f"CAST(__dp_v{m.index} AS DOUBLE)"
            outer.append(f'SUM(LEAST(GREATEST({value}, {low!r}), {high!r})) AS "{m.alias}"')
    group_sql = f" GROUP BY {', '.join(f'__dp_k{i}' for i in range(len(keys)))}" if keys else ""
    bound = rows_per_person
    return (
        f"WITH __dp_rows AS MATERIALIZED (SELECT {', '.join(inner)} {from_sql} {joins_sql}"
        f"{where_sql}), "
        f"__dp_heavy AS (SELECT __dp_person FROM __dp_rows GROUP BY __dp_person "
        f"HAVING COUNT(*) > {bound}), "
        f"__dp_kept AS (SELECT * FROM __dp_rows ANTI JOIN __dp_heavy USING (__dp_person) "
        f"UNION ALL SELECT * EXCLUDE (__dp_rank) FROM (SELECT r.*, row_number() OVER "
        f"(PARTITION BY r.__dp_person ORDER BY md5(r.__dp_id || '{salt}')) AS __dp_rank "
        f"FROM __dp_rows AS r SEMI JOIN __dp_heavy USING (__dp_person)) "
        f"WHERE __dp_rank <= {bound}) "
        f"SELECT {', '.join(outer)} FROM __dp_kept{group_sql}"
    )


def _row_identity(alias: str, table: Table, unit: str) -> str:
    """What tells one row of a table from another: its record key where it has one."""
    record = next((c.name for c in table.view_columns() if c.cls is ColumnClass.RECORD_KEY), None)
    if record is not None:
        return f"CAST({alias}.{record} AS VARCHAR)"
    if table.max_rows_per_person == 1:
        return f"CAST({alias}.{unit} AS VARCHAR)"
    return f"CAST({alias} AS VARCHAR)"


# Drawing the noise always takes this long: how long sampling took cannot tell
# anyone how large the noise was.
NOISE_STEP_SECONDS = 0.05


def release_noisy(plan: DpPlan, columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    index = {name: i for i, name in enumerate(columns)}
    exact: dict[tuple[Any, ...], list[Any]] = {tuple(r[: len(plan.keys)]): r for r in rows}
    if plan.private_keys:
        combos = list(exact)  # only groups the data holds; the threshold decides
    else:
        combos = list(itertools.product(*(k.domain for k in plan.keys)))
    started = time.perf_counter()
    noisy = _draw_noise(plan, index, exact, combos)
    remaining = NOISE_STEP_SECONDS - (time.perf_counter() - started)
    if remaining > 0:
        time.sleep(remaining)
    if plan.private_keys:
        measure = plan.threshold_measure
        assert measure is not None
        keep = [i for i, v in enumerate(noisy[measure]) if v > plan.threshold()]
        combos = [combos[i] for i in keep]
        noisy = {m: [values[i] for i in keep] for m, values in noisy.items()}
    frame: dict[str, list[Any]] = {
        f"__dp_k{i}": [combo[i] for combo in combos] for i in range(len(plan.keys))
    }
    for number, slot in enumerate(plan.slots):
        values, bounds = _slot_values(plan, slot, noisy, len(combos))
        frame[f"__dp_a{number}"] = values
        frame[f"__dp_e{number}"] = bounds
    connection = duckdb.connect()
    try:
        connection.register("noisy", pd.DataFrame(frame))
        cursor = connection.execute(plan.post_sql)
        result = [list(r) for r in cursor.fetchall()]
    finally:
        connection.close()
    width = len(plan.output_names)
    return {
        "columns": list(plan.output_names),
        "rows": [[_tidy(v) for v in r[:width]] for r in result],
        "error95": [[_tidy(v) for v in r[width:]] for r in result],
    }


def _draw_noise(
    plan: DpPlan,
    index: dict[str, int],
    exact: dict[tuple[Any, ...], list[Any]],
    combos: list[tuple[Any, ...]],
) -> dict[Measure, list[float]]:
    noisy: dict[Measure, list[float]] = {}
    for measure in plan.measures:
        at = index[measure.alias]
        values = [(exact[c][at] or 0) if c in exact else 0 for c in combos]
        sensitivity = plan.sensitivity(measure)
        if measure.kind in ("count", "persons"):
            counts = [int(v) for v in values]
            if plan.mechanism == "gaussian":
                drawn = mechanisms.gaussian_counts(
                    counts, sensitivity=int(sensitivity), rho=plan.rho_per_measure
                )
            else:
                drawn = mechanisms.noisy_counts(
                    counts, sensitivity=int(sensitivity), epsilon=plan.epsilon_per_measure
                )
            noisy[measure] = [float(max(0, v)) for v in drawn]
        elif plan.mechanism == "gaussian":
            noisy[measure] = mechanisms.gaussian_sums(
                [float(v) for v in values], sensitivity=sensitivity, rho=plan.rho_per_measure
            )
        else:
            noisy[measure] = mechanisms.noisy_sums(
                [float(v) for v in values],
                sensitivity=sensitivity,
                epsilon=plan.epsilon_per_measure,
            )
    return noisy


def _slot_values(
    plan: DpPlan, slot: Slot, noisy: dict[Measure, list[float]], groups: int
) -> tuple[list[Any], list[float | None]]:
    if slot.kind in ("variance", "stddev"):
        return _spread_values(slot, noisy, groups), [None] * groups
    if slot.kind == "avg":
        total_m, count_m = slot.measures
        low, high = total_m.bounds or (0.0, 0.0)
        values: list[Any] = []
        bounds: list[float | None] = []
        for position in range(groups):
            total, count = noisy[total_m][position], noisy[count_m][position]
            if count < 1:
                values.append(None)
                bounds.append(None)
                continue
            mean = min(max(total / count, low), high)
            bound = (plan.error95(total_m) + abs(mean) * plan.error95(count_m)) / count
            values.append(mean)
            bounds.append(min(bound, high - low))
        return values, bounds
    (measure,) = slot.measures
    error = plan.error95(measure)
    column = noisy[measure]
    if slot.kind == "count":
        return [int(v) for v in column], [error] * groups
    return list(column), [error] * groups


def _spread_values(slot: Slot, noisy: dict[Measure, list[float]], groups: int) -> list[Any]:
    """Sample variance (or its root) from noisy sum, sum of squares and count: post-processing."""
    total_m, squares_m, count_m = slot.measures
    low, high = total_m.bounds or (0.0, 0.0)
    widest = ((high - low) / 2) ** 2  # no bounded variable varies more
    values: list[Any] = []
    for position in range(groups):
        count = noisy[count_m][position]
        if count < 2:
            values.append(None)
            continue
        mean = noisy[total_m][position] / count
        variance = (noisy[squares_m][position] / count - mean * mean) * count / (count - 1)
        variance = min(max(variance, 0.0), widest)
        values.append(variance**0.5 if slot.kind == "stddev" else variance)
    return values


def _tidy(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if hasattr(value, "item"):
        return _tidy(value.item())
    return value


def estimates(plan: DpPlan) -> list[dict[str, Any]]:
    """What each output will cost in accuracy, known before any data is read."""
    found: list[dict[str, Any]] = []
    slots = {f"__dp_a{i}": slot for i, slot in enumerate(plan.slots)}
    post = sqlglot.parse_one(plan.post_sql, read=DIALECT)
    for name, projection in zip(plan.output_names, post.expressions, strict=False):
        inner = projection.unalias()
        slot = slots.get(inner.name) if isinstance(inner, exp.Column) else None
        if slot is None:
            kind = "key" if isinstance(inner, exp.Column) else "expression"
            found.append({"output": name, "kind": kind, "error95": None})
        elif slot.kind == "avg":
            total, count = slot.measures
            found.append({
                "output": name, "kind": "avg",
                "error95_of_sum": round(plan.error95(total), 6),
                "error95_of_count": round(plan.error95(count), 6),
                "note": "the mean's error shrinks with the group's size: about "
                        "(sum error + |mean| x count error) / count",
            })  # fmt: skip
        elif slot.kind in ("variance", "stddev"):
            note = "post-processed from noisy sums; no closed-form bound"
            found.append({"output": name, "kind": slot.kind, "error95": None, "note": note})
        else:
            (measure,) = slot.measures
            error = round(plan.error95(measure), 6)
            found.append({"output": name, "kind": slot.kind, "error95": error})
    return found
