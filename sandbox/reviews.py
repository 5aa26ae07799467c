"""Auditor review of outputs held for it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.context import Sandbox
from sandbox.errors import Conflict, InvalidRequest, NotFound
from sandbox.jobs import move
from sandbox.models import Job, JobStatus, User, utcnow
from sandbox.pipeline import release


def pending(session: Session) -> list[Job]:
    return list(
        session.scalars(
            select(Job).where(Job.status == JobStatus.PENDING_REVIEW).order_by(Job.submitted_at)
        )
    )


def review_job(
    sandbox: Sandbox, session: Session, *, by: User, job_id: str, decision: str, comment: str
) -> Job:
    if decision not in ("approve", "withhold"):
        raise InvalidRequest("decision must be approve or withhold.", field="decision")
    job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).one_or_none()
    if job is None:
        raise NotFound(f"There is no job {job_id}.")
    if job.status != JobStatus.PENDING_REVIEW:
        raise Conflict(f"The job is {job.status}, not pending review.")
    if job.analyst_id == by.id:
        raise Conflict("Nobody reviews their own job.")
    details: dict[str, Any] = {"decision": decision, "comment": comment[:2000]}
    if decision == "approve":
        release(sandbox, session, job, reviewers=[by.username])
    else:
        job.error_code, job.error_message = "withheld_by_review", "An auditor withheld the output."
        job.finished_at = utcnow()
        move(session, job, JobStatus.WITHHELD, actor=by.username, details=details)
    return job
