"""Submitting a job, and its dry run: both ask :func:`sandbox.jobs.planning.decide`.

A submission records the job, then either rejects it (with every finding) or
charges the budget and queues it, in one transaction; the caller's ``enqueue``
hands it to the broker after the commit. Every state change goes through
:func:`sandbox.jobs.lifecycle.move`, which appends the audit entry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from policies.permissions import Person
from sandbox.access import grants
from sandbox.actions import transaction
from sandbox.config import Settings
from sandbox.context import Sandbox
from sandbox.db import retry_transient
from sandbox.dp.noise import estimates
from sandbox.errors import BudgetExhausted, NoActiveGrant, NotFound, PolicyRejected, TooManyRequests
from sandbox.integrity import audit
from sandbox.jobs.lifecycle import ACTIVE_STATES, lock_analyst, move
from sandbox.jobs.planning import JobRequest, Verdict, decide, question_sha256
from sandbox.models import Job, JobStatus, User, aware, utcnow

Enqueue = Callable[[str], None]


def check_job(sandbox: Sandbox, *, by: Person, request: JobRequest) -> dict[str, Any]:
    """The dry run: every finding the job would meet now; nothing queued or spent."""
    with sandbox.tx() as session:
        verdict = decide(
            session, by=by, request=request, dataset_version=_dataset_version(sandbox, request)
        )
        report: dict[str, Any] = {
            "allowed": verdict.allowed,
            "findings": list(verdict.findings),
            "policy_version": verdict.policy_version,
        }
        plan, grant = verdict.plan, verdict.grant
        if plan is not None and plan.dp is not None:
            report["estimate"] = {
                "epsilon": verdict.request.epsilon,
                "delta": plan.dp.delta,
                "mechanism": plan.dp.mechanism,
                "rows_per_person": plan.dp.rows_per_person,
                "epsilon_remaining": grant.epsilon_remaining if grant else 0.0,
                "outputs": estimates(plan.dp),
            }
        if verdict.cached is not None:
            report["cached_from"] = verdict.cached.id
        return report


def submit_job(sandbox: Sandbox, *, by: Person, request: JobRequest, enqueue: Enqueue) -> Job:
    """Submit in one transaction; answer a rejection with its error; queue the rest.

    Without an active grant nothing is recorded but the refusal (``job.refused``).
    """

    def once() -> Job:
        with transaction(
            sandbox,
            by=by,
            action="job",
            subject=str(request.dataset),
            context={"mode": request.mode},
        ) as session:
            user = lock_analyst(session, by.id)
            if user is None:
                raise NotFound("There is no such user.")
            _check_fair_share(session, user, sandbox.settings)
            return record_job(
                session,
                by=user,
                request=request,
                dataset_version=_dataset_version(sandbox, request),
            )

    job = retry_transient(once)
    if job.status == JobStatus.REJECTED:
        raise rejection_of(job)
    enqueue(job.id)
    return job


def record_job(
    session: Session, *, by: User, request: JobRequest, dataset_version: str | None
) -> Job:
    """Record a job and reject or queue it, in the caller's transaction."""
    verdict = decide(session, by=by, request=request, dataset_version=dataset_version)
    grant = verdict.grant
    if grant is None:
        raise NoActiveGrant(str(verdict.findings[0]["message"]))
    checked = verdict.request
    job = Job(
        analyst_id=by.id,
        grant_id=grant.id,
        dataset=checked.dataset,
        language=checked.language,
        mode=checked.mode,
        code=checked.code,
        code_sha256=hashlib.sha256(checked.code.encode()).hexdigest(),
        epsilon=float(checked.epsilon or 0.0),
        delta=float(checked.delta or 0.0),
        rows_per_person=checked.rows_per_person,
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
            "dataset": job.dataset,
            "language": job.language,
            "mode": job.mode,
            "epsilon": job.epsilon,
            "code_sha256": job.code_sha256,
            "grant": grant.id,
        },
    )
    rejection = _accept(session, job, verdict, dataset_version=dataset_version)
    if rejection is not None:
        _reject(session, job, rejection)
        return job
    move(session, job, JobStatus.QUEUED, actor="policy")
    return job


def _accept(
    session: Session, job: Job, verdict: Verdict, *, dataset_version: str | None
) -> PolicyRejected | None:
    """Charge what an accepted job spends; the rejection when it is not accepted."""
    if not verdict.allowed or verdict.plan is None or verdict.grant is None:
        return verdict.rejection()
    job.policy_version = verdict.plan.policy_version
    job.dataset_version = dataset_version or ""
    job.question_sha256 = question_sha256(verdict.plan)
    if verdict.cached is not None:
        job.cached_from = verdict.cached.id
    elif job.mode == "dp" and not grants.charge_budget(
        session, grant_id=verdict.grant.id, epsilon=job.epsilon, delta=job.delta
    ):
        # Another submission spent the budget between the decision and the charge.
        return BudgetExhausted(
            "The grant's privacy budget is exhausted.",
            findings=[
                {
                    "rule": "dp.budget_exhausted",
                    "message": "The grant's privacy budget is exhausted.",
                }
            ],
        )
    return None


def _reject(session: Session, job: Job, rejection: PolicyRejected) -> None:
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


def _dataset_version(sandbox: Sandbox, request: JobRequest) -> str | None:
    store = sandbox.store
    name = request.dataset
    return store.version(name) if isinstance(name, str) and store.exists(name) else None


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


def _check_fair_share(session: Session, user: User, settings: Settings) -> None:
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
        oldest = aware(recent[0])
        wait = max(1, math.ceil(60 - (utcnow() - oldest).total_seconds()))
        raise TooManyRequests(
            f"At most {settings.max_submissions_per_minute} submissions a minute; "
            f"try again in {wait} s.",
            rule="fair_share.per_minute",
            retry_after=wait,
        )
