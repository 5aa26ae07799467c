"""Masked-mode disclosure control: small groups and small cells never go out."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from datasets.health_manifest import HEALTH
from policies.disclosure import (
    DisclosureError,
    apply_threshold,
    check_declared_output,
    plan_threshold,
)
from policies.sql_check import check_sql


def run(sql: str, visits: pd.DataFrame, k: int = 10):  # type: ignore[no-untyped-def]
    plan = plan_threshold(check_sql(sql, HEALTH, mode="masked"), privacy_unit="person_id")
    con = duckdb.connect()
    con.register("visits", visits)
    cursor = con.execute(plan.sql)
    columns = [d[0] for d in cursor.description]
    return apply_threshold(plan, columns, [list(r) for r in cursor.fetchall()], k=k)


def visits_frame() -> pd.DataFrame:
    # 12 persons in 内科 (one visit each, one with C34), 3 persons in 外科 with 20 visits each.
    rows = [
        {
            "person_id": f"p{i}",
            "department": "内科",
            "icd10": "C34" if i == 0 else "I10",
            "cost": 100.0 + i,
        }
        for i in range(12)
    ]
    rows += [
        {"person_id": f"q{i % 3}", "department": "外科", "icd10": "S72", "cost": 50.0}
        for i in range(60)
    ]
    return pd.DataFrame(rows)


def test_threshold_drops_groups_of_few_persons_even_with_many_rows() -> None:
    released = run(
        "SELECT department, COUNT(*) AS n FROM visits GROUP BY department", visits_frame()
    )
    assert released.columns == ["department", "n"]
    assert released.rows == [["内科", 12]]
    assert released.suppressed_rows == 1


def test_threshold_suppresses_a_disguised_small_count() -> None:
    released = run(
        "SELECT department, COUNT(*) AS n, SUM(CASE WHEN icd10 = 'C34' THEN 1 ELSE 0 END) AS c34 "
        "FROM visits GROUP BY department",
        visits_frame(),
    )
    assert released.rows == [["内科", 12, None]]
    assert released.suppressed_cells == 1


def test_threshold_hides_the_person_counts_it_computes() -> None:
    released = run("SELECT COUNT(*) AS n, AVG(cost) AS c FROM visits", visits_frame())
    assert released.columns == ["n", "c"]
    assert len(released.rows[0]) == 2


def test_threshold_rejects_output_that_does_not_match_the_plan() -> None:
    plan = plan_threshold(
        check_sql("SELECT COUNT(*) FROM visits", HEALTH, mode="masked"), privacy_unit="person_id"
    )
    with pytest.raises(DisclosureError):
        apply_threshold(plan, ["count_star()"], [[100]], k=10)


def test_declared_output_drops_rows_below_k() -> None:
    released = check_declared_output(
        "t",
        ["dept", "n"],
        [["a", 50], ["b", 3]],
        {"kind": "frequency", "count_column": "n"},
        k=10,
        verified=True,
    )
    assert released.rows == [["a", 50]]
    assert released.suppressed_rows == 1 and not released.holds


def test_undeclared_output_goes_to_review_never_straight_out() -> None:
    for declared in ({"count_column": None}, {"kind": "frequency", "count_column": None}, {}):
        held = check_declared_output("t", ["dept", "x"], [["a", 50]], declared, k=10)
        assert [f.rule for f in held.holds] == ["output.undeclared"]


def test_declared_output_with_pseudonyms_is_row_level() -> None:
    with pytest.raises(DisclosureError) as caught:
        check_declared_output(
            "t",
            ["person", "n"],
            [["0123456789abcdef0123456789abcdef", 50]],
            {"count_column": "n"},
            k=10,
        )
    assert caught.value.finding.rule == "output.row_level"


def test_threshold_keeps_the_largest_persons_share_of_a_released_cell() -> None:
    frame = pd.DataFrame(
        [
            {"person_id": f"p{i}", "department": "内科", "icd10": "I10", "cost": 10.0}
            for i in range(11)
        ]
        + [{"person_id": "big", "department": "内科", "icd10": "I10", "cost": 90.0}]
    )
    released = run("SELECT department, SUM(cost) AS total FROM visits GROUP BY department", frame)
    assert released.rows == [["内科", 200.0]]
    assert released.largest is not None
    assert released.largest.to_dict() == {
        "share": 0.45,
        "table": "result",
        "keys": [["department", "内科"]],
        "column": "total",
    }


def test_threshold_has_no_largest_share_without_a_magnitude() -> None:
    released = run(
        "SELECT department, COUNT(*) AS n FROM visits GROUP BY department", visits_frame()
    )
    assert released.largest is None
