"""Submitting a job: authorize, check, charge the budget, queue.

Every state change goes through :func:`move`, which refuses a move the state
machine does not allow and appends the audit entry in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from policies.decision import Finding
from sandbox.access import grants
from sandbox.catalog import manifest_for
from sandbox.db import retry_transient
from sandbox.dp.planner import estimates
from sandbox.errors import (
    BudgetExhausted,
    InvalidRequest,
    NoActiveGrant,
    NotFound,
    PolicyRejected,
    TooManyRequests,
)
from sandbox.integrity import audit
from sandbox.jobs.lifecycle import ACTIVE_STATES, lock_analyst, move
from sandbox.jobs.planning import DEFAULT_EPSILON, MAX_CODE_CHARS, _check_kind, plan_job, policy_for
from sandbox.models import Grant, Job, JobStatus, Role, User, utcnow


def dry_run(
    session: Session,
    *,
    by: User,
    dataset: str,
    language: str,
    mode: str,
    code: str,
    epsilon: float | None = None,
    delta: float | None = None,
    rows_per_person: int | None = None,
) -> dict[str, Any]:
    """Every finding the job would meet, without queueing it or spending budget."""
    _check_kind(language=language, mode=mode)
    manifest = manifest_for(dataset)
    findings: list[dict[str, Any]] = []
    grant: Grant | None = None
    try:
        grant = grants.active_grant(session, analyst=by, dataset=dataset, mode=mode)
    except NoActiveGrant as error:
        findings.append(Finding("grant.none", error.message).to_dict())
    policy = policy_for(manifest, grant)
    report: dict[str, Any] = {}
    spend = float(epsilon or DEFAULT_EPSILON)
    try:
        plan = plan_job(
            manifest,
            language=language,
            mode=mode,
            code=code,
            epsilon=spend,
            policy=policy,
            delta=float(delta or 0.0),
            rows_per_person=rows_per_person,
            max_rows_per_person=grant.max_rows_per_person if grant else None,
        )
    except PolicyRejected as rejection:
        findings += rejection.details.get("findings", [])
    else:
        if plan.dp is not None:
            remaining = grant.epsilon_remaining if grant else 0.0
            report["estimate"] = {
                "epsilon": spend,
                "delta": plan.dp.delta,
                "mechanism": plan.dp.mechanism,
                "rows_per_person": plan.dp.rows_per_person,
                "epsilon_remaining": remaining,
                "outputs": estimates(plan.dp),
            }
    return {
        "allowed": not findings,
        "findings": findings,
        "policy_version": policy.version,
        **report,
    }


def submit_job(
    session: Session,
    *,
    by: User,
    dataset: str,
    language: str,
    mode: str,
    code: str,
    epsilon: float | None = None,
    dataset_version: str | None = None,
    delta: float | None = None,
    rows_per_person: int | None = None,
) -> Job:
    """Record a job and either reject it or queue it. Commit, then enqueue it."""
    if by.role != Role.ANALYST:
        raise InvalidRequest("Only analysts submit jobs.")
    _check_kind(language=language, mode=mode)
    if not isinstance(code, str) or not code.strip() or len(code) > MAX_CODE_CHARS:
        raise InvalidRequest(f"code must be 1 to {MAX_CODE_CHARS} characters.", field="code")
    if mode == "dp":
        epsilon = DEFAULT_EPSILON if epsilon is None else epsilon
        if not isinstance(epsilon, int | float) or not 0 < float(epsilon) <= 100:
            raise InvalidRequest("epsilon must be a number above 0.", field="epsilon")
        delta = 0.0 if delta is None else delta
        if not isinstance(delta, int | float) or not 0 <= float(delta) < 1e-3:
            raise InvalidRequest("delta must be at least 0 and below 0.001.", field="delta")
        if rows_per_person is not None and (
            isinstance(rows_per_person, bool) or not isinstance(rows_per_person, int)
        ):
            raise InvalidRequest("rows_per_person must be a whole number.", field="rows_per_person")
    else:
        epsilon, delta, rows_per_person = 0.0, 0.0, None
    manifest = manifest_for(dataset)
    grant = grants.active_grant(session, analyst=by, dataset=dataset, mode=mode)
    job = Job(
        analyst_id=by.id,
        grant_id=grant.id,
        dataset=dataset,
        language=language,
        mode=mode,
        code=code,
        code_sha256=hashlib.sha256(code.encode()).hexdigest(),
        epsilon=float(epsilon),
        delta=float(delta),
        rows_per_person=rows_per_person,
        status=JobStatus.SUBMITTED.value,
    )
    session.add(job)
    session.flush()
    audit.append(
        session,
        actor=by.username,
        action="job.submitted",
        subject=job.id,
        details={
            "dataset": dataset,
            "language": language,
            "mode": mode,
            "epsilon": job.epsilon,
            "code_sha256": job.code_sha256,
            "grant": grant.id,
        },
    )
    try:
        if mode == "dp" and job.epsilon > grant.max_epsilon_per_job + 1e-12:
            finding = Finding(
                "dp.epsilon_cap",
                f"One job may spend at most ε={grant.max_epsilon_per_job} under this grant.",
            )
            raise PolicyRejected(finding.message, findings=[finding.to_dict()])
        if mode == "dp" and job.delta > grant.max_delta_per_job * (1 + 1e-9):
            finding = Finding(
                "dp.delta_cap",
                f"One job may spend at most δ={grant.max_delta_per_job:g} under this grant.",
            )
            raise PolicyRejected(finding.message, findings=[finding.to_dict()])
        plan = plan_job(
            manifest,
            language=language,
            mode=mode,
            code=code,
            epsilon=job.epsilon,
            policy=policy_for(manifest, grant),
            delta=job.delta,
            rows_per_person=job.rows_per_person,
            max_rows_per_person=grant.max_rows_per_person,
        )
        job.policy_version = plan.policy_version
        job.dataset_version = dataset_version or ""
        job.question_sha256 = hashlib.sha256(plan.question.encode()).hexdigest()
        cached = _cached_answer(session, job) if mode == "dp" and dataset_version else None
        if cached is not None:
            job.cached_from = cached.id
        elif mode == "dp" and not grants.charge_budget(
            session, grant_id=grant.id, epsilon=job.epsilon, delta=job.delta
        ):
            finding = Finding(
                "dp.budget_exhausted",
                f"The grant's privacy budget is exhausted: ε={grant.epsilon_remaining:.4g} and "
                f"δ={grant.delta_total - grant.delta_spent:.3g} remain, the job asks for "
                f"ε={job.epsilon:g}, δ={job.delta:g}.",
            )
            raise BudgetExhausted(finding.message, findings=[finding.to_dict()])
    except PolicyRejected as rejection:
        job.findings = list(rejection.details.get("findings", []))
        job.error_code = rejection.code
        job.error_message = rejection.message
        job.finished_at = utcnow()
        # Rule codes only: a finding's message may quote the submitted code.
        rules = [str(f.get("rule")) for f in job.findings]
        move(
            session,
            job,
            JobStatus.REJECTED,
            actor="policy",
            details={"error": job.error_code, "rules": rules},
        )
        return job
    move(session, job, JobStatus.QUEUED, actor="policy")
    return job


def _cached_answer(session: Session, job: Job) -> Job | None:
    """The released job with the same grant, code, ε and data, if there is one.

    Asking the same question again must not buy a fresh draw: averaging many
    draws of one query would wear the noise away.
    """
    return session.scalars(
        select(Job)
        .where(
            Job.grant_id == job.grant_id,
            Job.question_sha256 == job.question_sha256,
            Job.epsilon == job.epsilon,
            Job.delta == job.delta,
            Job.mode == "dp",
            Job.dataset_version == job.dataset_version,
            Job.status == JobStatus.RELEASED.value,
            Job.cached_from.is_(None),
        )
        .order_by(Job.submitted_at)
        .limit(1)
    ).first()


def rejection_of(job: Job) -> PolicyRejected:
    """The error to answer with for a rejected job (after its rejection is committed)."""
    error_class = BudgetExhausted if job.error_code == BudgetExhausted.code else PolicyRejected
    findings = list(job.findings or [])
    first = findings[0] if findings else {}
    return error_class(
        job.error_message or "The job was rejected.",
        rule=first.get("rule"),
        location=first.get("location"),
        findings=findings,
        job_id=job.id,
    )


Enqueue = Callable[[str], None]


@contextmanager
def _refusal_audited(sandbox: Any, *, by_id: int, dataset: str, mode: str) -> Iterator[None]:
    """A submission without an active grant is rolled back; the attempt is kept in the audit."""
    try:
        yield
    except NoActiveGrant as refusal:
        with sandbox.tx() as session:
            user = session.get(User, by_id)
            audit.append(
                session,
                actor=user.username if user else str(by_id),
                action="job.refused",
                subject=dataset[:128],
                details={"error": refusal.code, "mode": mode},
            )
        raise


def _check_fair_share(session: Session, user: User, settings: Any) -> None:
    """Per analyst: at most so many jobs waiting or running, so many submissions a minute."""
    active = (
        session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.analyst_id == user.id, Job.status.in_([s.value for s in ACTIVE_STATES]))
        )
        or 0
    )
    if active >= settings.max_active_jobs:
        raise TooManyRequests(
            f"You have {active} jobs waiting or running; at most {settings.max_active_jobs} "
            "at once. Submit again when one has finished.",
            rule="fair_share.active_jobs",
            retry_after=10,
        )
    since = utcnow() - dt.timedelta(minutes=1)
    recent = list(
        session.scalars(
            select(Job.submitted_at)
            .where(Job.analyst_id == user.id, Job.submitted_at >= since)
            .order_by(Job.submitted_at)
        )
    )
    if len(recent) >= settings.max_submissions_per_minute:
        oldest = recent[0] if recent[0].tzinfo else recent[0].replace(tzinfo=dt.UTC)
        wait = max(1, math.ceil(60 - (utcnow() - oldest).total_seconds()))
        raise TooManyRequests(
            f"At most {settings.max_submissions_per_minute} submissions a minute; "
            f"try again in {wait} s.",
            rule="fair_share.per_minute",
            retry_after=wait,
        )


def submit(
    sandbox: Any,
    *,
    by_id: int,
    dataset: str,
    language: str,
    mode: str,
    code: str,
    epsilon: float | None,
    enqueue: Enqueue,
    delta: float | None = None,
    rows_per_person: int | None = None,
) -> Job:
    """Submit in one transaction; answer a rejection with its error; queue the rest."""

    def once() -> Job:
        refusal_kept = _refusal_audited(sandbox, by_id=by_id, dataset=dataset, mode=mode)
        with refusal_kept, sandbox.tx() as session:
            user = lock_analyst(session, by_id)
            if user is None:
                raise NotFound("There is no such user.")
            _check_fair_share(session, user, sandbox.settings)
            store = sandbox.store
            version = store.version(dataset) if store.exists(dataset) else None
            return submit_job(
                session,
                by=user,
                dataset=dataset,
                language=language,
                mode=mode,
                code=code,
                epsilon=epsilon,
                dataset_version=version,
                delta=delta,
                rows_per_person=rows_per_person,
            )

    job = retry_transient(once)
    if job.status == JobStatus.REJECTED:
        raise rejection_of(job)
    enqueue(job.id)
    return job
