"""Planning a job: the one decision whether it would be accepted, and what the worker runs.

:func:`decide` is called by the dry run (``POST /api/v1/policy/check``) and by the
submission alike, so the two cannot drift: the same checks, the same per-job ε
and δ caps, the same budget and cached-answer rule. Only the submission then
charges the budget, atomically (:func:`sandbox.access.grants.charge_budget`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from datasets.manifest import Manifest
from policies.decision import Finding
from policies.disclosure import DisclosureError, ThresholdPlan, plan_threshold
from policies.permissions import Person, user_may_submit_jobs
from policies.policy_file import DatasetPolicy, load_policy
from policies.python_check import check_python, tables_read
from policies.sql_check import check_sql
from sandbox.access import grants
from sandbox.catalog import published
from sandbox.dp.plan import DpPlan, DpUnsupported
from sandbox.dp.planner import plan_dp_query
from sandbox.errors import BudgetExhausted, Forbidden, InvalidRequest, NoActiveGrant, PolicyRejected
from sandbox.models import Grant, Job, JobStatus

LANGUAGES = ("sql", "python")
MAX_CODE_CHARS = 100_000
DEFAULT_EPSILON = 1.0
MAX_EPSILON = 100.0
MAX_DELTA = 1e-3

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


def policy_for(policy: DatasetPolicy, grant: Grant | None) -> DatasetPolicy:
    """The owner's policy for the dataset, narrowed by the grant's own rules and columns."""
    if grant is None:
        return policy
    return policy.narrowed(grant.column_rules or {}, list(grant.columns or []))


def plan_job(
    manifest: Manifest,
    request: JobRequest,
    *,
    policy: DatasetPolicy | None = None,
    max_rows_per_person: int | None = None,
) -> Plan:
    """Check the job's code; raise PolicyRejected with every finding, or return its plan.

    The request's ``rows_per_person`` (dp only) bounds each person's rows below the
    grant's ``max_rows_per_person``; None takes the dataset's default. ``policy`` is
    the dataset's policy as the grant narrows it; None reads the dataset's own.
    """
    policy = policy or load_policy(manifest)
    if request.language == "python":
        if request.mode == "dp":
            raise PolicyRejected(
                "dp mode takes SQL jobs; run Python jobs in masked mode.",
                findings=[
                    Finding("dp.python_unsupported", "dp mode takes SQL jobs only.").to_dict()
                ],
            )
        decision = check_python(request.code)
        if not decision.allowed:
            findings = [f.to_dict() for f in decision.findings[:MAX_FINDINGS]]
            first = decision.findings[0]
            summary = _summary(first.rule, first.message, len(decision.findings))
            raise PolicyRejected(summary, findings=findings)
        # Only the tables the code names, when it names them all literally.
        named = tables_read(request.code)
        known = set(manifest.table_names)
        tables = tuple(sorted(named)) if named and named <= known else ()
        return Plan(tables=tables, policy_version=policy.version)
    checked = check_sql(
        request.code, manifest, mode="dp" if request.mode == "dp" else "masked", policy=policy
    )
    if not checked.allowed:
        findings = [f.to_dict() for f in checked.decision.findings[:MAX_FINDINGS]]
        first = checked.decision.findings[0]
        summary = _summary(first.rule, first.message, len(checked.decision.findings))
        raise PolicyRejected(summary, findings=findings)
    tables = tuple(dict.fromkeys(ref.table.name for ref in checked.tables))
    assert checked.statement is not None
    question = checked.statement.sql(dialect="duckdb", comments=False)
    try:
        if request.mode == "dp":
            dp_plan = plan_dp_query(
                checked,
                manifest,
                epsilon=float(request.epsilon or 0.0),
                delta=float(request.delta or 0.0),
                rows_per_person=request.rows_per_person,
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


def _summary(rule: object, message: object, total: int) -> str:
    """A rejection's one-line message: the first finding, and how many more there are."""
    more = f" (and {total - 1} more findings)" if total > 1 else ""
    return f"[{rule}] {message}{more}"


@dataclass(frozen=True)
class JobRequest:
    """A job as the analyst sends it; :meth:`checked` refuses malformed fields."""

    dataset: str
    language: str
    mode: str
    code: str
    epsilon: float | None = None
    delta: float | None = None
    rows_per_person: int | None = None

    def checked(self) -> JobRequest:
        """The request with a dp job's defaults filled in, or InvalidRequest naming the field."""
        _check_kind(language=self.language, mode=self.mode)
        if (
            not isinstance(self.code, str)
            or not self.code.strip()
            or len(self.code) > MAX_CODE_CHARS
        ):
            raise InvalidRequest(f"code must be 1 to {MAX_CODE_CHARS} characters.", field="code")
        if self.mode != "dp":
            return replace(self, epsilon=0.0, delta=0.0, rows_per_person=None)
        epsilon = DEFAULT_EPSILON if self.epsilon is None else self.epsilon
        if not _is_number(epsilon) or not 0 < float(epsilon) <= MAX_EPSILON:
            raise InvalidRequest("epsilon must be a number above 0.", field="epsilon")
        delta = 0.0 if self.delta is None else self.delta
        if not _is_number(delta) or not 0 <= float(delta) < MAX_DELTA:
            raise InvalidRequest("delta must be at least 0 and below 0.001.", field="delta")
        rows = self.rows_per_person
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int)):
            raise InvalidRequest("rows_per_person must be a whole number.", field="rows_per_person")
        return replace(self, epsilon=float(epsilon), delta=float(delta))


@dataclass(frozen=True)
class Verdict:
    """Whether a job would be accepted now, with every finding that says why not."""

    request: JobRequest
    grant: Grant | None
    findings: tuple[dict[str, Any], ...]
    plan: Plan | None
    policy_version: str
    # A released job with the same question: answered again without a fresh draw.
    cached: Job | None = None
    # BudgetExhausted when the budget alone stops the job, else PolicyRejected.
    error: type[PolicyRejected] = PolicyRejected

    @property
    def allowed(self) -> bool:
        return not self.findings

    def rejection(self) -> PolicyRejected:
        findings = list(self.findings)
        first = findings[0]
        summary = _summary(first.get("rule"), first.get("message"), len(findings))
        return self.error(summary, findings=findings)


def decide(
    session: Session, *, by: Person, request: JobRequest, dataset_version: str | None
) -> Verdict:
    """The one decision (checks, caps, budget) for the dry run and the submission.

    Spends nothing. Raises InvalidRequest for a malformed request and NotFound for
    an unknown dataset; everything else is a finding, a missing grant included
    (``grant.none``), so the dry run can list every reason at once.
    """
    if not user_may_submit_jobs(by):
        raise Forbidden("Only analysts submit jobs.")
    request = request.checked()
    current = published(session, request.dataset)
    manifest = current.manifest
    findings: list[dict[str, Any]] = []
    grant: Grant | None = None
    try:
        grant = grants.active_grant(session, analyst=by, dataset=request.dataset, mode=request.mode)
    except NoActiveGrant:
        no_grant = Finding.of(
            "grant.none",
            "You have no active grant for %(mode)s jobs on %(dataset)s.",
            mode=request.mode,
            dataset=request.dataset,
        )
        findings.append(no_grant.to_dict())
    policy = policy_for(current.policy, grant)
    if grant is not None and request.mode == "dp":
        findings += _cap_findings(grant, request)
    plan: Plan | None = None
    try:
        plan = plan_job(
            manifest,
            request,
            policy=policy,
            max_rows_per_person=grant.max_rows_per_person if grant else None,
        )
    except PolicyRejected as rejection:
        findings += rejection.details.get("findings", [])
    verdict = Verdict(request, grant, tuple(findings[:MAX_FINDINGS]), plan, policy.version)
    if findings or plan is None or grant is None or request.mode != "dp":
        return verdict
    cached = cached_answer(
        session, grant=grant, plan=plan, request=request, dataset_version=dataset_version
    )
    if cached is not None:
        return replace(verdict, cached=cached)
    if not budget_allows(
        grant, epsilon=float(request.epsilon or 0.0), delta=float(request.delta or 0.0)
    ):
        finding = Finding.of(
            "dp.budget_exhausted",
            "The grant's privacy budget is exhausted: ε=%(epsilon_left).4g and "
            "δ=%(delta_left).3g remain, the job asks for ε=%(epsilon)g, δ=%(delta)g.",
            epsilon_left=grant.epsilon_remaining,
            delta_left=grant.delta_total - grant.delta_spent,
            epsilon=float(request.epsilon or 0.0),
            delta=float(request.delta or 0.0),
        )
        return replace(verdict, findings=(finding.to_dict(),), error=BudgetExhausted)
    return verdict


def _cap_findings(grant: Grant, request: JobRequest) -> list[dict[str, Any]]:
    findings = []
    if float(request.epsilon or 0.0) > grant.max_epsilon_per_job + 1e-12:
        findings.append(
            Finding.of(
                "dp.epsilon_cap",
                "One job may spend at most ε=%(cap)s under this grant.",
                cap=grant.max_epsilon_per_job,
            ).to_dict()
        )
    if float(request.delta or 0.0) > grant.max_delta_per_job * (1 + 1e-9):
        findings.append(
            Finding.of(
                "dp.delta_cap",
                "One job may spend at most δ=%(cap)g under this grant.",
                cap=grant.max_delta_per_job,
            ).to_dict()
        )
    return findings


def budget_allows(grant: Grant, *, epsilon: float, delta: float) -> bool:
    """What :func:`sandbox.access.grants.charge_budget` would let through, read only."""
    return (
        grant.epsilon_spent + epsilon <= grant.epsilon_total + 1e-9
        and grant.delta_spent + delta <= grant.delta_total + 1e-15
    )


def question_sha256(plan: Plan) -> str:
    return hashlib.sha256(plan.question.encode()).hexdigest()


def cached_answer(
    session: Session, *, grant: Grant, plan: Plan, request: JobRequest, dataset_version: str | None
) -> Job | None:
    """The released dp job with the same grant, question, ε, δ and data, if there is one.

    Asking the same question again must not buy a fresh draw: averaging many
    draws of one query would wear the noise away.
    """
    if not dataset_version:
        return None
    return session.scalars(
        select(Job)
        .where(
            Job.grant_id == grant.id,
            Job.question_sha256 == question_sha256(plan),
            Job.epsilon == float(request.epsilon or 0.0),
            Job.delta == float(request.delta or 0.0),
            Job.mode == "dp",
            Job.dataset_version == dataset_version,
            Job.status == JobStatus.RELEASED.value,
            Job.cached_from.is_(None),
        )
        .order_by(Job.submitted_at)
        .limit(1)
    ).first()


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
