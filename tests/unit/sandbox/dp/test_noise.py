"""DP noise: every public key released, post-processing on noisy values only, and a
noise step whose length does not depend on the noise."""

from __future__ import annotations

import pytest

from datasets.health_manifest import HEALTH
from policies.sql_check import check_sql
from sandbox.dp import mechanisms
from sandbox.dp.noise import release_noisy
from sandbox.dp.planner import plan_dp_query


def plan(sql: str, epsilon: float = 1.0):  # type: ignore[no-untyped-def]
    return plan_dp_query(check_sql(sql, HEALTH, mode="dp"), HEALTH, epsilon=epsilon)


def test_dp_release_includes_every_public_key() -> None:
    p = plan("SELECT sex, COUNT(*) AS n FROM patients GROUP BY sex")
    released = release_noisy(p, ["__dp_k0", "__dp_count_0"], [["男", 500]])
    assert [r[0] for r in released["rows"]] == ["男", "女"]
    assert all(isinstance(r[1], int) and r[1] >= 0 for r in released["rows"])
    assert released["error95"][0][1] == pytest.approx(mechanisms.error95(1.0))


def test_dp_post_processing_runs_on_noisy_values_only() -> None:
    p = plan(
        "SELECT department, COUNT(*) AS n, SUM(cost) / COUNT(*) AS mean FROM visits "
        "GROUP BY department HAVING COUNT(*) > 100 ORDER BY n DESC LIMIT 2",
        epsilon=50.0,
    )
    exact = [[d, 1000 * (i + 1), 50.0 * 1000 * (i + 1)] for i, d in enumerate(["内科", "外科"])]
    released = release_noisy(p, ["__dp_k0", "__dp_count_0", "__dp_sum_1"], exact)
    assert released["columns"] == ["department", "n", "mean"]
    assert [r[0] for r in released["rows"]] == ["外科", "内科"]  # ordered by the noisy count
    assert all(r[1] > 100 for r in released["rows"])  # HAVING on the noisy count
    assert released["error95"][0][1] is not None and released["error95"][0][2] is None


def test_dp_noise_step_time_does_not_depend_on_the_noise() -> None:
    import time

    from sandbox.dp import noise
    from sandbox.dp.plan import DpPlan

    p = plan("SELECT department, SUM(cost) AS s FROM visits GROUP BY 1", epsilon=1.0)
    combos = [(d,) for d in p.keys[0].domain]
    exact = {("内科",): ["内科", 1000.0]}
    sampling = []
    for epsilon in (0.001, 100.0) * 3:  # huge noise, then tiny noise
        tuned = DpPlan(**{**p.__dict__, "epsilon": epsilon})
        started = time.perf_counter()
        noise._draw_noise(tuned, {"__dp_sum_0": 1}, exact, combos)
        sampling.append(time.perf_counter() - started)
    # Drawing ends well inside the fixed step, which release_noisy always waits out.
    step = noise.noise_step_seconds(p, len(combos))
    assert max(sampling) < step
    started = time.perf_counter()
    release_noisy(p, ["__dp_k0", "__dp_sum_0"], [["内科", 1000.0]])
    assert time.perf_counter() - started >= step
