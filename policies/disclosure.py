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

from policies.decision import Finding, PolicyError
from policies.sql_check import AGGREGATES, DIALECT, CheckedQuery

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
    """Rewrite an allowed query so the engine computes persons per row and per cell."""
    if checked.statement is None:
        raise PolicyError("only an allowed query can be planned")
    holder = next((r for r in checked.tables if r.table.view_column(privacy_unit)), None)
    if holder is None:
        raise DisclosureError(
            Finding(
                "masked.no_privacy_unit",
                f"None of the query's tables holds the privacy unit {privacy_unit}.",
            )
        )
    person = exp.column(privacy_unit, table=holder.alias)
    statement = checked.statement.copy()
    visible = len(statement.expressions)
    hidden: list[exp.Expr] = [
        exp.Count(this=exp.Distinct(expressions=[person.copy()])).as_(PERSONS)
    ]
    contributors: dict[int, tuple[int, ...]] = {}
    for index, projection in enumerate(checked.statement.expressions):
        needs = []
        for node in projection.walk():
            if type(node) not in AGGREGATES:
                continue
            condition = _contribution(node)
            if condition is None:
                needs.append(visible)  # COUNT(*): the row's own persons
                continue
            name = f"{HIDDEN_PREFIX}n{len(hidden)}"
            counted = exp.Case(ifs=[exp.If(this=condition, true=person.copy())])
            hidden.append(exp.Count(this=exp.Distinct(expressions=[counted])).as_(name))
            needs.append(visible + len(hidden) - 1)
        if needs:
            contributors[index] = tuple(needs)
    statement.set("expressions", statement.expressions + hidden)
    return ThresholdPlan(
        sql=statement.sql(dialect=DIALECT),
        visible=visible,
        persons_index=visible,
        contributors=contributors,
    )


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
