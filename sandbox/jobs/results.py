"""TODO docstring."""

from __future__ import annotations

import csv
import io
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.errors import Conflict, Forbidden, InvalidRequest, NotFound
from sandbox.models import Job, JobStatus, Role, iso


def job_for(session: Session, job_id: str, *, user_id: int, role: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"There is no job {job_id}.")
    if job.analyst_id != user_id and role not in (Role.AUDITOR, Role.ADMIN):
        raise NotFound(f"There is no job {job_id}.")  # do not confirm other people's jobs
    return job


def job_status(job: Job, *, role: str) -> dict[str, Any]:
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
        "findings": job.findings or [],
    }
    if job.error_code:
        data["error"] = {"code": job.error_code, "message": job.error_message}
    if role in (Role.AUDITOR, Role.ADMIN):
        data["analyst"] = job.analyst.username
        data["code"] = job.code
        data["log"] = job.log  # auditors see what the job printed; analysts never do
    return data


def job_result(job: Job, *, user_id: int) -> dict[str, Any]:
    if job.analyst_id != user_id:
        raise Forbidden("Only the job's analyst reads its result.")
    if job.status != JobStatus.RELEASED or job.result is None:
        raise Conflict(
            f"The job is {job.status}; a result exists once it is released.", status=job.status
        )
    return {**job.result, "certificate": job.certificate}


def result_csv(result: dict[str, Any], *, table: str | None) -> str:
    """One released table as CSV (the first one unless ``table`` names another)."""
    tables = result["tables"]
    chosen = next((t for t in tables if table in (None, t["name"])), None)
    if chosen is None:
        names = ", ".join(t["name"] for t in tables)
        raise InvalidRequest(f"table must be one of {names}.", field="table")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(chosen["columns"])
    writer.writerows(chosen["rows"])
    return buffer.getvalue()


def jobs_of(session: Session, *, user_id: int, limit: int = 50) -> list[Job]:
    return list(
        session.scalars(
            select(Job)
            .where(Job.analyst_id == user_id)
            .order_by(Job.submitted_at.desc())
            .limit(limit)
        )
    )
