"""One implementation of each disclosure rule, through the SQL path and the Python path alike.

The SQL path: a checked query planned by ``plan_threshold``, run by DuckDB,
checked by ``apply_threshold``. The Python path: the helper's own
``magnitude_of`` (what the worker recomputes from the view), checked by
``check_declared_output``. Both build cells for ``output_checks.row_suppression``.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasets.health_manifest import HEALTH
from policies.disclosure import Released, apply_threshold, check_declared_output, plan_threshold
from policies.output_checks import (
    Cell,
    CellKind,
    Contributions,
    DisclosureRules,
    cell_failures,
    row_suppression,
)
from policies.sql_check import check_sql
from runners.harness import sandbox_job
from runners.harness.harness import frame_cells

RULES = DisclosureRules()
QUERY = (
    "SELECT department, COUNT(*) AS n, COUNT(cost) AS n_cost, SUM(cost) AS s, AVG(cost) AS m "
    "FROM visits GROUP BY department ORDER BY department"
)


def sql_path(sql: str, visits: pd.DataFrame, rules: DisclosureRules = RULES) -> Released:
    plan = plan_threshold(check_sql(sql, HEALTH, mode="masked"), privacy_unit="person_id")
    con = duckdb.connect()
    con.register("visits", visits)
    cursor = con.execute(plan.sql)
    columns = [d[0] for d in cursor.description]
    rows = [list(r) for r in cursor.fetchall()]
    return apply_threshold(plan, columns, rows, k=rules.threshold, rules=rules)


def python_path(
    visits: pd.DataFrame, value: str, statistic: str, rules: DisclosureRules = RULES
) -> Released:
    """A helper-made magnitude table as the worker checks it once it has recomputed it."""
    visible, hidden = sandbox_job.magnitude_of(visits, ["department"], value, statistic)
    columns, rows = frame_cells(sandbox_job.joined(visible, hidden))
    declared = {
        "kind": "magnitude",
        "count_column": "n",
        "by": ["department"],
        "value": value,
        "statistic": statistic,
    }
    return check_declared_output(
        statistic, columns, rows, declared, k=rules.threshold, rules=rules, verified=True
    )


def visits_of(values: dict[str, list[float | None]]) -> pd.DataFrame:
    """One visit per person: department -> the persons' values."""
    rows = [
        {"person_id": f"{d}{i}", "department": d, "cost": v}
        for d, persons in values.items()
        for i, v in enumerate(persons)
    ]
    return pd.DataFrame(rows).astype({"cost": "float64"})


def by_group(released: Released) -> dict[str, dict[str, Any]]:
    return {row[0]: dict(zip(released.columns, row, strict=True)) for row in released.rows}


# --- the three defects the ACRO comparison found -----------------------------------------


def test_a_zero_sum_is_suppressed_by_both_paths_and_says_why() -> None:
    # 12 persons in 内科, every value 0: a sum of 0 says "no one" (zeros are disclosive).
    visits = visits_of({"内科": [0.0] * 12, "外科": [100.0 + i for i in range(12)]})
    sql = by_group(sql_path(QUERY, visits))
    python = by_group(python_path(visits, "cost", "sum"))
    assert sql["内科"]["s"] is None and python["内科"]["sum_cost"] is None
    assert sql["外科"]["s"] == python["外科"]["sum_cost"] == sum(100.0 + i for i in range(12))
    (cell,) = [s for s in python_path(visits, "cost", "sum").suppressions]
    assert cell.rules == ("threshold", "zero")  # every rule the cell fails
    lenient = DisclosureRules(zeros_disclosive=False)  # the owner's explicit choice
    assert by_group(python_path(visits, "cost", "sum", lenient))["内科"]["sum_cost"] == 0.0
    assert by_group(sql_path(QUERY, visits, lenient))["内科"]["s"] == 0.0


def test_a_blanked_sum_is_not_given_back_by_its_mean_and_count() -> None:
    # 356 persons, 3 of them with a non-zero value: the SUM of 3 is a count in disguise.
    visits = visits_of({"内科": [1.0] * 3 + [0.0] * 353})
    (row,) = sql_path(QUERY, visits).rows
    department, n, n_cost, s, m = row
    assert (n, n_cost) == (356, 356)
    assert s is None and m is None  # 0.008427 × 356 would give back the 3
    # A mean of a shifted column is tied to the SUM by the column it reads: blanked too.
    shifted = sql_path(
        "SELECT department, COUNT(*) AS n, SUM(cost) AS s, AVG(cost + 1) AS m1 "
        "FROM visits GROUP BY department",
        visits,
    )
    assert shifted.rows == [["内科", 356, None, None]]
    assert [(c.column, c.rules) for c in shifted.suppressions] == [
        ("s", ("threshold",)),
        ("m1", ("secondary",)),
    ]
    # The Python helper's sum and mean tables agree with each other and with SQL.
    assert by_group(python_path(visits, "cost", "sum"))["内科"]["sum_cost"] is None
    assert by_group(python_path(visits, "cost", "mean"))["内科"]["mean_cost"] is None


def test_dominance_and_p_percent_fail_on_their_boundary() -> None:
    # Two persons hold exactly 90 % (450 + 450 of 1000): safe only below K.
    dominated = visits_of({"内科": [450.0, 450.0] + [10.0] * 10})
    assert by_group(sql_path(QUERY, dominated))["内科"]["s"] is None
    assert by_group(python_path(dominated, "cost", "sum"))["内科"]["sum_cost"] is None
    # The rest is exactly 10 % of the largest (600 + 100, then 60 over 10 persons).
    p_edge = visits_of({"内科": [600.0, 100.0] + [6.0] * 10})
    rules = DisclosureRules(dominance_k=0.99)  # dominance aside
    assert by_group(sql_path(QUERY, p_edge, rules))["内科"]["s"] is None
    assert by_group(python_path(p_edge, "cost", "sum", rules))["内科"]["sum_cost"] is None
    (cell,) = python_path(p_edge, "cost", "sum", rules).suppressions
    assert cell.rules == ("p_percent",)
    # Just inside the boundary both go out.
    inside = visits_of({"内科": [600.0, 100.0] + [6.1] * 10})
    assert by_group(sql_path(QUERY, inside, rules))["内科"]["s"] is not None
    assert by_group(python_path(inside, "cost", "sum", rules))["内科"]["sum_cost"] is not None


def test_every_failing_rule_is_reported_in_order() -> None:
    cell = Cell(
        CellKind.MAGNITUDE,
        1000.0,
        contributors=3,
        contributions=(Contributions.of([950.0, 30.0, 20.0], 1000.0),),
    )
    assert cell_failures(cell, RULES) == ["threshold", "dominance", "p_percent"]
    assert cell_failures(Cell(CellKind.KEY, "内科"), RULES) == []
    assert cell_failures(Cell(CellKind.COUNT, 0, contributors=0), RULES) == ["threshold", "zero"]


def test_counts_are_never_blanked_for_another_cell() -> None:
    cells = [
        Cell(CellKind.KEY, "内科"),
        Cell(CellKind.COUNT, 40, contributors=40, reads=frozenset({"cost"})),
        Cell(CellKind.MAGNITUDE, 3.0, contributors=3, reads=frozenset({"cost"})),
        Cell(CellKind.MAGNITUDE, 9.0, contributors=40, reads=frozenset({"length_of_stay"})),
    ]
    assert row_suppression(cells, RULES) == {2: ["threshold"]}


# --- the invariant: no suppressed cell can be computed from its row -----------------------

values = st.one_of(
    st.none(),
    st.just(0.0),
    st.sampled_from([1.0, 2.0, 5.0]),
    st.floats(0.5, 100.0, allow_nan=False),
    st.just(10_000.0),  # a dominant person
)
tables = st.dictionaries(
    st.sampled_from(["内科", "外科", "儿科"]),
    st.lists(values, min_size=1, max_size=14),
    min_size=1,
)


def released(value: Any) -> bool:
    return value is not None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=tables, threshold=st.integers(2, 6), zeros=st.booleans())
def test_no_suppressed_cell_is_computable_from_the_released_cells_of_its_row(
    table: dict[str, list[float | None]], threshold: int, zeros: bool
) -> None:
    rules = DisclosureRules(threshold=threshold, zeros_disclosive=zeros)
    visits = visits_of(table)
    sql = sql_path(QUERY, visits, rules)
    for index, row in enumerate(sql.rows):
        _, n, n_cost, s, m = row
        counts = released(n) or released(n_cost)
        blanked = {c.column for c in sql.suppressions if c.row == index}
        # SUM from AVG × COUNT, AVG from SUM / COUNT, COUNT from SUM / AVG.
        if "s" in blanked:
            assert not (released(m) and counts), row
        if "m" in blanked:
            assert not (released(s) and counts), row
        if "n_cost" in blanked:
            assert not (released(s) and released(m)), row
    # The Python helper decides every cell as the SQL path does, and its sum and mean
    # tables of the same groups never give each other back (mean × n is the sum).
    for statistic, aggregate in (("sum", "SUM"), ("mean", "AVG")):
        python = python_path(visits, "cost", statistic, rules)
        same = sql_path(
            f"SELECT department, {aggregate}(cost) AS {statistic}_cost, COUNT(*) AS n "
            "FROM visits GROUP BY department",
            visits,
            rules,
        )
        assert set(by_group(python)) == set(by_group(same)) == set(by_group(sql))
        assert blanked_cells(python, f"{statistic}_cost") == blanked_cells(
            same, f"{statistic}_cost"
        )
        assert decisions(python) == decisions(same)
    sums, means = (
        python_path(visits, "cost", "sum", rules),
        python_path(visits, "cost", "mean", rules),
    )
    assert blanked_cells(sums, "sum_cost") == blanked_cells(means, "mean_cost")


def decisions(released: Released) -> dict[tuple[Any, ...], tuple[str, ...]]:
    """(group keys, column or None for a dropped row) -> every rule it failed."""
    return {(c.keys, c.column): c.rules for c in released.suppressions}


def blanked_cells(released: Released, column: str) -> set[str]:
    """The groups whose cell of ``column`` was suppressed (a NULL of no values is not)."""
    return {released.rows[c.row][0] for c in released.suppressions if c.column == column}
