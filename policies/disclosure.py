"""Output disclosure control for masked mode.

SQL jobs: the checked query is rewritten so the engine also computes, per
group, how many distinct persons stand behind the row and behind each
aggregate cell (its contributors). Rows of fewer than k persons are dropped
and cells of fewer than k contributors are suppressed; the counts themselves
are never released. Python jobs: every output must declare its count column;
rows below k are dropped, and an output that looks row-level is refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp
from sqlglot.optimizer.scope import Scope, traverse_scope

from policies import output_checks
from policies.decision import Finding, PolicyError
from policies.output_checks import (
    TOP_CONTRIBUTIONS,
    Cell,
    CellKind,
    Contributions,
    DisclosureRules,
    LargestShare,
    Sketch,
    SketchedRow,
    Suppression,
    dropped_row,
    larger_share,
    rounded,
    row_suppression,
    tally,
)
from policies.sql_check import AGGREGATES, DIALECT, CheckedQuery, _branches

HIDDEN_PREFIX = "__sandbox_"
PERSONS = f"{HIDDEN_PREFIX}persons"
# What a keyed pseudonym of a person or record looks like in a view.
PSEUDONYM = re.compile(r"^[0-9a-f]{32}$")


class DisclosureError(PolicyError):
    """An output cannot be released; the message says which rule and where."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


@dataclass(frozen=True)
class ThresholdPlan:
    sql: str
    visible: int  # the analyst's own output columns come first
    persons_index: int
    # output column index -> indexes of the hidden contributor counts it depends on
    contributors: dict[int, tuple[int, ...]]
    # The hidden JSON column of per-row checks (sketch of persons, largest contributions);
    # None where the query is not one SELECT and the checks cannot be computed.
    checks_index: int | None = None
    # output column index -> positions in the checks' magnitude lists (SUM, AVG cells)
    magnitudes: dict[int, tuple[int, ...]] = field(default_factory=dict)
    # output columns that are group keys, and those that are exactly a COUNT
    keys: tuple[int, ...] = ()
    counts: tuple[int, ...] = ()
    # output column index -> the columns its aggregates read (secondary suppression)
    reads: dict[int, frozenset[str]] = field(default_factory=dict)
    # output columns holding a SUM or AVG
    magnitude_columns: tuple[int, ...] = ()

    def cell_kind(self, index: int) -> CellKind:
        if index in self.keys:
            return CellKind.KEY
        if index in self.counts:
            return CellKind.COUNT
        if index in self.magnitude_columns:
            return CellKind.MAGNITUDE
        return CellKind.OTHER


@dataclass(frozen=True)
class Released:
    columns: list[str]
    rows: list[list[Any]]
    # every dropped row and blanked cell, with every rule it failed (auditors only)
    suppressions: list[Suppression] = field(default_factory=list)
    # every row's persons, sketched (never released): the differencing checks' input
    sketches: list[SketchedRow] = field(default_factory=list)
    # why the output must wait for an auditor (empty: it may go out)
    holds: list[Finding] = field(default_factory=list)
    # the largest person's share of a released magnitude cell (auditors only); None: no
    # magnitude cell goes out, or its contributions are not known
    largest: LargestShare | None = None

    @property
    def suppressed_rows(self) -> int:
        return sum(1 for s in self.suppressions if s.column is None)

    @property
    def suppressed_cells(self) -> int:
        return sum(1 for s in self.suppressions if s.column is not None)

    @property
    def reasons(self) -> dict[str, int]:
        """Rule -> how many rows or cells failed it."""
        return tally(self.suppressions)


def plan_threshold(checked: CheckedQuery, *, privacy_unit: str) -> ThresholdPlan:
    """Rewrite an allowed query so the engine computes persons per row and per cell.

    Every released SELECT (each side of a UNION too) gets the same hidden
    columns: the distinct persons behind the row, then for each output column
    the distinct persons who contribute to its aggregates (the fewest, where a
    column holds several). A derived table that drops the person key gets it
    back as a hidden column of its own, if it does not aggregate.
    """
    if checked.statement is None:
        raise PolicyError("only an allowed query can be planned")
    statement = checked.statement.copy()
    scopes = {id(s.expression): s for s in traverse_scope(statement)}
    holders = {r.table.name for r in checked.tables if r.table.view_column(privacy_unit)}
    branches = _branches(statement)
    visible = len(branches[0].expressions)
    contributors: dict[int, tuple[int, ...]] = {}
    for branch in branches:
        person = _person_of(branch, scopes, privacy_unit, holders)
        hidden: list[exp.Expr] = [_count_persons(person, None).as_(PERSONS)]
        for index, projection in enumerate(branch.expressions[:visible]):
            counts = [
                _count_persons(person, _contribution(node))
                for node in projection.walk()
                if type(node) in AGGREGATES
            ]
            if not counts:  # a GROUP BY key: the row's own persons stand behind it
                counts = [_count_persons(person, None)]
            else:
                contributors[index] = (visible + 1 + index,)
            fewest = (
                counts[0] if len(counts) == 1 else exp.Least(this=counts[0], expressions=counts[1:])
            )
            hidden.append(fewest.as_(f"{HIDDEN_PREFIX}n{index}"))
        branch.set("expressions", branch.expressions + hidden)
    first = branches[0]
    keys = tuple(
        i
        for i, p in enumerate(first.expressions[:visible])
        if not any(type(n) in AGGREGATES for n in p.walk())
    )
    count_outputs = tuple(
        i for i, p in enumerate(first.expressions[:visible]) if isinstance(p.unalias(), exp.Count)
    )
    magnitude_values = {
        i: [n.this for n in p.walk() if isinstance(n, exp.Sum | exp.Avg)]
        for i, p in enumerate(first.expressions[:visible])
    }
    reads = {i: _reads(p) for i, p in enumerate(first.expressions[:visible])}
    magnitude_columns = tuple(i for i, found in magnitude_values.items() if found)
    if not checked.is_simple or not isinstance(statement, exp.Select):
        return ThresholdPlan(
            sql=statement.sql(dialect=DIALECT),
            visible=visible,
            persons_index=visible,
            contributors=contributors,
            keys=keys,
            counts=count_outputs,
            reads=reads,
            magnitude_columns=magnitude_columns,
        )
    person = _person_of(statement, scopes, privacy_unit, holders)
    values: list[exp.Expr] = []
    magnitudes: dict[int, tuple[int, ...]] = {}
    for index, found in magnitude_values.items():
        if found:
            magnitudes[index] = tuple(range(len(values), len(values) + len(found)))
            values += found
    checks_sql = _checks_ctes(statement, person, values)
    statement.set(
        "expressions",
        statement.expressions + [_checks_lookup(statement).as_(f"{HIDDEN_PREFIX}checks")],
    )
    return ThresholdPlan(
        sql=f"WITH {checks_sql} {statement.sql(dialect=DIALECT)}",
        visible=visible,
        persons_index=visible,
        contributors=contributors,
        checks_index=2 * visible + 1,
        magnitudes=magnitudes,
        keys=keys,
        counts=count_outputs,
        reads=reads,
        magnitude_columns=magnitude_columns,
    )


def _reads(projection: exp.Expr) -> frozenset[str]:
    """The columns the aggregates of one output column read (by name: fail closed)."""
    return frozenset(
        column.name
        for node in projection.walk()
        if type(node) in AGGREGATES
        for column in node.find_all(exp.Column)
    )


CHECKS = f"{HIDDEN_PREFIX}checks_by_group"


def _group_keys(select: exp.Select) -> list[exp.Expr]:
    group = select.args.get("group")
    return list(group.expressions) if group else []


def _checks_ctes(select: exp.Select, person: exp.Column, values: list[exp.Expr]) -> str:
    """Per group: the sketch of its persons and each magnitude's largest contributions.

    One row per (group, person) first, so contributions are persons', not rows'.
    """
    keys = _group_keys(select)
    source = select.args["from_"].sql(dialect=DIALECT)
    joins = " ".join(j.sql(dialect=DIALECT) for j in select.args.get("joins") or [])
    where = select.args.get("where")
    where_sql = f" WHERE {where.this.sql(dialect=DIALECT)}" if where else ""
    g = [f"g{i}" for i in range(len(keys))]
    per_person = [f"{k.sql(dialect=DIALECT)} AS g{i}" for i, k in enumerate(keys)]
    per_person.append(f"{person.sql(dialect=DIALECT)} AS p")
    per_person += [
        f"SUM(ABS(CAST({v.sql(dialect=DIALECT)} AS DOUBLE))) AS c{i}" for i, v in enumerate(values)
    ]
    group_list = ", ".join(g)
    by = f" GROUP BY {group_list}" if g else ""
    with_g = f"{group_list}, " if g else ""
    top = ", ".join(f"max(c{i}, {TOP_CONTRIBUTIONS})" for i in range(len(values)))
    totals = ", ".join(f"SUM(c{i})" for i in range(len(values)))
    joined = " AND ".join(f"s.g{i} IS NOT DISTINCT FROM m.g{i}" for i in range(len(keys)))
    return (
        f"{HIDDEN_PREFIX}pp AS MATERIALIZED (SELECT {', '.join(per_person)} {source} {joins}"
        f"{where_sql} GROUP BY ALL), "
        f"{HIDDEN_PREFIX}cells AS (SELECT {with_g}{output_checks.CELL_SQL} AS i, COUNT(*) AS c, "
        f"bit_xor(h) AS k, bit_xor(g) AS s FROM (SELECT {with_g}h, {output_checks.CHECK_SQL} AS g "
        f"FROM (SELECT {with_g}{output_checks.KEY_SQL} AS h FROM {HIDDEN_PREFIX}pp)), "
        f"range({output_checks.PARTITIONS}) AS r(j) GROUP BY ALL), "
        f"{CHECKS} AS MATERIALIZED (SELECT {'s.' + ', s.'.join(g) + ', ' if g else ''}"
        f"to_json({{'sketch': s.sketch, 'top': m.top, 'total': m.total}}) AS checks FROM "
        f"(SELECT {with_g}list({{'i': i, 'c': c, 'k': k, 's': s}}) AS sketch "
        f"FROM {HIDDEN_PREFIX}cells{by}) AS s "
        f"{'JOIN' if g else 'CROSS JOIN'} (SELECT {with_g}[{top}] AS top, [{totals}] AS total "
        f"{'FROM ' + HIDDEN_PREFIX + 'pp' + by if g or values else ''}) AS m"
        f"{' ON ' + joined if g else ''})"
    )


def _checks_lookup(select: exp.Select) -> exp.Expr:
    keys = _group_keys(select)
    condition = " AND ".join(
        f"c.g{i} IS NOT DISTINCT FROM {k.sql(dialect=DIALECT)}" for i, k in enumerate(keys)
    )
    text = f"(SELECT c.checks FROM {CHECKS} AS c{' WHERE ' + condition if condition else ''})"
    return exp.maybe_parse(text, dialect=DIALECT)


def _count_persons(person: exp.Column, condition: exp.Expr | None) -> exp.Expr:
    counted: exp.Expr = person.copy()
    if condition is not None:
        counted = exp.Case(ifs=[exp.If(this=condition, true=person.copy())])
    return exp.Count(this=exp.Distinct(expressions=[counted]))


def _no_person(privacy_unit: str) -> DisclosureError:
    return DisclosureError(
        Finding.of(
            "masked.no_privacy_unit",
            "The query's output cannot be traced to persons (%(unit)s): a derived "
            "table that aggregates must keep the person key in its GROUP BY.",
            unit=privacy_unit,
        )
    )


def _person_of(
    select: exp.Select, scopes: dict[int, Scope], privacy_unit: str, holders: set[str]
) -> exp.Column:
    """A column of this SELECT's sources that holds the privacy unit."""
    scope = scopes.get(id(select))
    if scope is None:
        raise _no_person(privacy_unit)
    for name, source in scope.selected_sources.items():
        _, value = source
        if isinstance(value, exp.Table):
            if value.name in holders:
                return exp.column(privacy_unit, table=name)
            continue
        inner = value.expression
        if not isinstance(inner, exp.Select):
            continue
        for projection in inner.expressions:
            target = projection.unalias()
            if isinstance(target, exp.Column) and target.name == privacy_unit:
                return exp.column(projection.alias_or_name, table=name)
        aggregates = inner.args.get("group") or any(
            type(n) in AGGREGATES for p in inner.expressions for n in p.walk()
        )
        if aggregates or inner.args.get("distinct"):
            continue
        carried = _person_of(inner, scopes, privacy_unit, holders)
        alias = f"{HIDDEN_PREFIX}person"
        if not any(p.alias_or_name == alias for p in inner.expressions):
            inner.set("expressions", inner.expressions + [carried.as_(alias)])
        return exp.column(alias, table=name)
    raise _no_person(privacy_unit)


def _contribution(aggregate: exp.Expr) -> exp.Expr | None:
    """When a row contributes to an aggregate; None for COUNT(*)."""
    argument = aggregate.this
    if isinstance(argument, exp.Star) or argument is None:
        return None
    values = argument.expressions if isinstance(argument, exp.Distinct) else [argument]
    conditions: list[exp.Expr] = [
        exp.Not(this=exp.Is(this=v.copy(), expression=exp.Null())) for v in values
    ]
    if isinstance(aggregate, exp.Sum | exp.Avg):
        # A sum of indicators is a count in disguise, and a mean times the row's count
        # is its sum: only non-zero rows contribute.
        conditions.append(
            exp.NEQ(
                this=exp.TryCast(this=values[0].copy(), to=exp.DataType.build("double")),
                expression=exp.Literal.number(0),
            )
        )
    combined: exp.Expr = exp.and_(*conditions)
    return combined


def apply_threshold(
    plan: ThresholdPlan,
    columns: list[str],
    rows: list[list[Any]],
    *,
    k: int,
    rules: DisclosureRules | None = None,
    name: str = "result",
) -> Released:
    """Drop rows of fewer than k persons; blank every cell that fails a rule
    (:func:`policies.output_checks.row_suppression`, secondary suppression
    included); round counts.

    Every row (kept or dropped) is sketched for the differencing checks.
    """
    rules = (rules or DisclosureRules()).with_threshold(k)
    if len(columns) < plan.visible + 1 or columns[plan.persons_index] != PERSONS:
        raise DisclosureError(
            Finding("masked.malformed", "The engine's output does not match the checked query.")
        )
    kept: list[list[Any]] = []
    suppressions: list[Suppression] = []
    sketches: list[SketchedRow] = []
    largest: LargestShare | None = None
    for row in rows:
        persons = row[plan.persons_index]
        persons = persons if isinstance(persons, int) else 0
        checks = _row_checks(plan, row)
        keys = tuple((columns[i], row[i]) for i in plan.keys)
        cells = [_cell(plan, row, index, checks) for index in range(plan.visible)]
        dropped = dropped_row(persons, cells, rules)
        if dropped:
            suppressions.append(Suppression(name, keys, tuple(dropped)))
            if checks is not None:
                sketches.append(SketchedRow(name, keys, persons, checks[0], False))
            continue
        blanked = row_suppression(cells, rules)
        out = list(row[: plan.visible])
        for index in range(plan.visible):
            if index in blanked:
                out[index] = None
                suppressions.append(
                    Suppression(name, keys, tuple(blanked[index]), len(kept), columns[index])
                )
            else:
                largest = larger_share(
                    largest, cells[index], table=name, keys=keys, column=columns[index]
                )
                if index in plan.counts:
                    out[index] = rounded(out[index], rules.round_base)
        kept.append(out)
        if checks is not None:
            sketches.append(SketchedRow(name, keys, persons, checks[0], True))
    holds = _near_row_level(name, len(rows), sum(1 for s in suppressions if s.column is None))
    if plan.checks_index is None:
        holds.append(
            Finding(
                "masked.checks_need_review",
                "The query is not one SELECT, so its dominance and differencing checks cannot "
                "be computed automatically: an auditor reviews the output.",
                location=f"output {name}",
            )
        )
    return Released(
        list(columns[: plan.visible]),
        kept,
        suppressions,
        sketches=sketches,
        holds=holds,
        largest=largest,
    )


def _row_checks(
    plan: ThresholdPlan, row: list[Any]
) -> tuple[Sketch, list[list[float]], list[float]] | None:
    if plan.checks_index is None:
        return None
    raw = row[plan.checks_index]
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
        sketch = Sketch.from_cells(data["sketch"] or [])
        return sketch, list(data.get("top") or []), list(data.get("total") or [])
    except (TypeError, ValueError, KeyError) as error:
        raise DisclosureError(
            Finding(
                "masked.malformed",
                "The engine's checks do not match the checked query.",
                message_id="masked.malformed.checks",
            )
        ) from error


def _cell(
    plan: ThresholdPlan,
    row: list[Any],
    index: int,
    checks: tuple[Sketch, list[list[float]], list[float]] | None,
) -> Cell:
    """What the rules read of one cell of a SQL output row."""
    kind = plan.cell_kind(index)
    if kind is CellKind.KEY:
        return Cell(kind, row[index])
    # Every column has its hidden count of contributors (the fewest where it holds several).
    contributors = row[plan.visible + 1 + index]
    contributions: tuple[Contributions, ...] = ()
    if checks is not None:
        _, top, total = checks
        contributions = tuple(
            Contributions.of(top[position], total[position])
            for position in plan.magnitudes.get(index, ())
        )
    return Cell(
        kind,
        row[index],
        contributors=contributors if isinstance(contributors, int) else 0,
        contributions=contributions,
        reads=plan.reads.get(index, frozenset()),
    )


# Hidden columns the helper's table functions add to a Python output.
HELPER_PERSONS = f"{HIDDEN_PREFIX}persons"
HELPER_TOP = f"{HIDDEN_PREFIX}top"
HELPER_TOTAL = f"{HIDDEN_PREFIX}total"
HELPER_SKETCH = f"{HIDDEN_PREFIX}sketch"
HELPER_CONTRIBUTORS = f"{HIDDEN_PREFIX}contributors"
HELPER_COLUMNS = (HELPER_PERSONS, HELPER_TOP, HELPER_TOTAL, HELPER_SKETCH, HELPER_CONTRIBUTORS)


def check_declared_output(
    name: str,
    columns: list[str],
    rows: list[list[Any]],
    declared: dict[str, Any],
    *,
    k: int,
    rules: DisclosureRules | None = None,
    verified: bool = False,
    unverified_because: str | None = None,
) -> Released:
    """Disclosure control of one output a Python job declared through the helper.

    frequency: rows below k persons dropped (the helper's own count of distinct
    persons where it made the table, else the declared count column), zeros
    suppressed, counts rounded. magnitude: made by the helper, which also
    hands over each group's largest contributions for dominance and p-percent.
    model_summary: needs the residual degrees of freedom. Anything else, or a
    table declared without what its kind needs, is held for an auditor.

    ``verified``: the sandbox computed this table itself from the view
    (``sandbox.jobs.verification``). An unverified output is checked on what
    the job declared, which its code could have forged, and held for an auditor
    unless the rules trust declarations.
    """
    checked = _check_declared(name, columns, rows, declared, k=k, rules=rules)
    trusted = verified or (rules is not None and rules.trust_python_declarations)
    if not trusted and not any(h.rule == "output.undeclared" for h in checked.holds):
        if unverified_because:
            unverified = Finding.of(
                "output.unverified",
                "The sandbox could not compute output %(output)s again from your view "
                "(%(because)s), so what the job declared about it is not trusted: an auditor "
                "reviews it. A table made by sandbox_job.frequency_table or magnitude_table "
                "directly from a DataFrame that sandbox_job.table returned is recomputed and "
                "released without review.",
                f"output {name}",
                message_id="output.unverified.because",
                output=name,
                because=unverified_because,
            )
        else:
            unverified = Finding.of(
                "output.unverified",
                "The sandbox could not compute output %(output)s again from your view, "
                "so what the job declared about it is not trusted: an auditor reviews it. A "
                "table made by sandbox_job.frequency_table or magnitude_table directly from a "
                "DataFrame that sandbox_job.table returned is recomputed and released without "
                "review.",
                f"output {name}",
                output=name,
            )
        checked.holds.append(unverified)
    return checked


def _check_declared(
    name: str,
    columns: list[str],
    rows: list[list[Any]],
    declared: dict[str, Any],
    *,
    k: int,
    rules: DisclosureRules | None,
) -> Released:
    rules = (rules or DisclosureRules()).with_threshold(k)
    _refuse_row_level(name, columns, rows)
    kind = declared.get("kind")
    visible = [c for c in columns if c not in HELPER_COLUMNS]
    if kind == "model_summary":
        return _model_summary(name, columns, rows, declared, rules)
    count_column = declared.get("count_column")
    persons_at = columns.index(HELPER_PERSONS) if HELPER_PERSONS in columns else None
    if kind not in ("frequency", "magnitude") or (
        persons_at is None and (not count_column or count_column not in columns)
    ):
        return _undeclared(name, columns, rows, visible)
    dominance_checked = kind == "magnitude" and all(
        c in columns for c in (HELPER_TOP, HELPER_TOTAL, HELPER_CONTRIBUTORS)
    )
    holds = _magnitude_unchecked(name) if kind == "magnitude" and not dominance_checked else []
    count_at = columns.index(count_column) if count_column in columns else None
    threshold_at = persons_at if persons_at is not None else count_at
    assert threshold_at is not None
    shape = _DeclaredShape(
        columns,
        visible,
        keys=[c for c in visible if c in (declared.get("by") or [])],
        count_column=count_column if isinstance(count_column, str) else None,
        value_column=_value_column(declared, visible) if dominance_checked else None,
    )
    kept: list[list[Any]] = []
    sketches: list[SketchedRow] = []
    suppressions: list[Suppression] = []
    largest: LargestShare | None = None
    for row in rows:
        count = row[threshold_at]
        keys = tuple((c, row[columns.index(c)]) for c in shape.keys)
        sketch = _helper_sketch(row, columns)
        number = int(count) if isinstance(count, int | float) and not isinstance(count, bool) else 0
        cells = shape.cells(row, persons=number)
        dropped = dropped_row(number, cells, rules)
        if dropped:
            suppressions.append(Suppression(name, keys, tuple(dropped)))
            if sketch is not None:
                sketches.append(SketchedRow(name, keys, number, sketch, False))
            continue
        blanked = row_suppression(cells, rules)
        out = []
        for index, column in enumerate(visible):
            value = cells[index].value
            if index in blanked:
                value = None
                suppressions.append(
                    Suppression(name, keys, tuple(blanked[index]), len(kept), column)
                )
            else:
                largest = larger_share(largest, cells[index], table=name, keys=keys, column=column)
                if column == shape.count_column:
                    value = rounded(value, rules.round_base)
            out.append(value)
        kept.append(out)
        if sketch is not None:
            sketches.append(SketchedRow(name, keys, number, sketch, True))
    holds += _near_row_level(name, len(rows), sum(1 for s in suppressions if s.column is None))
    return Released(visible, kept, suppressions, sketches=sketches, holds=holds, largest=largest)


# A column of a declared table whose aggregates are not known: it may read anything.
ANY_COLUMN = frozenset({"*"})


@dataclass(frozen=True)
class _DeclaredShape:
    """How the cells of a declared table's rows are read by the rules."""

    columns: list[str]
    visible: list[str]
    keys: list[str]
    count_column: str | None
    # The helper-made magnitude's own column, its contributions handed over beside it.
    value_column: str | None

    def cells(self, row: list[Any], *, persons: int) -> list[Cell]:
        return [self._cell(row, column, persons) for column in self.visible]

    def _cell(self, row: list[Any], column: str, persons: int) -> Cell:
        value = row[self.columns.index(column)]
        if column in self.keys:
            return Cell(CellKind.KEY, value)
        if column == self.count_column:
            return Cell(CellKind.COUNT, value, contributors=persons)
        if column == self.value_column:
            contributors = row[self.columns.index(HELPER_CONTRIBUTORS)]
            top = row[self.columns.index(HELPER_TOP)]
            return Cell(
                CellKind.MAGNITUDE,
                value,
                contributors=int(contributors or 0),
                contributions=(
                    Contributions.of(
                        json.loads(top) if isinstance(top, str) else top,
                        row[self.columns.index(HELPER_TOTAL)],
                    ),
                ),
                reads=ANY_COLUMN,
            )
        # Anything else the job put in the table: it is tied to every other cell.
        return Cell(CellKind.OTHER, value, reads=ANY_COLUMN)


def _value_column(declared: dict[str, Any], visible: list[str]) -> str | None:
    """The column magnitude_table named for its statistic (``sum_cost``, ``mean_cost``)."""
    column = f"{declared.get('statistic', 'sum')}_{declared.get('value')}"
    return column if column in visible else None


def _refuse_row_level(name: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Raise if a column holds person or record keys: such an output is never released."""
    for column_index, column in enumerate(columns):
        if any(isinstance(r[column_index], str) and PSEUDONYM.match(r[column_index]) for r in rows):
            raise DisclosureError(
                Finding.of(
                    "output.row_level",
                    "The column %(column)s of output %(output)s holds person or record keys: "
                    "row-level outputs are never released.",
                    f"output {name}, column {column}",
                    column=column,
                    output=name,
                )
            )


def _undeclared(
    name: str, columns: list[str], rows: list[list[Any]], visible: list[str]
) -> Released:
    """An output not declared with its counts: nothing suppressed, held for an auditor."""
    return Released(
        visible,
        [[r[columns.index(c)] for c in visible] for r in rows],
        holds=[
            Finding.of(
                "output.undeclared",
                "The output %(output)s is not declared as a frequency table, magnitude "
                "table or model summary with its counts (sandbox_job.frequency_table, "
                "magnitude_table, model_summary): an auditor reviews it.",
                f"output {name}",
                output=name,
            )
        ],
    )


def _magnitude_unchecked(name: str) -> list[Finding]:
    return [
        Finding.of(
            "output.magnitude_unchecked",
            "The magnitude output %(output)s was not made by "
            "sandbox_job.magnitude_table, so its dominance cannot be checked: "
            "an auditor reviews it.",
            f"output {name}",
            output=name,
        )
    ]


# An output most of whose rows fall below the threshold is near row level: the
# analyst is slicing persons thin; an auditor looks before anything goes out.
SPARSE_SHARE = 0.5
SPARSE_MIN_ROWS = 20


def _near_row_level(name: str, rows: int, suppressed: int) -> list[Finding]:
    if rows < SPARSE_MIN_ROWS or suppressed <= SPARSE_SHARE * rows:
        return []
    return [
        Finding.of(
            "output.near_row_level",
            "%(suppressed)s of the %(rows)s rows of output %(output)s fall below the threshold: "
            "the table is near row level, so an auditor reviews it.",
            f"output {name}",
            suppressed=suppressed,
            rows=rows,
            output=name,
        )
    ]


def _helper_sketch(row: list[Any], columns: list[str]) -> Sketch | None:
    if HELPER_SKETCH not in columns:
        return None
    raw = row[columns.index(HELPER_SKETCH)]
    try:
        return Sketch.from_list(json.loads(raw) if isinstance(raw, str) else raw)
    except (TypeError, ValueError) as error:
        raise DisclosureError(
            Finding("output.malformed", "A helper-made output lost its sketch.")
        ) from error


def _model_summary(
    name: str,
    columns: list[str],
    rows: list[list[Any]],
    declared: dict[str, Any],
    rules: DisclosureRules,
) -> Released:
    dof = declared.get("dof")
    visible = [c for c in columns if c not in HELPER_COLUMNS]
    table = [[r[columns.index(c)] for c in visible] for r in rows]
    if isinstance(dof, bool) or not isinstance(dof, int | float):
        holds = [
            Finding.of(
                "output.model_dof_unknown",
                "The model summary %(output)s declares no residual degrees of freedom "
                "(use sandbox_job.model_summary): an auditor reviews it.",
                f"output {name}",
                output=name,
            )
        ]
        return Released(visible, table, holds=holds)
    if dof < rules.min_dof:
        raise DisclosureError(
            Finding.of(
                "output.model_dof",
                "The model summary %(output)s has %(dof)s residual degrees of freedom; at least "
                "%(min_dof)s are needed, or the model can reproduce individual records.",
                f"output {name}",
                output=name,
                dof=int(dof),
                min_dof=rules.min_dof,
            )
        )
    return Released(visible, table)
