"""Read models: what the API and the pages show of jobs, datasets and budgets.

The analyst-facing shapes never hold a job's log or anything from raw data.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from datasets.health_manifest import MANIFESTS
from datasets.manifest import Manifest
from datasets.mock import mock_view_table
from policies.policy_file import load_policy
from sandbox.dp.marginals import mock_table
from sandbox.errors import Conflict, Forbidden, InvalidRequest, NotFound
from sandbox.models import AccessRequest, DatasetRecord, Grant, Job, JobStatus, Role, User

MAX_MOCK_ROWS = 10_000


def catalog(session: Session) -> list[dict[str, Any]]:
    records = {r.name: r for r in session.scalars(select(DatasetRecord))}
    return [
        {
            "name": m.name,
            "title": m.title,
            "title_en": m.title_en,
            "privacy_unit": m.privacy_unit,
            "tables": [t.name for t in m.tables],
            "available": m.name in records,
            "version": records[m.name].version if m.name in records else None,
            "row_counts": records[m.name].row_counts if m.name in records else None,
        }
        for m in MANIFESTS.values()
    ]


def manifest_of(name: str) -> Manifest:
    manifest = MANIFESTS.get(name)
    if manifest is None:
        raise NotFound(f"There is no dataset {name}.")
    return manifest


def dataset_schema(name: str) -> dict[str, Any]:
    return manifest_of(name).to_dict()


def mock_csv(
    name: str, *, table: str | None, rows: str | None, marginals: dict[str, Any] | None = None
) -> str:
    """Synthetic rows with the view's schema: from the dataset's DP marginals when it has
    them, else from the synthetic generator (no real data either way)."""
    manifest = manifest_of(name)
    if not table or manifest.table(table) is None:
        raise InvalidRequest(
            f"table must be one of {', '.join(manifest.table_names)}.", field="table"
        )
    try:
        count = int(rows or 100)
    except ValueError as error:
        raise InvalidRequest("rows must be a whole number.", field="rows") from error
    if not 1 <= count <= MAX_MOCK_ROWS:
        raise InvalidRequest(f"rows must be between 1 and {MAX_MOCK_ROWS}.", field="rows")
    if marginals is not None:
        frame = mock_table(marginals, manifest, table, count, seed=count)
    else:
        frame = mock_view_table(manifest, table, count, seed=count)
    # The columns a Python job will not see are not in its mock rows either.
    policy = load_policy(manifest)
    frame = frame[[c for c in frame.columns if not policy.rule(table, c).forbidden]]
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue()


def job_for(session: Session, job_id: str, *, user_id: int, role: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"There is no job {job_id}.")
    if job.analyst_id != user_id and role not in (Role.AUDITOR, Role.ADMIN):
        raise NotFound(f"There is no job {job_id}.")  # do not confirm other people's jobs
    return job


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def job_status(job: Job, *, role: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": job.id,
        "status": job.status,
        "dataset": job.dataset,
        "language": job.language,
        "mode": job.mode,
        "epsilon": job.epsilon,
        "rows_per_person": job.rows_per_person,
        "submitted_at": _iso(job.submitted_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
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
        raise Conflict(f"The job is {job.status}; a result exists once it is released.",
                       status=job.status)  # fmt: skip
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


def budgets(session: Session, *, user_id: int) -> list[dict[str, Any]]:
    grants = session.scalars(select(Grant).where(Grant.analyst_id == user_id))
    return [
        {
            "grant": g.id,
            "dataset": g.dataset,
            "modes": g.mode_list,
            "active": g.is_active(),
            "epsilon_total": g.epsilon_total,
            "epsilon_spent": round(g.epsilon_spent, 9),
            "epsilon_remaining": round(g.epsilon_remaining, 9),
            "delta_total": g.delta_total,
            "delta_spent": g.delta_spent,
            "max_delta_per_job": g.max_delta_per_job,
            "max_rows_per_person": g.max_rows_per_person,
            "max_epsilon_per_job": g.max_epsilon_per_job,
            "k_threshold": g.k_threshold,
            "expires_at": _iso(g.expires_at),
        }
        for g in grants
    ]


def grant_view(grant: Grant) -> dict[str, Any]:
    return {
        "id": grant.id,
        "dataset": grant.dataset,
        "analyst": grant.analyst.username,
        "modes": grant.mode_list,
        "purpose": grant.purpose,
        "epsilon_total": grant.epsilon_total,
        "epsilon_spent": grant.epsilon_spent,
        "max_epsilon_per_job": grant.max_epsilon_per_job,
        "k_threshold": grant.k_threshold,
        "requires_consent": grant.requires_consent,
        "requires_review": grant.requires_review,
        "expires_at": _iso(grant.expires_at),
        "revoked_at": _iso(grant.revoked_at),
        "active": grant.is_active(),
    }


def access_request_view(session: Session, request: AccessRequest) -> dict[str, Any]:
    """A request as its analyst and the owners see it, with the grant it became."""
    decider = session.get(User, request.decided_by) if request.decided_by is not None else None
    grant = session.get(Grant, request.grant_id) if request.grant_id is not None else None
    return {
        "id": request.id,
        "dataset": request.dataset,
        "analyst": request.analyst.username,
        "purpose": request.purpose,
        "justification": request.justification,
        "columns": list(request.columns),
        "modes": [m for m in request.modes.split(",") if m],
        "epsilon": request.epsilon,
        "days": request.days,
        "status": request.status,
        "created_at": _iso(request.created_at),
        "decided_by": decider.username if decider is not None else None,
        "decided_at": _iso(request.decided_at),
        "comment": request.decision_comment,
        "grant": grant_view(grant) | {"columns": list(grant.columns),
                                      "column_rules": dict(grant.column_rules)}
        if grant is not None else None,
    }  # fmt: skip


def user_named(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"There is no user {username}.")
    return user
