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
import json
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
    """One noisy measurement: a count of rows (value None = COUNT(*)), a clamped sum,
    distinct persons, or a quantile selected among public candidates."""

    kind: str  # "count" | "sum" | "persons" | "quantile"
    value: str | None  # the SQL of the counted or summed expression
    bounds: tuple[float, float] | None = None
    index: int = 0
    alpha: float | None = None  # quantiles: which one (0.5: the median)
    candidates: tuple[float, ...] = ()  # quantiles: the evenly spaced values it picks from

    @property
    def alias(self) -> str:
        return f"__dp_{self.kind}_{self.index}"


@dataclass(frozen=True)
class Slot:
    """One aggregate of the query as a noisy value per group."""

    kind: str  # "count" | "sum" | "avg" | "variance" | "stddev" | "quantile"
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
        """Half-width of the 95 % interval: in the value's units; for quantiles in rows of rank."""
        if measure.kind == "quantile":
            return mechanisms.quantile_rank_error95(
                len(measure.candidates), **self.quantile_budget(measure)
            )
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

    def quantile_budget(self, measure: Measure) -> dict[str, Any]:
        """What the exponential mechanism of a quantile measure is built from."""
        assert measure.alpha is not None
        budget: dict[str, Any] = {"alpha": measure.alpha, "rows_per_person": self.rows_per_person}
        if self.mechanism == "gaussian":
            budget["rho"] = self.rho_per_measure
        else:
            budget["epsilon"] = self.epsilon_per_measure
        return budget

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
    checked: CheckedQuery,
    manifest: Manifest,
    *,
    epsilon: float,
    delta: float = 0.0,
    rows_per_person: int | None = None,
    max_rows_per_person: int | None = None,
) -> DpPlan:
    """Plan a checked query; ``rows_per_person`` overrides the manifest's bound on each
    person's rows, within ``max_rows_per_person`` (the grant's limit, else the manifest's)."""
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
    for found in list(post.find_all(*AGGREGATES)):
        # PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY x): the aggregate is the whole form
        node = found.parent if isinstance(found.parent, exp.WithinGroup) else found
        text = node.sql(dialect=DIALECT, comments=False)
        if text not in slots:
            slots[text] = _slot(node, tables, measures, unit)
        node.replace(exp.column(f"__dp_a{list(slots).index(text)}"))
    if not measures:
        raise _unsupported(
            "A dp query needs at least one COUNT, SUM, AVG, VARIANCE, STDDEV or quantile.",
            statement,
        )
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
    buckets = sum(2 * len(m.candidates) for m in measures.values() if m.kind == "quantile")
    if buckets and groups * buckets > MAX_QUANTILE_BUCKETS:
        raise _unsupported(
            f"Quantiles over {groups} groups need {groups * buckets} histogram buckets "
            f"(at most {MAX_QUANTILE_BUCKETS}): use fewer groups or quantiles."
        )

    rows_per_person = _rows_per_person(tables, rows_per_person, max_rows_per_person)
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


def _rows_per_person(tables: dict[str, Table], requested: int | None, limit: int | None) -> int:
    default = max(t.max_rows_per_person for t in tables.values())
    limit = default if limit is None else limit
    if requested is None:
        return min(default, limit)
    if isinstance(requested, bool) or not isinstance(requested, int) or not 1 <= requested <= limit:
        raise DpUnsupported(
            Finding(
                "dp.rows_per_person",
                f"rows_per_person must be a whole number from 1 to {limit} under this grant "
                f"(the dataset's default for these tables is {default}).",
            )
        )
    return requested


SPREADS = {exp.Stddev, exp.StddevSamp, exp.StddevPop, exp.Variance, exp.VariancePop}


def _replace_keys(post: exp.Select, keys: list[Key]) -> None:
    # Structural equality of parsed keys: no SQL is generated per node.
    parsed = [(sqlglot.parse_one(k.sql, read=DIALECT), i) for i, k in enumerate(keys)]
    for node in list(post.walk()):
        if not isinstance(node, exp.Expr) or node is post or isinstance(node, exp.Alias):
            continue
        found = next((i for key, i in parsed if node == key), None)
        if found is not None and node.parent is not None:
            node.replace(exp.column(f"__dp_k{found}"))


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
    def measure(
        kind: str,
        value: exp.Expr | None,
        bounds: tuple[float, float] | None,
        **extra: Any,
    ) -> Measure:
        text = None if value is None else value.sql(dialect=DIALECT, comments=False)
        name = kind if "alpha" not in extra else f"{kind}:{extra['alpha']!r}"
        found = measures.get((name, text))
        if found is None:
            found = Measure(kind, text, bounds, index=len(measures), **extra)
            measures[(name, text)] = found
        return found

    quantile = _quantile_form(node)
    if quantile is not None:
        value, alpha = quantile
        bounds = _bounds(value, tables, node)
        candidates = _candidates(bounds, integral=_is_integral(value, tables))
        return Slot(
            "quantile", (measure("quantile", value, bounds, alpha=alpha, candidates=candidates),)
        )

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
        square_bounds = (
            0.0 if low < 0 < high else min(low * low, high * high),
            max(low * low, high * high),
        )
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
        f"{node.sql(dialect=DIALECT)}: dp mode computes COUNT, SUM, AVG, VARIANCE, STDDEV, "
        "MEDIAN and QUANTILE_CONT/PERCENTILE_CONT of bounded values.",
        node,
    )


# At most this many public candidates for a quantile: a finer grid costs accuracy
# (the selection's slack grows with ln c) and a longer histogram from the runner.
MAX_CANDIDATES = 1001
# Histogram buckets the runner may hand over for a query's quantiles (a few MB of JSON).
MAX_QUANTILE_BUCKETS = 200_000


def _quantile_form(node: exp.Expr) -> tuple[exp.Expr, float] | None:
    """(value, alpha) of MEDIAN(x), QUANTILE_CONT(x, a), PERCENTILE_CONT(a) WITHIN GROUP ..."""
    if isinstance(node, exp.Median):
        return node.this, 0.5
    if isinstance(node, exp.WithinGroup):
        order = node.expression
        inner = node.this
        if (
            not isinstance(inner, exp.PercentileCont | exp.PercentileDisc)
            or not isinstance(order, exp.Order)
            or len(order.expressions) != 1
        ):
            raise _unsupported("WITHIN GROUP takes one ORDER BY value in dp mode.", node)
        return order.expressions[0].this, _alpha(inner.this, node)
    if isinstance(node, exp.PercentileCont | exp.PercentileDisc):
        return node.this, _alpha(node.expression, node)
    if isinstance(node, exp.Quantile | exp.ApproxQuantile):
        return node.this, _alpha(node.args.get("quantile"), node)
    return None


def _alpha(literal: exp.Expr | None, node: exp.Expr) -> float:
    if isinstance(literal, exp.Literal) and literal.is_number and 0 <= float(literal.name) <= 1:
        return float(literal.name)
    raise _unsupported("A quantile takes one number between 0 and 1 (0.5: the median).", node)


def _is_integral(value: exp.Expr, tables: dict[str, Table]) -> bool:
    """Whether a value is whole numbers only: integer columns, +, -, * and integer literals."""
    if isinstance(value, exp.Paren | exp.Neg):
        return _is_integral(value.this, tables)
    if isinstance(value, exp.Literal):
        return value.is_int
    if isinstance(value, exp.Column):
        table = tables.get(value.table)
        column = table.view_column(value.name) if table else None
        return column is not None and column.type in (ColumnType.INTEGER, ColumnType.BOOLEAN)
    if isinstance(value, exp.Add | exp.Sub | exp.Mul):
        return _is_integral(value.this, tables) and _is_integral(value.expression, tables)
    return False


def _candidates(bounds: tuple[float, float], *, integral: bool) -> tuple[float, ...]:
    """Public values a quantile is chosen from: every whole number, or an even grid."""
    low, high = bounds
    if high <= low:
        return (low,)
    if integral and high - low < MAX_CANDIDATES:
        return tuple(float(v) for v in range(int(math.ceil(low)), int(math.floor(high)) + 1))
    step = (high - low) / (MAX_CANDIDATES - 1)
    return tuple(low + i * step for i in range(MAX_CANDIDATES - 1)) + (high,)


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
    secret salt: not by data order, and not predictable by the analyst. Tables
    that hold one row per person (checked when a dataset is stored) need no
    bounding, and a query of row and person counts without groups has a closed
    form: each person adds min(rows, bound).
    """
    source = statement.copy()
    where = source.args.get("where")
    where_sql = f" WHERE {where.this.sql(dialect=DIALECT)}" if where else ""
    from_sql = source.args["from_"].sql(dialect=DIALECT)
    joins_sql = " ".join(j.sql(dialect=DIALECT) for j in source.args.get("joins") or [])
    first = next(iter(tables))
    inner = [f"{k.sql} AS __dp_k{i}" for i, k in enumerate(keys)]
    inner += [f"{m.value} AS __dp_v{m.index}" for m in measures if m.value is not None]
    inner += [f"{first}.{unit} AS __dp_person"]
    body = f"{from_sql} {joins_sql}{where_sql}"
    rows_sql = f"SELECT {', '.join(inner)} {body}"
    if all(t.max_rows_per_person == 1 for t in tables.values()):
        kept = f"__dp_kept AS ({rows_sql})"
    elif not keys and all(m.kind == "persons" or m.value is None for m in measures):
        hashed = [*inner[:-1], f"hash({first}.{unit}) AS __dp_person"]
        return _closed_form_counts(f"SELECT {', '.join(hashed)} {body}", measures, rows_per_person)
    else:
        identity = " || '|' || ".join(
            _row_identity(alias, table, unit) for alias, table in tables.items()
        )
        salt = secrets.token_hex(16)
        bound = rows_per_person
        # Persons are grouped by a 64-bit hash of their key (a collision would only merge
        # two persons' rows under one bound); each row gets a keyed random priority, and
        # only the few persons above the bound are ranked by it.
        bounded = [
            *inner[:-1],
            f"hash({first}.{unit}) AS __dp_person",
            f"hash({identity} || '{salt}') AS __dp_u",
        ]
        kept = (
            f"__dp_rows AS MATERIALIZED (SELECT {', '.join(bounded)} {body}), "
            f"__dp_heavy AS (SELECT __dp_person FROM __dp_rows GROUP BY __dp_person "
            f"HAVING COUNT(*) > {bound}), "
            f"__dp_kept AS (SELECT * FROM __dp_rows ANTI JOIN __dp_heavy USING (__dp_person) "
            f"UNION ALL SELECT * EXCLUDE (__dp_rank) FROM (SELECT r.*, row_number() "
            f"OVER (PARTITION BY r.__dp_person ORDER BY r.__dp_u) AS __dp_rank "
            f"FROM __dp_rows AS r SEMI JOIN __dp_heavy USING (__dp_person)) "
            f"WHERE __dp_rank <= {bound})"
        )
    outer = [f"__dp_k{i}" for i in range(len(keys))]
    for m in measures:
        if m.kind == "count":
            counted = "*" if m.value is None else f"__dp_v{m.index}"
            outer.append(f'COUNT({counted}) AS "{m.alias}"')
        elif m.kind == "persons":
            outer.append(f'COUNT(DISTINCT __dp_v{m.index}) AS "{m.alias}"')
        elif m.kind == "quantile":
            outer.append(f'{_bucket_histogram(m)} AS "{m.alias}"')
        else:
            low, high = m.bounds or (0.0, 0.0)
            value = f"CAST(__dp_v{m.index} AS DOUBLE)"
            outer.append(f'SUM(LEAST(GREATEST({value}, {low!r}), {high!r})) AS "{m.alias}"')
    group_sql = f" GROUP BY {', '.join(f'__dp_k{i}' for i in range(len(keys)))}" if keys else ""
    return f"WITH {kept} SELECT {', '.join(outer)} FROM __dp_kept{group_sql}"


def _closed_form_counts(rows_sql: str, measures: tuple[Measure, ...], bound: int) -> str:
    """COUNT(*) and COUNT(DISTINCT person) without groups: every person adds min(rows, bound)
    rows and one person, whichever rows a random bounding would keep."""
    outer = [
        f'CAST(SUM(LEAST(__dp_n, {bound})) AS BIGINT) AS "{m.alias}"'
        if m.kind == "count"
        else f'COUNT(*) AS "{m.alias}"'
        for m in measures
    ]
    return (
        f"WITH __dp_rows AS ({rows_sql}), __dp_persons AS (SELECT __dp_person, COUNT(*) AS __dp_n "
        f"FROM __dp_rows GROUP BY __dp_person) SELECT {', '.join(outer)} FROM __dp_persons"
    )


def _bucket_histogram(measure: Measure) -> str:
    """Counts of clamped values at and between a quantile's candidates, as JSON.

    Bucket 2i holds the values equal to candidate i, bucket 2i+1 those strictly
    between candidates i and i+1: all the exponential mechanism's scores need.
    """
    candidates = measure.candidates
    low, high = candidates[0], candidates[-1]
    value = f"LEAST(GREATEST(CAST(__dp_v{measure.index} AS DOUBLE), {low!r}), {high!r})"
    if len(candidates) == 1:
        return f"to_json(histogram(CASE WHEN {value} IS NOT NULL THEN 0 END))::VARCHAR"
    step = (high - low) / (len(candidates) - 1)
    position = f"(({value} - {low!r}) / {step!r})"
    bucket = (
        f"CASE WHEN {position} = floor({position}) THEN 2 * CAST({position} AS BIGINT) "
        f"ELSE 2 * CAST(floor({position}) AS BIGINT) + 1 END"
    )
    return f"to_json(histogram({bucket}))::VARCHAR"


def _row_identity(alias: str, table: Table, unit: str) -> str:
    """What tells one row of a table from another: its record key where it has one."""
    record = next((c.name for c in table.view_columns() if c.cls is ColumnClass.RECORD_KEY), None)
    if record is not None:
        return f"CAST({alias}.{record} AS VARCHAR)"
    if table.max_rows_per_person == 1:
        return f"CAST({alias}.{unit} AS VARCHAR)"
    return f"CAST({alias} AS VARCHAR)"


# Drawing the noise always takes this long, fixed by how many values are drawn
# (known before any is): how long sampling took cannot tell anyone how large the
# noise was. A draw takes about 0.6 ms plus 40-85 µs a value on this class of
# machine, so the step leaves several times that.
NOISE_STEP_SECONDS = 0.012
NOISE_STEP_PER_VALUE_SECONDS = 0.00015


def noise_step_seconds(plan: DpPlan, groups: int) -> float:
    return NOISE_STEP_SECONDS + NOISE_STEP_PER_VALUE_SECONDS * groups * len(plan.measures)


def release_noisy(plan: DpPlan, columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    index = {name: i for i, name in enumerate(columns)}
    exact: dict[tuple[Any, ...], list[Any]] = {tuple(r[: len(plan.keys)]): r for r in rows}
    if plan.private_keys:
        combos = list(exact)  # only groups the data holds; the threshold decides
    else:
        combos = list(itertools.product(*(k.domain for k in plan.keys)))
    started = time.perf_counter()
    noisy = _draw_noise(plan, index, exact, combos)
    remaining = noise_step_seconds(plan, len(combos)) - (time.perf_counter() - started)
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
    picked = _plain_projection(plan.post_sql)
    if picked is not None:  # nothing to compute: pick the columns
        result = [[frame[c][i] if c else None for c in picked] for i in range(len(combos))]
    else:
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
        # "value": ± in the output's own units; "rank": ± rows of rank (quantiles)
        "error95_units": [_units(slot) for slot in _output_slots(plan)],
    }


@cache
def _plain_projection(post_sql: str) -> tuple[str | None, ...] | None:
    """The noisy columns the outputs are, in order, when the post-processing only picks
    columns (no arithmetic, HAVING, ORDER BY or LIMIT); else None."""
    post = sqlglot.parse_one(post_sql, read=DIALECT)
    if any(post.args.get(part) for part in ("where", "order", "limit", "offset", "distinct")):
        return None
    picked: list[str | None] = []
    for projection in post.expressions:
        inner = projection.unalias()
        if isinstance(inner, exp.Column) and inner.name.startswith("__dp_"):
            picked.append(inner.name)
        elif isinstance(inner, exp.Null):
            picked.append(None)
        else:
            return None
    return tuple(picked)


def _units(slot: Slot | None) -> str | None:
    if slot is None or slot.kind in ("variance", "stddev"):
        return None
    return "rank" if slot.kind == "quantile" else "value"


def _output_slots(plan: DpPlan) -> list[Slot | None]:
    """The aggregate behind each output, where the output is one aggregate as it stands."""
    slots = {f"__dp_a{i}": slot for i, slot in enumerate(plan.slots)}
    post = sqlglot.parse_one(plan.post_sql, read=DIALECT)
    found: list[Slot | None] = []
    for projection in post.expressions[: len(plan.output_names)]:
        inner = projection.unalias()
        found.append(slots.get(inner.name) if isinstance(inner, exp.Column) else None)
    return found


def _draw_noise(
    plan: DpPlan,
    index: dict[str, int],
    exact: dict[tuple[Any, ...], list[Any]],
    combos: list[tuple[Any, ...]],
) -> dict[Measure, list[float]]:
    noisy: dict[Measure, list[float]] = {}
    for measure in plan.measures:
        at = index[measure.alias]
        if measure.kind == "quantile":
            noisy[measure] = [
                _noisy_quantile(plan, measure, exact[c][at] if c in exact else None) for c in combos
            ]
            continue
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


def _noisy_quantile(plan: DpPlan, measure: Measure, histogram: str | None) -> float:
    """Select one candidate with OpenDP's report-noisy-max over the histogram's scores.

    An empty group still gets a (pure noise) answer: whether a group holds
    anyone is not released through the quantile.
    """
    counts = {int(k): int(v) for k, v in json.loads(histogram or "{}").items()}
    candidates = measure.candidates
    total = sum(counts.values())
    below, equal, running = [], [], 0
    for i in range(len(candidates)):
        below.append(running)
        equal.append(counts.get(2 * i, 0))
        running += counts.get(2 * i, 0) + counts.get(2 * i + 1, 0)
    scores = mechanisms.quantile_scores(below, equal, total, measure.alpha or 0.5)
    index = mechanisms.noisy_quantile_index(scores, **plan.quantile_budget(measure))
    return candidates[index]


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
    if slot.kind == "quantile":
        return [_tidy(v) for v in column], [round(error, 1)] * groups
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
    post = sqlglot.parse_one(plan.post_sql, read=DIALECT)
    for name, projection, slot in zip(
        plan.output_names, post.expressions, _output_slots(plan), strict=False
    ):
        inner = projection.unalias()
        if slot is None:
            kind = "key" if isinstance(inner, exp.Column) else "expression"
            found.append({"output": name, "kind": kind, "error95": None})
        elif slot.kind == "quantile":
            (measure,) = slot.measures
            low, high = measure.candidates[0], measure.candidates[-1]
            step = (high - low) / max(1, len(measure.candidates) - 1)
            found.append(
                {
                    "output": name,
                    "kind": "quantile",
                    "alpha": measure.alpha,
                    "rank_error95": round(plan.error95(measure), 1),
                    "resolution": round(step, 6),
                    "note": "one of the public candidates between the bounds; with 95 % "
                    "it lies within rank_error95 rows of the exact quantile's rank",
                }
            )
        elif slot.kind == "avg":
            total, count = slot.measures
            found.append(
                {
                    "output": name,
                    "kind": "avg",
                    "error95_of_sum": round(plan.error95(total), 6),
                    "error95_of_count": round(plan.error95(count), 6),
                    "note": "the mean's error shrinks with the group's size: about "
                    "(sum error + |mean| x count error) / count",
                }
            )
        elif slot.kind in ("variance", "stddev"):
            note = "post-processed from noisy sums; no closed-form bound"
            found.append({"output": name, "kind": slot.kind, "error95": None, "note": note})
        else:
            (measure,) = slot.measures
            error = round(plan.error95(measure), 6)
            found.append({"output": name, "kind": slot.kind, "error95": error})
    return found
