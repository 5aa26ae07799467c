"""What the API and the pages show of jobs and results: status, released outputs, CSV.

The analyst-facing shapes never hold a job's log or anything from raw data.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from policies.permissions import (
    Person,
    user_may_read_job_log,
    user_may_read_result,
    user_may_see_job,
)
from sandbox.actions import transaction
from sandbox.context import Sandbox
from sandbox.errors import Conflict, Forbidden, InvalidRequest, NotFound
from sandbox.integrity import audit
from sandbox.jobs import reviews
from sandbox.jobs.tables import result_csv
from sandbox.models import FINAL_STATES, Job, JobStatus, iso

RESULT_FORMATS = ("json", "csv")


def job_status_for(sandbox: Sandbox, *, by: Person, job_id: str) -> dict[str, Any]:
    with sandbox.tx() as session:
        return job_status(job_for(session, job_id, by=by), by=by)


def my_jobs(sandbox: Sandbox, *, by: Person) -> list[dict[str, Any]]:
    with sandbox.tx() as session:
        return [job_status(j, by=by) for j in jobs_of(session, analyst_id=by.id)]


def read_result(
    sandbox: Sandbox, *, by: Person, job_id: str, format: str, table: str | None = None
) -> dict[str, Any] | str:
    """A released result (JSON) or one of its tables (CSV); the download is audited."""
    if format not in RESULT_FORMATS:
        raise InvalidRequest("format must be json or csv.", field="format")
    with transaction(sandbox, by=by, action="result.read", subject=job_id) as session:
        data = job_result(job_for(session, job_id, by=by), by=by)
        answer: dict[str, Any] | str = result_csv(data, table=table) if format == "csv" else data
        audit.append(
            session,
            actor=by.username,
            action="result.downloaded",
            subject=job_id,
            details={"format": format},
        )
        return answer


def job_page(sandbox: Sandbox, *, by: Person, job_id: str) -> dict[str, Any]:
    """The job page: status, code, the review as its analyst reads it, and the released
    result for its analyst (the viewing is audited). Never the log."""
    with transaction(sandbox, by=by, action="result.view", subject=job_id) as session:
        job = job_for(session, job_id, by=by)
        status = job_status(job, by=by)
        status.pop("log", None)  # the page never shows what a job printed
        mine = job.analyst_id == by.id
        result = None
        if mine and job.status == JobStatus.RELEASED:
            result = job_result(job, by=by)
            audit.append(session, actor=by.username, action="result.viewed", subject=job_id)
        return {
            "job": status,
            "result": result,
            "mine": mine,
            "code": job.code if mine else status.get("code"),
            "review": reviews.analyst_view(session, job) if mine else None,
            "final": JobStatus(job.status) in FINAL_STATES,
        }


def review_for_analyst(sandbox: Sandbox, *, by: Person, job_id: str) -> dict[str, Any]:
    """The review of the analyst's own job: decisions and comments, never the held output."""
    with sandbox.tx() as session:
        job = job_for(session, job_id, by=by)
        return {"id": job.id, "status": job.status, "review": reviews.analyst_view(session, job)}


def job_for(session: Session, job_id: str, *, by: Person) -> Job:
    job = session.get(Job, job_id)
    if job is None or not user_may_see_job(by, analyst_id=job.analyst_id):
        raise NotFound(f"There is no job {job_id}.")  # do not confirm other people's jobs
    return job


def job_status(job: Job, *, by: Person) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": job.id,
        "status": job.status,
        "dataset": job.dataset,
        "language": job.language,
        "mode": job.mode,
        "epsilon": job.epsilon,
        "rows_per_person": job.rows_per_person,
        "submitted_at": iso(job.submitted_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "attempts": job.attempts,
        "runner": job.runner,
        # The isolation it ran under: the engine runtime and the runner image's ID.
        "runtime": job.runtime,
        "image_digest": job.image_digest,
        "findings": job.findings or [],
    }
    if job.error_code:
        data["error"] = {"code": job.error_code, "message": job.error_message}
    if user_may_read_job_log(by):
        data["analyst"] = job.analyst.username
        data["code"] = job.code
        data["log"] = job.log  # auditors see what the job printed; analysts never do
        # and why each suppressed cell is blank, which says something of its value
        data["suppressions"] = job.suppressions
    return data


def job_result(job: Job, *, by: Person) -> dict[str, Any]:
    if not user_may_read_result(by, analyst_id=job.analyst_id):
        raise Forbidden("Only the job's analyst reads its result.")
    if job.status != JobStatus.RELEASED or job.result is None:
        raise Conflict(
            f"The job is {job.status}; a result exists once it is released.", status=job.status
        )
    return {**job.result, "certificate": job.certificate}


def jobs_of(session: Session, *, analyst_id: int, limit: int = 50) -> list[Job]:
    return list(
        session.scalars(
            select(Job)
            .where(Job.analyst_id == analyst_id)
            .order_by(Job.submitted_at.desc())
            .limit(limit)
        )
    )
