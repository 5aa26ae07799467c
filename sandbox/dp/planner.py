"""Planning a dp-mode SQL query: what it may release, and how each person is bounded.

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

import math
from collections.abc import Iterable
from functools import cache
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp

from datasets.manifest import ColumnClass, ColumnType, Manifest, Table
from policies.decision import Finding, Phrase
from policies.sql_check import AGGREGATES, DIALECT, CheckedQuery, location_of
from sandbox.dp.exact_sql import build_exact_sql
from sandbox.dp.plan import DpPlan, DpUnsupported, Key, Measure, Slot

MAX_GROUPS = 10_000
NUMERIC = (ColumnType.INTEGER, ColumnType.FLOAT, ColumnType.BOOLEAN)


def _unsupported(message: Phrase, node: exp.Expr | None = None) -> DpUnsupported:
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
    statement = _simple_select(checked)
    tables = {ref.alias: ref.table for ref in checked.tables}
    unit = manifest.privacy_unit
    first_alias = next(iter(tables))
    _check_privacy_unit(tables, unit)
    _check_joins(statement, unit)
    keys = _group_keys(statement, tables, delta=delta)

    post, measures, slots = _aggregate_slots(statement, tables, unit)
    if any(k.private for k in keys):
        _count_persons(measures, f"{first_alias}.{unit}")
    _replace_keys(post, keys)
    _check_outside_aggregates(post)
    output_names = tuple(p.alias or p.sql(dialect=DIALECT) for p in statement.expressions)
    post_sql = _post_sql(post, statement, list(slots))
    _check_release_size(keys, measures.values())

    rows_per_person = _rows_per_person(tables, rows_per_person, max_rows_per_person)
    plan_measures = tuple(measures.values())
    return DpPlan(
        sql=build_exact_sql(statement, tables, keys, plan_measures, unit, rows_per_person),
        keys=tuple(keys),
        measures=plan_measures,
        slots=tuple(slots.values()),
        post_sql=post_sql,
        output_names=output_names,
        epsilon=epsilon,
        rows_per_person=rows_per_person,
        delta=delta,
    )


def _simple_select(checked: CheckedQuery) -> exp.Select:
    """The checked query's one SELECT, refused when dp mode cannot plan its shape."""
    statement = checked.statement
    if statement is None or not checked.allowed:
        raise ValueError("only an allowed query can be planned")
    if not checked.is_simple:
        raise _unsupported(
            Phrase(
                "dp.unsupported.shape",
                "dp mode takes one SELECT over one table or tables joined on the privacy unit "
                "(no CTE, subquery or UNION) for now.",
            ),
            statement,
        )
    assert isinstance(statement, exp.Select)
    if statement.args.get("distinct"):
        raise _unsupported(
            Phrase("dp.unsupported.distinct", "SELECT DISTINCT is not supported in dp mode."),
            statement,
        )
    return statement


def _check_privacy_unit(tables: dict[str, Table], unit: str) -> None:
    for table in tables.values():
        if table.view_column(unit) is None:
            raise _unsupported(
                Phrase(
                    "dp.unsupported.no_privacy_unit",
                    "The table %(table)s has no privacy unit %(unit)s.",
                    table=table.name,
                    unit=unit,
                )
            )


def _group_keys(statement: exp.Select, tables: dict[str, Table], *, delta: float) -> list[Key]:
    """The GROUP BY keys: public ones with their domain, else private ones (δ > 0 only)."""
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
    return keys


def _aggregate_slots(
    statement: exp.Select, tables: dict[str, Table], unit: str
) -> tuple[exp.Select, dict[tuple[str, str | None], Measure], dict[str, Slot]]:
    """A copy of the SELECT with each aggregate replaced by its slot's column, the slots
    and the measures they are computed from; refused when there is no aggregate."""
    post = statement.copy()
    measures: dict[tuple[str, str | None], Measure] = {}
    slots: dict[str, Slot] = {}
    for found in list(post.find_all(*AGGREGATES)):
        # PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY x): the aggregate is the whole form
        node = found.parent if isinstance(found.parent, exp.WithinGroup) else found
        text = node.sql(dialect=DIALECT, comments=False)
        if text not in slots:
            slots[text] = _slot(node, tables, measures, unit)
        node.replace(exp.column(f"__dp_a{list(slots).index(text)}"))
    if not measures:
        raise _unsupported(
            Phrase(
                "dp.unsupported.no_aggregate",
                "A dp query needs at least one COUNT, SUM, AVG, VARIANCE, STDDEV or quantile.",
            ),
            statement,
        )
    return post, measures, slots


def _count_persons(measures: dict[tuple[str, str | None], Measure], unit_column: str) -> None:
    # A group of a private key is released only when its noisy count of persons
    # clears the threshold, so that count is measured even when no slot asks for it.
    if ("persons", unit_column) not in measures:
        measures[("persons", unit_column)] = Measure(
            "persons", unit_column, None, index=len(measures)
        )


def _check_outside_aggregates(post: exp.Select) -> None:
    """Every column left in the SELECT list is a key's or a slot's (``__dp_`` names)."""
    for projection in post.expressions:
        outside = [c for c in projection.find_all(exp.Column) if not c.name.startswith("__dp_")]
        if outside:
            raise _unsupported(
                Phrase(
                    "dp.unsupported.outside_aggregate",
                    "%(column)s is used outside an aggregate and is not a GROUP BY key.",
                    column=outside[0].name,
                ),
                outside[0],
            )


def _check_release_size(keys: list[Key], measures: Iterable[Measure]) -> None:
    """Every public key's value is released, empty groups too: bound how many, and the
    histogram buckets the quantiles need over them."""
    groups = 1
    for key in keys:
        groups *= len(key.domain) if not key.private else 1
    if groups > MAX_GROUPS:
        raise _unsupported(
            Phrase(
                "dp.unsupported.too_many_groups",
                "The GROUP BY would release %(groups)s groups (at most %(limit)s).",
                groups=groups,
                limit=MAX_GROUPS,
            )
        )
    buckets = sum(2 * len(m.candidates) for m in measures if m.kind == "quantile")
    if buckets and groups * buckets > MAX_QUANTILE_BUCKETS:
        raise _unsupported(
            Phrase(
                "dp.unsupported.too_many_buckets",
                "Quantiles over %(groups)s groups need %(buckets)s histogram buckets "
                "(at most %(limit)s): use fewer groups or quantiles.",
                groups=groups,
                buckets=groups * buckets,
                limit=MAX_QUANTILE_BUCKETS,
            )
        )


def _rows_per_person(tables: dict[str, Table], requested: int | None, limit: int | None) -> int:
    default = max(t.max_rows_per_person for t in tables.values())
    limit = default if limit is None else limit
    if requested is None:
        return min(default, limit)
    if isinstance(requested, bool) or not isinstance(requested, int) or not 1 <= requested <= limit:
        raise DpUnsupported(
            Finding.of(
                "dp.rows_per_person",
                "rows_per_person must be a whole number from 1 to %(limit)s under this grant "
                "(the dataset's default for these tables is %(default)s).",
                limit=limit,
                default=default,
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
            raise _unsupported(
                Phrase("dp.unsupported.join_kind", "dp mode joins with INNER JOIN ... ON only."),
                join,
            )
        equalities = list(condition.flatten()) if isinstance(condition, exp.And) else [condition]
        on_unit = any(
            isinstance(e, exp.EQ)
            and all(isinstance(s, exp.Column) and s.name == unit for s in (e.this, e.expression))
            for e in equalities
        )
        if not on_unit:
            raise DpUnsupported(
                Finding.of(
                    "dp.join_not_on_privacy_unit",
                    "dp mode joins tables on the privacy unit (%(unit)s) only.",
                    location_of(join),
                    unit=unit,
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
        Finding.of(
            "dp.private_group_key",
            "In dp mode GROUP BY takes a column with a public category list, or an expression "
            'of one (%(columns)s); other keys need δ > 0 ("delta"), and their '
            "groups are released only above a noisy threshold.",
            location_of(expression),
            columns=", ".join(public),
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
        alpha: float | None = None,
        candidates: tuple[float, ...] = (),
    ) -> Measure:
        text = None if value is None else value.sql(dialect=DIALECT, comments=False)
        name = kind if alpha is None else f"{kind}:{alpha!r}"
        found = measures.get((name, text))
        if found is None:
            found = Measure(
                kind, text, bounds, index=len(measures), alpha=alpha, candidates=candidates
            )
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
                Phrase(
                    "dp.unsupported.count_distinct",
                    "COUNT(DISTINCT ...) counts the privacy unit (%(unit)s) only in dp mode.",
                    unit=unit,
                ),
                node,
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
        Phrase(
            "dp.unsupported.aggregate",
            "%(aggregate)s: dp mode computes COUNT, SUM, AVG, VARIANCE, STDDEV, "
            "MEDIAN and QUANTILE_CONT/PERCENTILE_CONT of bounded values.",
            aggregate=node.sql(dialect=DIALECT),
        ),
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
            raise _unsupported(
                Phrase(
                    "dp.unsupported.within_group",
                    "WITHIN GROUP takes one ORDER BY value in dp mode.",
                ),
                node,
            )
        return order.expressions[0].this, _alpha(inner.this, node)
    if isinstance(node, exp.PercentileCont | exp.PercentileDisc):
        return node.this, _alpha(node.expression, node)
    if isinstance(node, exp.Quantile | exp.ApproxQuantile):
        return node.this, _alpha(node.args.get("quantile"), node)
    return None


def _alpha(literal: exp.Expr | None, node: exp.Expr) -> float:
    if isinstance(literal, exp.Literal) and literal.is_number and 0 <= float(literal.name) <= 1:
        return float(literal.name)
    raise _unsupported(
        Phrase(
            "dp.unsupported.quantile",
            "A quantile takes one number between 0 and 1 (0.5: the median).",
        ),
        node,
    )


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
        return _column_bounds(value, tables, node)
    if isinstance(value, exp.Add | exp.Sub | exp.Mul | exp.Div):
        a = _bounds(value.this, tables, node)
        b = _bounds(value.expression, tables, node)
        combined = _combined_bounds(value, a, b)
        if combined is not None:
            return combined
    raise DpUnsupported(
        Finding(
            "dp.unbounded_column",
            "dp aggregates take a bounded column, or + - * / of one with literals.",
            location_of(node),
            message_id="dp.unbounded_column.expression",
        )
    )


def _column_bounds(
    value: exp.Column, tables: dict[str, Table], node: exp.Expr
) -> tuple[float, float]:
    """A measured column's bounds from the manifest; a key is not a measurement."""
    table = tables.get(value.table)
    column = table.view_column(value.name) if table else None
    if column is None or column.cls in (ColumnClass.PERSON_KEY, ColumnClass.RECORD_KEY):
        raise _unsupported(
            Phrase(
                "dp.unsupported.key_measured",
                "%(column)s is a key, not a measurement.",
                column=value.name,
            ),
            node,
        )
    if column.type is ColumnType.BOOLEAN:
        return (0.0, 1.0)
    if column.type in NUMERIC and column.bounds is not None:
        return (float(column.bounds[0]), float(column.bounds[1]))
    raise DpUnsupported(
        Finding.of(
            "dp.unbounded_column",
            "%(column)s has no bounds in the manifest, so its sum cannot be noised.",
            location_of(node),
            column=column.name,
        )
    )


def _combined_bounds(
    value: exp.Add | exp.Sub | exp.Mul | exp.Div, a: tuple[float, float], b: tuple[float, float]
) -> tuple[float, float] | None:
    """The range of ``a op b``; None for a division by anything but a nonzero literal."""
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
    return None
