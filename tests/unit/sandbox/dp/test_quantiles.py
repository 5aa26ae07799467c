"""DP quantiles: OpenDP's exponential mechanism over public candidates, from a histogram.

The exact pass hands the worker counts at and between candidates, never
values; these tests hold the scores to OpenDP's own scorer, the selection to
its declared 95 % rank bound, and the per-query bound on persons' rows to the
grant's limit.
"""

from __future__ import annotations

import duckdb
import opendp.prelude as dp
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datasets.health_manifest import HEALTH
from policies.sql_check import check_sql
from sandbox.dp import mechanisms
from sandbox.dp.noise import _noisy_quantile, estimates, release_noisy
from sandbox.dp.plan import DpUnsupported
from sandbox.dp.planner import plan_dp_query

dp.enable_features("contrib")


def plan(sql: str, epsilon: float = 1.0, **extra):  # type: ignore[no-untyped-def]
    return plan_dp_query(check_sql(sql, HEALTH, mode="dp"), HEALTH, epsilon=epsilon, **extra)


def run(p, frame: pd.DataFrame, table: str = "visits") -> dict:  # type: ignore[no-untyped-def,type-arg]
    con = duckdb.connect()
    con.register(table, frame)
    cursor = con.execute(p.sql)
    columns = [d[0] for d in cursor.description]
    return release_noisy(p, columns, [list(r) for r in cursor.fetchall()])


def visits(costs: list[float], persons: list[str] | None = None) -> pd.DataFrame:
    persons = persons or [f"p{i}" for i in range(len(costs))]
    return pd.DataFrame(
        {
            "visit_id": [f"v{i}" for i in range(len(costs))],
            "person_id": persons,
            "department": ["内科"] * len(costs),
            "cost": costs,
            "length_of_stay": [int(c) % 61 for c in costs],
        }
    )


@settings(max_examples=200, deadline=None)
@given(
    alpha=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0, 0.333]),
    candidates=st.lists(st.integers(0, 20), min_size=1, max_size=8, unique=True).map(sorted),
    values=st.lists(st.integers(-2, 22), max_size=40),
)
def test_quantile_scores_from_counts_equal_opendps_scorer(
    alpha: float, candidates: list[int], values: list[int]
) -> None:
    scorer = dp.t.make_quantile_score_candidates(
        dp.vector_domain(dp.atom_domain(T=float, nan=False)),
        dp.symmetric_distance(),
        [float(c) for c in candidates],
        alpha,
    )
    below = [sum(v < c for v in values) for c in candidates]
    equal = [sum(v == c for v in values) for c in candidates]
    ours = mechanisms.quantile_scores(below, equal, len(values), alpha)
    assert ours == [int(s) for s in scorer([float(v) for v in values])]


def test_dp_median_with_a_huge_epsilon_is_the_exact_median_on_the_grid() -> None:
    # 201 persons with one visit each, costs 0, 250, ..., 50000: the median is 25000.
    costs = [250.0 * i for i in range(201)]
    p = plan("SELECT MEDIAN(cost) AS m, QUANTILE_CONT(cost, 0.9) AS p90 FROM visits", 1e6)
    released = run(p, visits(costs))
    assert released["rows"] == [[25000.0, 45000.0]]
    assert released["error95_units"] == ["rank", "rank"]


def test_dp_quantile_forms_and_integer_candidates() -> None:
    p = plan(
        "SELECT PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY length_of_stay) AS a, "
        "QUANTILE_DISC(length_of_stay, 0.5) AS b, MEDIAN(length_of_stay) AS c FROM visits"
    )
    (measure,) = {m for m in p.measures}  # one measurement answers all three spellings
    assert measure.candidates == tuple(float(v) for v in range(0, 61))  # los: whole days 0-60
    assert {s.kind for s in p.slots} == {"quantile"}


def test_dp_quantile_values_are_histograms_not_values() -> None:
    p = plan("SELECT MEDIAN(cost) AS m FROM visits")
    con = duckdb.connect()
    con.register("visits", visits([123.45, 999.0, 50.0]))
    (row,) = con.execute(p.sql).fetchall()
    # The runner hands over counts per bucket of the grid (step 50): no raw value.
    assert "123.45" not in str(row) and "999" not in str(row)
    assert str(row[0]).startswith("{")


def test_dp_quantile_selection_stays_within_its_declared_rank_bound() -> None:
    # 2,000 persons, one visit each, costs spread evenly: the rank of the released
    # candidate must sit within the declared 95 % bound of the ideal rank ≥ 95 % of draws.
    costs = [25.0 * i for i in range(2000)]
    p = plan("SELECT MEDIAN(cost) AS m FROM visits", epsilon=0.5)
    bound = p.error95(p.measures[0])
    con = duckdb.connect()
    con.register("visits", visits(costs))
    ((histogram,),) = con.execute(p.sql).fetchall()
    misses = 0
    for _ in range(400):  # the draw itself, without the release's fixed-time padding
        value = _noisy_quantile(p, p.measures[0], histogram)
        rank = sum(c < value for c in costs)
        misses += abs(rank - 1000) > bound
    assert misses <= 400 * 0.05 + 8


def test_dp_quantile_under_zcdp_uses_rho_and_gaussian_plan() -> None:
    p = plan_dp_query(
        check_sql("SELECT MEDIAN(cost) AS m, COUNT(*) AS n FROM visits", HEALTH, mode="dp"),
        HEALTH,
        epsilon=1.0,
        delta=1e-6,
    )
    assert p.mechanism == "gaussian"
    budget = p.quantile_budget(p.measures[0])
    assert budget["rho"] == pytest.approx(p.rho_per_measure)
    released = run(p, visits([100.0 * i for i in range(300)]))
    assert 0 <= released["rows"][0][0] <= 50_000


def test_dp_quantile_estimate_reports_rank_error_and_resolution() -> None:
    p = plan("SELECT department, MEDIAN(cost) AS m FROM visits GROUP BY department")
    (_, estimate) = estimates(p)
    assert estimate["kind"] == "quantile" and estimate["alpha"] == 0.5
    assert estimate["rank_error95"] > 0 and estimate["resolution"] == pytest.approx(50.0)


def test_masked_mode_refuses_quantiles() -> None:
    for sql in (
        "SELECT MEDIAN(cost) FROM visits",
        "SELECT QUANTILE_CONT(cost, 0.9) FROM visits",
        "SELECT PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY cost) FROM visits",
    ):
        rules = {f.rule for f in check_sql(sql, HEALTH, mode="masked").decision.findings}
        assert "masked.min_max" in rules, sql


def test_dp_quantile_needs_a_literal_alpha_between_0_and_1() -> None:
    with pytest.raises(DpUnsupported):
        plan("SELECT QUANTILE_CONT(cost, 1.5) AS q FROM visits")


def test_rows_per_person_override_within_the_grants_limit() -> None:
    sql = "SELECT COUNT(*) AS n FROM visits"
    default = HEALTH.table("visits").max_rows_per_person  # type: ignore[union-attr]
    assert plan(sql).rows_per_person == default
    smaller = plan(sql, rows_per_person=2)
    assert smaller.rows_per_person == 2
    assert smaller.sensitivity(smaller.measures[0]) == 2.0  # less noise for counts
    # A person with 5 visits now counts twice.
    released = run(smaller, visits([1.0] * 5, persons=["a"] * 5), "visits")
    con = duckdb.connect()
    con.register("visits", visits([1.0] * 5, persons=["a"] * 5))
    assert con.execute(smaller.sql).fetchone() == (2,)
    assert released["rows"][0][0] >= 0
    with pytest.raises(DpUnsupported) as raised:
        plan(sql, rows_per_person=default + 1)
    assert raised.value.finding.rule == "dp.rows_per_person"
    # The owner may allow more per grant; the analyst may then ask for it.
    assert plan(sql, rows_per_person=25, max_rows_per_person=25).rows_per_person == 25
    # A grant's smaller limit also lowers the default.
    assert plan(sql, max_rows_per_person=3).rows_per_person == 3
    with pytest.raises(DpUnsupported):
        plan(sql, rows_per_person=0)


def test_closed_form_counts_equal_random_bounding() -> None:
    # Without groups, each person adds min(rows, bound) rows and one person, whichever
    # rows the bounding keeps: the closed form must agree with ranking and cutting.
    persons = ["a"] * 25 + ["b"] * 3 + ["c"] * 11
    frame = visits([1.0] * len(persons), persons=persons)
    con = duckdb.connect()
    con.register("visits", frame)
    closed = plan("SELECT COUNT(*) AS n, COUNT(DISTINCT person_id) AS p FROM visits")
    assert "__dp_heavy" not in closed.sql
    assert con.execute(closed.sql).fetchone() == (10 + 3 + 10, 3)
    grouped = plan("SELECT department, COUNT(*) AS n FROM visits GROUP BY department")
    assert "__dp_heavy" in grouped.sql
    assert con.execute(grouped.sql).fetchone() == ("内科", 23)


def test_tables_of_one_row_per_person_skip_bounding() -> None:
    p = plan("SELECT sex, COUNT(*) AS n FROM patients GROUP BY sex")
    assert "__dp_heavy" not in p.sql and "hash(" not in p.sql
    joined = plan(
        "SELECT p.sex, COUNT(*) AS n FROM visits v JOIN patients p "
        "ON v.person_id = p.person_id GROUP BY p.sex"
    )
    assert "__dp_heavy" in joined.sql  # visits hold many rows per person


def test_a_dataset_with_two_rows_for_one_person_in_a_one_row_table_is_refused() -> None:
    from datasets.checks import DatasetInvalid, check_one_row_per_person
    from datasets.health import generate_health

    tables = generate_health(50, seed=1)
    check_one_row_per_person(tables, HEALTH)
    patients = tables["patients"]
    tables["patients"] = pd.concat([patients, patients.iloc[[0]]], ignore_index=True)
    with pytest.raises(DatasetInvalid) as refused:
        check_one_row_per_person(tables, HEALTH)
    assert "patients" in str(refused.value)
    assert str(patients.iloc[0]["name"]) not in str(refused.value)  # no raw value
