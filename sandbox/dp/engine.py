"""The DP engine in one call, for in-process use (benchmarks, the dry run's estimates).

The worker runs the same plan's exact SQL inside the isolated runner; here the
exact aggregates come from a DuckDB connection the caller holds over the view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb

from datasets.manifest import Manifest
from policies.policy_file import DatasetPolicy, load_policy
from policies.sql_check import check_sql
from sandbox.dp.noise import release_noisy
from sandbox.dp.plan import DpPlan, DpUnsupported
from sandbox.dp.planner import plan_dp_query
from sandbox.errors import PolicyRejected


class DpRejected(PolicyRejected):
    """The in-process engine refused the query; ``findings`` say every rule it broke."""

    def __init__(self, findings: list[dict[str, Any]]) -> None:
        super().__init__(findings[0]["message"] if findings else "rejected", findings=findings)
        self.findings = findings


@dataclass(frozen=True)
class DpAnswer:
    columns: list[str]
    rows: list[list[Any]]
    error95: list[list[float | None]]
    epsilon: float
    plan: DpPlan


def plan(
    sql: str, manifest: Manifest, *, epsilon: float, policy: DatasetPolicy | None = None
) -> DpPlan:
    checked = check_sql(sql, manifest, mode="dp", policy=policy or load_policy(manifest))
    if not checked.allowed:
        raise DpRejected([f.to_dict() for f in checked.decision.findings])
    try:
        return plan_dp_query(checked, manifest, epsilon=epsilon)
    except DpUnsupported as error:
        raise DpRejected([error.finding.to_dict()]) from error


def answer(
    sql: str,
    manifest: Manifest,
    *,
    epsilon: float,
    connection: duckdb.DuckDBPyConnection,
    policy: DatasetPolicy | None = None,
) -> DpAnswer:
    """Check, plan, compute exact aggregates on ``connection``, and noise them."""
    dp_plan = plan(sql, manifest, epsilon=epsilon, policy=policy)
    cursor = connection.execute(dp_plan.sql)
    columns = [d[0] for d in cursor.description or []]
    released = release_noisy(dp_plan, columns, [list(r) for r in cursor.fetchall()])
    return DpAnswer(
        columns=released["columns"],
        rows=released["rows"],
        error95=released["error95"],
        epsilon=epsilon,
        plan=dp_plan,
    )
