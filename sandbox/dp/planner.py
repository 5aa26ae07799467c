"""Planning a dp-mode SQL query and turning exact aggregates into released noisy ones.

Supported (first version): one table, WHERE filters, GROUP BY columns that have
a public category list in the manifest (every key is released, empty groups
too), and COUNT(*), COUNT(col), SUM(col), AVG(col) with col numeric and
bounded. Each person contributes at most the table's ``max_rows_per_person``
rows, picked by a keyed hash (not data order) before aggregation; values are
clamped to the manifest's bounds. The exact aggregates are computed by DuckDB
in one pass inside the runner and never leave the worker unnoised.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from datasets.manifest import Column, ColumnClass, ColumnType, Manifest
from policies.decision import Finding
from policies.sql_check import DIALECT, CheckedQuery, location_of
from sandbox.dp import mechanisms

MAX_GROUPS = 10_000
NUMERIC = (ColumnType.INTEGER, ColumnType.FLOAT, ColumnType.BOOLEAN)


class DpUnsupported(Exception):
    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


@dataclass(frozen=True)
class Measure:
    """One noisy measurement: a count of rows (column None = COUNT(*)) or a clamped sum."""

    kind: str  # "count" | "sum"
    column: str | None
    bounds: tuple[float, float] | None = None

    @property
    def alias(self) -> str:
        return f"__dp_{self.kind}_{self.column or 'rows'}"


@dataclass(frozen=True)
class Output:
    name: str
    kind: str  # "key" | "count" | "sum" | "avg"
    key_index: int | None = None
    measures: tuple[Measure, ...] = ()


@dataclass(frozen=True)
class DpPlan:
    sql: str
    keys: tuple[Column, ...]
    measures: tuple[Measure, ...]
    outputs: tuple[Output, ...]
    epsilon: float
    rows_per_person: int

    @property
    def epsilon_per_measure(self) -> float:
        return self.epsilon / len(self.measures)

    def sensitivity(self, measure: Measure) -> float:
        if measure.kind == "count":
            return float(self.rows_per_person)
        low, high = measure.bounds or (0.0, 0.0)
        return self.rows_per_person * max(abs(low), abs(high))

    def scale(self, measure: Measure) -> float:
        return mechanisms.laplace_scale(self.sensitivity(measure), self.epsilon_per_measure)


def _unsupported(message: str, node: exp.Expr | None = None) -> DpUnsupported:
    return DpUnsupported(
        Finding("dp.unsupported", message, location_of(node) if node is not None else None)
    )


def plan_dp_query(checked: CheckedQuery, manifest: Manifest, *, epsilon: float) -> DpPlan:
    statement = checked.statement
    if statement is None or not checked.allowed:
        raise ValueError("only an allowed query can be planned")
    if not checked.is_simple:
        raise _unsupported(
            "dp mode takes one SELECT over one table for now (no CTE, subquery or UNION).",
            statement,
        )
    assert isinstance(statement, exp.Select)
    if len(checked.tables) != 1:
        raise _unsupported("dp mode reads one table per query for now (no JOIN).", statement)
    for part in ("having", "order", "limit", "offset", "distinct"):
        if statement.args.get(part):
            raise _unsupported(
                f"{part.upper()} is not supported in dp mode yet.", statement.args[part]
            )
    ref = checked.tables[0]
    table = ref.table
    person = table.view_column(manifest.privacy_unit)
    if person is None:
        raise _unsupported(f"The table {table.name} has no privacy unit {manifest.privacy_unit}.")

    keys: list[Column] = []
    group = statement.args.get("group")
    for key in group.expressions if group else []:
        column = _plain_column(key, table, statement)
        if column is None or not column.categories:
            raise DpUnsupported(
                Finding(
                    "dp.private_group_key",
                    "In dp mode GROUP BY takes columns with a public category list "
                    f"({', '.join(c.name for c in table.view_columns() if c.categories)}).",
                    location_of(key),
                )
            )
        keys.append(column)

    measures: dict[Measure, None] = {}
    outputs: list[Output] = []
    for projection in statement.expressions:
        inner = projection.unalias()
        name = projection.alias or projection.sql(dialect=DIALECT)
        column = _plain_column(inner, table, statement) if isinstance(inner, exp.Column) else None
        if column is not None and column in keys:
            outputs.append(Output(name, "key", key_index=keys.index(column)))
            continue
        output = _aggregate_output(inner, name, table)
        measures.update(dict.fromkeys(output.measures))
        outputs.append(output)
    if not measures:
        raise _unsupported("A dp query needs at least one COUNT, SUM or AVG.", statement)

    groups = 1
    for key in keys:
        groups *= len(key.categories or ())
    if groups > MAX_GROUPS:
        raise _unsupported(f"The GROUP BY would release {groups} groups (at most {MAX_GROUPS}).")

    plan_measures = tuple(measures)
    return DpPlan(
        sql=_exact_sql(statement, ref.alias, table, keys, plan_measures, person.name),
        keys=tuple(keys),
        measures=plan_measures,
        outputs=tuple(outputs),
        epsilon=epsilon,
        rows_per_person=table.max_rows_per_person,
    )


def _plain_column(node: exp.Expr, table: Any, statement: exp.Select) -> Column | None:
    if isinstance(node, exp.Literal) and node.is_int:
        index = int(node.name) - 1
        if 0 <= index < len(statement.expressions):
            node = statement.expressions[index].unalias()
    if isinstance(node, exp.Column):
        found: Column | None = table.view_column(node.name)
        if found is None:
            aliases = {p.alias.lower(): p.unalias() for p in statement.expressions if p.alias}
            target = aliases.get(node.name.lower())
            if isinstance(target, exp.Column):
                found = table.view_column(target.name)
        return found
    return None


def _aggregate_output(node: exp.Expr, name: str, table: Any) -> Output:
    if isinstance(node, exp.Count):
        argument = node.this
        if isinstance(argument, exp.Distinct):
            raise _unsupported("COUNT(DISTINCT ...) is not supported in dp mode yet.", node)
        if isinstance(argument, exp.Star):
            return Output(name, "count", measures=(Measure("count", None),))
        column = _bounded_column(argument, table, node, need_bounds=False)
        return Output(name, "count", measures=(Measure("count", column.name),))
    if isinstance(node, exp.Sum):
        column = _bounded_column(node.this, table, node, need_bounds=True)
        return Output(name, "sum", measures=(Measure("sum", column.name, _bounds(column)),))
    if isinstance(node, exp.Avg):
        column = _bounded_column(node.this, table, node, need_bounds=True)
        return Output(
            name,
            "avg",
            measures=(Measure("sum", column.name, _bounds(column)), Measure("count", column.name)),
        )
    raise _unsupported(
        f"{name}: dp mode releases GROUP BY keys and COUNT, SUM or AVG of a column.", node
    )


def _bounds(column: Column) -> tuple[float, float]:
    if column.type is ColumnType.BOOLEAN:
        return (0.0, 1.0)
    low, high = column.bounds or (0.0, 0.0)
    return (float(low), float(high))


def _bounded_column(argument: exp.Expr, table: Any, node: exp.Expr, *, need_bounds: bool) -> Column:
    column = table.view_column(argument.name) if isinstance(argument, exp.Column) else None
    if column is None:
        raise _unsupported("dp aggregates take a plain column of the table.", node)
    if column.cls in (ColumnClass.PERSON_KEY, ColumnClass.RECORD_KEY) and need_bounds:
        raise _unsupported(f"{column.name} is a key, not a measurement.", node)
    if need_bounds and (
        column.type not in NUMERIC or (column.bounds is None and column.type != ColumnType.BOOLEAN)
    ):
        raise DpUnsupported(
            Finding(
                "dp.unbounded_column",
                f"{column.name} has no bounds in the manifest, so its sum cannot be noised.",
                location_of(node),
            )
        )
    return column


def _exact_sql(
    statement: exp.Select,
    alias: str,
    table: Any,
    keys: list[Column],
    measures: tuple[Measure, ...],
    person: str,
) -> str:
    where = statement.args.get("where")
    where_sql = f" WHERE {where.this.sql(dialect=DIALECT)}" if where else ""
    record = next((c.name for c in table.view_columns() if c.cls is ColumnClass.RECORD_KEY), None)
    # Which rows a person keeps is decided by a keyed hash with a fresh secret
    # salt: not by data order, and not predictable by the analyst.
    salt = secrets.token_hex(16)
    keyed = f"{alias}.{record}" if record else alias  # a table's alias is its whole row
    order = f"md5(CAST({keyed} AS VARCHAR) || '{salt}')"
    key_sql = ", ".join(f'"{k.name}"' for k in keys)
    aggregates = []
    for measure in measures:
        if measure.kind == "count":
            inner = "*" if measure.column is None else f'"{measure.column}"'
            aggregates.append(f'COUNT({inner}) AS "{measure.alias}"')
        else:
            low, high = measure.bounds or (0.0, 0.0)
            value = f'CAST("{measure.column}" AS DOUBLE)'
            aggregates.append(
                f'SUM(LEAST(GREATEST({value}, {low!r}), {high!r})) AS "{measure.alias}"'
            )
    select_list = ", ".join(([key_sql] if keys else []) + aggregates)
    group_sql = f" GROUP BY {key_sql}" if keys else ""
    return (
        f"SELECT {select_list} FROM (SELECT * FROM (SELECT {alias}.*, row_number() OVER "
        f'(PARTITION BY "{person}" ORDER BY {order}) AS __dp_rank '
        f'FROM "{table.name}" AS {alias}{where_sql}) WHERE __dp_rank <= '
        f"{table.max_rows_per_person}){group_sql}"
    )


def release_noisy(plan: DpPlan, columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    """Noise the exact aggregates; every public key combination gets a row."""
    index = {name: i for i, name in enumerate(columns)}
    exact: dict[tuple[Any, ...], list[Any]] = {tuple(r[: len(plan.keys)]): r for r in rows}
    combos = list(itertools.product(*(k.categories or () for k in plan.keys)))
    noisy: dict[Measure, list[float]] = {}
    for measure in plan.measures:
        at = index[measure.alias]
        values = [(exact[c][at] or 0) if c in exact else 0 for c in combos]
        if measure.kind == "count":
            noisy[measure] = [
                float(max(0, v))
                for v in mechanisms.noisy_counts(
                    [int(v) for v in values],
                    sensitivity=int(plan.sensitivity(measure)),
                    epsilon=plan.epsilon_per_measure,
                )
            ]
        else:
            noisy[measure] = mechanisms.noisy_sums(
                [float(v) for v in values],
                sensitivity=plan.sensitivity(measure),
                epsilon=plan.epsilon_per_measure,
            )
    out_rows: list[list[Any]] = []
    errors: list[list[float | None]] = []
    for position, combo in enumerate(combos):
        row: list[Any] = []
        row_errors: list[float | None] = []
        for output in plan.outputs:
            if output.kind == "key":
                row.append(combo[output.key_index or 0])
                row_errors.append(None)
            elif output.kind == "avg":
                total_m, count_m = output.measures
                total, count = noisy[total_m][position], noisy[count_m][position]
                low, high = total_m.bounds or (0.0, 0.0)
                if count >= 1:
                    mean = min(max(total / count, low), high)
                    bound = (
                        mechanisms.error95(plan.scale(total_m))
                        + abs(mean) * mechanisms.error95(plan.scale(count_m))
                    ) / count
                    row.append(round(mean, 6))
                    row_errors.append(round(min(bound, high - low), 6))
                else:
                    row.append(None)
                    row_errors.append(None)
            else:
                (measure,) = output.measures
                value = noisy[measure][position]
                row.append(int(value) if output.kind == "count" else round(value, 6))
                row_errors.append(round(mechanisms.error95(plan.scale(measure)), 6))
        out_rows.append(row)
        errors.append(row_errors)
    return {
        "columns": [o.name for o in plan.outputs],
        "rows": out_rows,
        "error95": errors,
    }
