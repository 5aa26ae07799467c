"""DP: the planner's bounding and clamping, and noise that matches the declared scale."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest
from scipy import stats

from datasets.health_manifest import HEALTH
from policies.sql_check import check_sql
from sandbox.dp import mechanisms
from sandbox.dp.noise import release_noisy
from sandbox.dp.plan import DpUnsupported
from sandbox.dp.planner import plan_dp_query


def plan(sql: str, epsilon: float = 1.0):  # type: ignore[no-untyped-def]
    return plan_dp_query(check_sql(sql, HEALTH, mode="dp"), HEALTH, epsilon=epsilon)


def test_dp_plan_bounds_rows_per_person_and_clamps() -> None:
    p = plan("SELECT department, COUNT(*) AS n, SUM(cost) AS s FROM visits GROUP BY department")
    frame = pd.DataFrame(
        {
            "visit_id": [f"v{i}" for i in range(40)],
            "person_id": ["a"] * 30 + ["b"] * 10,
            "department": ["内科"] * 40,
            "cost": [1e9] * 40,
        }
    )
    con = duckdb.connect()
    con.register("visits", frame)
    cursor = con.execute(p.sql)
    row = cursor.fetchone()
    # Person a keeps only max_rows_per_person rows; every value is clamped to 50,000.
    per_person = HEALTH.table("visits").max_rows_per_person  # type: ignore[union-attr]
    assert row[1] == min(30, per_person) + min(10, per_person)
    assert row[2] == pytest.approx(row[1] * 50_000)


@pytest.mark.parametrize(
    ("sql", "rule"),
    [
        ("SELECT person_id, COUNT(*) FROM visits GROUP BY person_id", None),
        ("SELECT birth_year, COUNT(*) FROM patients GROUP BY birth_year", "dp.private_group_key"),
        (
            "SELECT COUNT(*) FROM visits v JOIN labs l ON v.visit_id = l.visit_id",
            "dp.join_not_on_privacy_unit",
        ),
        ("SELECT COUNT(DISTINCT department) FROM visits", "dp.unsupported"),
        ("SELECT SUM(visit_date) FROM visits", None),  # the policy allows only COUNT of it
    ],
)
def test_dp_plan_refuses_what_it_cannot_bound(sql: str, rule: str | None) -> None:
    checked = check_sql(sql, HEALTH, mode="dp")
    if rule is None:
        assert not checked.allowed
        return
    assert checked.allowed, checked.decision.findings
    with pytest.raises(DpUnsupported) as caught:
        plan_dp_query(checked, HEALTH, epsilon=1.0)
    assert caught.value.finding.rule == rule


def test_discrete_laplace_noise_matches_declared_scale() -> None:
    scale_epsilon, sensitivity = 0.5, 2
    draws = mechanisms.noisy_counts([0] * 20_000, sensitivity=sensitivity, epsilon=scale_epsilon)
    scale = sensitivity / scale_epsilon
    assert all(isinstance(d, int) for d in draws)
    # The discrete Laplace is close to the continuous one at this scale; compare the
    # shifted draws with a continuous Laplace by KS on jittered integers.
    jittered = [
        d + u for d, u in zip(draws, stats.uniform.rvs(-0.5, 1, size=len(draws)), strict=True)
    ]
    result = stats.kstest(jittered, stats.laplace(scale=scale).cdf)
    assert result.pvalue > 0.001, result


def test_float_laplace_noise_matches_declared_scale() -> None:
    draws = mechanisms.noisy_sums([0.0] * 20_000, sensitivity=10.0, epsilon=1.0)
    result = stats.kstest(draws, stats.laplace(scale=10.0).cdf)
    assert result.pvalue > 0.001, result


def test_error95_covers_95_percent_of_draws() -> None:
    draws = mechanisms.noisy_sums([0.0] * 20_000, sensitivity=1.0, epsilon=1.0)
    bound = mechanisms.error95(1.0)
    inside = sum(abs(d) <= bound for d in draws) / len(draws)
    assert 0.94 <= inside <= 0.96


def test_mechanism_refuses_nonpositive_epsilon() -> None:
    with pytest.raises(mechanisms.MechanismError):
        mechanisms.noisy_counts([1], sensitivity=1, epsilon=0)


def test_dp_plan_refuses_a_sum_without_bounds() -> None:
    from dataclasses import replace

    from policies.policy_file import ColumnRule, Rule, load_policy

    policy = load_policy(HEALTH)
    summable = ColumnRule(frozenset({Rule.AGGREGATE_ONLY}), frozenset({"SUM"}))
    lenient = replace(policy, columns={**policy.columns, "visits.visit_date": summable})
    checked = check_sql("SELECT SUM(visit_date) FROM visits", HEALTH, mode="dp", policy=lenient)
    assert checked.allowed, checked.decision.findings
    with pytest.raises(DpUnsupported) as caught:
        plan_dp_query(checked, HEALTH, epsilon=1.0)
    assert caught.value.finding.rule == "dp.unbounded_column"


def run_plan(sql: str, frames: dict[str, pd.DataFrame]) -> tuple[list[str], list[tuple]]:  # type: ignore[type-arg]
    p = plan(sql)
    con = duckdb.connect()
    for name, frame in frames.items():
        con.register(name, frame)
    cursor = con.execute(p.sql)
    return [d[0] for d in cursor.description], cursor.fetchall()


def test_dp_join_on_privacy_unit_bounds_joined_rows_per_person() -> None:
    visits = pd.DataFrame(
        {
            "visit_id": [f"v{i}" for i in range(25)],
            "person_id": ["a"] * 20 + ["b"] * 5,
            "cost": [10.0] * 25,
        }
    )
    patients = pd.DataFrame(
        {"person_id": ["a", "b"], "sex": ["男", "女"], "birth_year": [1950, 1990]}
    )
    _, rows = run_plan(
        "SELECT p.sex, COUNT(*) AS n FROM visits v JOIN patients p ON v.person_id = p.person_id "
        "GROUP BY p.sex",
        {"visits": visits, "patients": patients},
    )
    per_person = HEALTH.table("visits").max_rows_per_person  # type: ignore[union-attr]
    assert dict((r[0], r[1]) for r in rows) == {"男": min(20, per_person), "女": 5}


def test_dp_key_expression_domain_comes_from_public_categories() -> None:
    p = plan("SELECT SUBSTRING(icd10, 1, 1) AS chapter, COUNT(*) FROM visits GROUP BY 1")
    (key,) = p.keys
    from datasets.health_manifest import ICD10

    assert set(key.domain) == {code[0] for code in ICD10}
    assert len(key.domain) == len(set(key.domain))


def test_dp_bounds_propagate_through_arithmetic() -> None:
    p = plan("SELECT AVG(2022 - birth_year) AS age FROM patients")
    total = next(m for m in p.measures if m.kind == "sum")
    assert total.bounds == (2022 - 2025, 2022 - 1920)
    p = plan("SELECT SUM(cost / 1000) FROM visits")
    assert p.measures[0].bounds == (0.0, 50.0)


def test_dp_counts_distinct_persons_with_bounded_sensitivity() -> None:
    p = plan("SELECT department, COUNT(DISTINCT person_id) AS persons FROM visits GROUP BY 1")
    (measure,) = p.measures
    assert measure.kind == "persons"
    assert p.sensitivity(measure) == min(p.rows_per_person, len(p.keys[0].domain))
    total = plan("SELECT COUNT(DISTINCT person_id) FROM patients")
    assert total.sensitivity(total.measures[0]) == 1.0  # one group: a person counts once


def test_dp_variance_and_stddev_are_post_processed_from_noisy_sums() -> None:
    import numpy as np

    rng = np.random.default_rng(3)  # test data, not privacy noise
    stays = rng.integers(0, 30, size=5000)
    visits = pd.DataFrame(
        {
            "visit_id": [f"v{i}" for i in range(5000)],
            "person_id": [f"p{i}" for i in range(5000)],
            "length_of_stay": stays,
        }
    )
    p = plan(
        "SELECT VARIANCE(length_of_stay) AS var, STDDEV(length_of_stay) AS sd FROM visits",
        epsilon=1e6,  # near-exact, to check the arithmetic
    )
    con = duckdb.connect()
    con.register("visits", visits)
    cursor = con.execute(p.sql)
    columns = [d[0] for d in cursor.description]
    released = release_noisy(p, columns, [list(r) for r in cursor.fetchall()])
    ((variance, stddev),) = released["rows"]
    assert variance == pytest.approx(float(np.var(stays, ddof=1)), rel=1e-3)
    assert stddev == pytest.approx(float(np.std(stays, ddof=1)), rel=1e-3)
    assert released["error95"] == [[None, None]]  # no closed form: not claimed


def test_gaussian_rho_converts_within_epsilon_delta() -> None:
    import opendp.prelude as dp

    rho = mechanisms.rho_for(1.0, 1e-5)
    probe = dp.c.make_zCDP_to_approxDP(
        dp.m.make_gaussian(
            dp.vector_domain(dp.atom_domain(T=float, nan=False)),
            dp.l2_distance(T=float),
            scale=mechanisms.gaussian_scale(1.0, rho),
        )
    )
    assert probe.map(1.0).epsilon(1e-5) <= 1.0 + 1e-9
    assert rho > 0.9 * mechanisms.rho_for(1.0 * 1.01, 1e-5)  # the search is tight


def test_gaussian_noise_matches_declared_scale() -> None:
    rho = 0.05
    draws = mechanisms.gaussian_sums([0.0] * 20_000, sensitivity=10.0, rho=rho)
    sigma = mechanisms.gaussian_scale(10.0, rho)
    assert stats.kstest(draws, stats.norm(scale=sigma).cdf).pvalue > 0.001
    counts = mechanisms.gaussian_counts([0] * 20_000, sensitivity=3, rho=rho)
    assert all(isinstance(c, int) for c in counts)  # the discrete Gaussian for counts
    sigma = mechanisms.gaussian_scale(3, rho)
    inside = sum(abs(c) <= mechanisms.gaussian_error95(sigma) for c in counts) / len(counts)
    assert 0.94 <= inside <= 0.96


def test_dp_plan_with_delta_uses_gaussian_and_composes_rho() -> None:
    laplace = plan("SELECT department, COUNT(*), SUM(length_of_stay) FROM visits GROUP BY 1")
    gaussian = plan_dp_query(
        check_sql(
            "SELECT department, COUNT(*), SUM(length_of_stay) FROM visits GROUP BY 1",
            HEALTH,
            mode="dp",
        ),
        HEALTH,
        epsilon=1.0,
        delta=1e-5,
    )
    assert laplace.mechanism == "laplace" and gaussian.mechanism == "gaussian"
    assert gaussian.rho_per_measure == pytest.approx(mechanisms.rho_for(1.0, 1e-5) / 2)
    released = release_noisy(gaussian, ["__dp_k0", "__dp_count_0", "__dp_sum_1"], [])
    assert len(released["rows"]) == len(gaussian.keys[0].domain)


def test_dp_private_group_keys_are_released_above_a_noisy_threshold() -> None:
    sql = "SELECT birth_year, COUNT(*) AS n FROM patients GROUP BY birth_year"
    with pytest.raises(DpUnsupported):  # no δ: a private key cannot be released
        plan(sql)
    p = plan_dp_query(check_sql(sql, HEALTH, mode="dp"), HEALTH, epsilon=1.0, delta=1e-5)
    assert p.private_keys and p.threshold_measure is not None
    assert p.threshold() > 10  # one person alone never makes it
    years = [1950] * 2000 + [1990] * 1  # a crowd, and one person alone
    patients = pd.DataFrame(
        {"person_id": [f"p{i}" for i in range(len(years))], "birth_year": years}
    )
    con = duckdb.connect()
    con.register("patients", patients)
    cursor = con.execute(p.sql)
    columns = [d[0] for d in cursor.description]
    rows = [list(r) for r in cursor.fetchall()]
    for _ in range(20):
        released = release_noisy(p, columns, rows)
        assert [r[0] for r in released["rows"]] == [1950]
