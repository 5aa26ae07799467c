"""Output disclosure control for masked mode.

SQL jobs: the checked query is rewritten so the engine also computes, per
group, how many distinct persons stand behind the row and behind each
aggregate cell (its contributors). Rows of fewer than k persons are dropped
and cells of fewer than k contributors are suppressed; the counts themselves
are never released. Python jobs: every output must declare its count column;
rows below k are dropped, and an output that looks row-level is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlglot import exp
from sqlglot.optimizer.scope import Scope, traverse_scope

from policies.decision import Finding, PolicyError
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


@dataclass(frozen=True)
class Released:
    columns: list[str]
    rows: list[list[Any]]
    suppressed_rows: int
    suppressed_cells: int


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
    return ThresholdPlan(
        sql=statement.sql(dialect=DIALECT),
        visible=visible,
        persons_index=visible,
        contributors=contributors,
    )


def _count_persons(person: exp.Column, condition: exp.Expr | None) -> exp.Expr:
    counted: exp.Expr = person.copy()
    if condition is not None:
        counted = exp.Case(ifs=[exp.If(this=condition, true=person.copy())])
    return exp.Count(this=exp.Distinct(expressions=[counted]))


def _no_person(privacy_unit: str) -> DisclosureError:
    return DisclosureError(
        Finding(
            "masked.no_privacy_unit",
            f"The query's output cannot be traced to persons ({privacy_unit}): a derived "
            "table that aggregates must keep the person key in its GROUP BY.",
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
    if isinstance(aggregate, exp.Sum):
        # A sum of indicators is a count in disguise: only non-zero rows contribute.
        conditions.append(
            exp.NEQ(
                this=exp.TryCast(this=values[0].copy(), to=exp.DataType.build("double")),
                expression=exp.Literal.number(0),
            )
        )
    combined: exp.Expr = exp.and_(*conditions)
    return combined


def apply_threshold(
    plan: ThresholdPlan, columns: list[str], rows: list[list[Any]], *, k: int
) -> Released:
    """Drop rows of fewer than k persons; suppress cells of fewer than k contributors."""
    if len(columns) < plan.visible + 1 or columns[plan.persons_index] != PERSONS:
        raise DisclosureError(
            Finding("masked.malformed", "The engine's output does not match the checked query.")
        )
    kept: list[list[Any]] = []
    suppressed_rows = suppressed_cells = 0
    for row in rows:
        persons = row[plan.persons_index]
        if not isinstance(persons, int) or persons < k:
            suppressed_rows += 1
            continue
        out = list(row[: plan.visible])
        for index, needs in plan.contributors.items():
            if any(not isinstance(row[n], int) or row[n] < k for n in needs):
                out[index] = None
                suppressed_cells += 1
        kept.append(out)
    return Released(list(columns[: plan.visible]), kept, suppressed_rows, suppressed_cells)


def check_declared_output(
    name: str, columns: list[str], rows: list[list[Any]], declared: dict[str, Any], *, k: int
) -> Released:
    """Disclosure control of one output a Python job declared through the helper."""
    count_column = declared.get("count_column")
    if not count_column or count_column not in columns:
        raise DisclosureError(
            Finding(
                "output.undeclared_counts",
                f"The output {name} declares no count column; "
                "declare one with sandbox_job.output(..., count_column=...).",
                location=f"output {name}",
            )
        )
    for column_index, column in enumerate(columns):
        if any(isinstance(r[column_index], str) and PSEUDONYM.match(r[column_index]) for r in rows):
            raise DisclosureError(
                Finding(
                    "output.row_level",
                    f"The column {column} of output {name} holds person or record keys: "
                    "row-level outputs are never released.",
                    location=f"output {name}, column {column}",
                )
            )
    at = columns.index(count_column)
    kept, suppressed = [], 0
    for row in rows:
        count = row[at]
        if isinstance(count, bool) or not isinstance(count, int | float) or count < k:
            suppressed += 1
            continue
        kept.append(row)
    return Released(list(columns), kept, suppressed, 0)
