"""TODO docstring."""

from __future__ import annotations

from dataclasses import dataclass

from datasets.manifest import Manifest
from policies.decision import Finding
from policies.disclosure import DisclosureError, ThresholdPlan, plan_threshold
from policies.policy_file import DatasetPolicy, load_policy
from policies.python_check import check_python, tables_read
from policies.sql_check import check_sql
from sandbox.access import grants
from sandbox.dp.planner import DpPlan, DpUnsupported, plan_dp_query
from sandbox.errors import (
    InvalidRequest,
    PolicyRejected,
)
from sandbox.models import Grant

LANGUAGES = ("sql", "python")


MAX_CODE_CHARS = 100_000


DEFAULT_EPSILON = 1.0


# A pathological job can break a rule thousands of times; the first ones tell enough.
MAX_FINDINGS = 50


@dataclass(frozen=True)
class Plan:
    """What the worker runs for a job, derived again from the stored code."""

    sql: str | None = None
    threshold: ThresholdPlan | None = None
    dp: DpPlan | None = None
    # The view tables the job reads; empty means all of them (Python jobs).
    tables: tuple[str, ...] = ()
    policy_version: str = ""
    # The checked query in normal form: two spellings of one question share it.
    question: str = ""


def policy_for(manifest: Manifest, grant: Grant | None) -> DatasetPolicy:
    """The owner's policy for the dataset, narrowed by the grant's own rules and columns."""
    policy = load_policy(manifest)
    if grant is None:
        return policy
    return policy.narrowed(grant.column_rules or {}, list(grant.columns or []))


def plan_job(
    manifest: Manifest,
    *,
    language: str,
    mode: str,
    code: str,
    epsilon: float,
    policy: DatasetPolicy | None = None,
    delta: float = 0.0,
    rows_per_person: int | None = None,
    max_rows_per_person: int | None = None,
) -> Plan:
    """Check the job's code; raise PolicyRejected with every finding, or return its plan.

    ``rows_per_person`` (dp only) bounds each person's rows below the grant's
    ``max_rows_per_person``; None takes the dataset's default.
    """
    policy = policy or load_policy(manifest)
    if language == "python":
        if mode == "dp":
            raise PolicyRejected(
                "dp mode takes SQL jobs; run Python jobs in masked mode.",
                findings=[
                    Finding("dp.python_unsupported", "dp mode takes SQL jobs only.").to_dict()
                ],
            )
        decision = check_python(code)
        if not decision.allowed:
            findings = [f.to_dict() for f in decision.findings[:MAX_FINDINGS]]
            raise PolicyRejected(_summary(decision.findings), findings=findings)
        # Only the tables the code names, when it names them all literally.
        named = tables_read(code)
        known = set(manifest.table_names)
        tables = tuple(sorted(named)) if named and named <= known else ()
        return Plan(tables=tables, policy_version=policy.version)
    checked = check_sql(code, manifest, mode="dp" if mode == "dp" else "masked", policy=policy)
    if not checked.allowed:
        findings = [f.to_dict() for f in checked.decision.findings[:MAX_FINDINGS]]
        raise PolicyRejected(_summary(checked.decision.findings), findings=findings)
    tables = tuple(dict.fromkeys(ref.table.name for ref in checked.tables))
    assert checked.statement is not None
    question = checked.statement.sql(dialect="duckdb", comments=False)
    try:
        if mode == "dp":
            dp_plan = plan_dp_query(
                checked,
                manifest,
                epsilon=epsilon,
                delta=delta,
                rows_per_person=rows_per_person,
                max_rows_per_person=max_rows_per_person,
            )
            # The same question with another bound on persons' rows is another question.
            question += f"\n-- rows_per_person={dp_plan.rows_per_person}"
            return Plan(
                dp_plan.sql,
                dp=dp_plan,
                tables=tables,
                policy_version=policy.version,
                question=question,
            )
        threshold = plan_threshold(checked, privacy_unit=manifest.privacy_unit)
        return Plan(
            threshold.sql, threshold=threshold, tables=tables, policy_version=policy.version
        )
    except (DpUnsupported, DisclosureError) as error:
        raise PolicyRejected(error.finding.message, findings=[error.finding.to_dict()]) from error


def _check_kind(*, language: str, mode: str) -> None:
    if language not in LANGUAGES:
        raise InvalidRequest("language must be sql or python.", field="language")
    if mode not in grants.MODES:
        raise InvalidRequest("mode must be dp or masked.", field="mode")


def _summary(findings: tuple[Finding, ...]) -> str:
    first = findings[0]
    more = f" (and {len(findings) - 1} more findings)" if len(findings) > 1 else ""
    return f"[{first.rule}] {first.message}{more}"
