"""What an owner does with a published dataset: list versions, export the definition,
see how the data is used, retire it.

Every action is the dataset's owner's (or an admin's): a second owner gets the
same refusal as for grants and consent, audited.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from datasets.definition import dump_definition
from policies.permissions import Person, user_is_admin, user_may_bring_datasets
from sandbox.actions import transaction
from sandbox.catalog import PUBLISHED, RETIRED, check_governs, parsed_version
from sandbox.context import Sandbox
from sandbox.dp.marginals import marginals_path
from sandbox.errors import Conflict, Forbidden, InvalidRequest, NotFound
from sandbox.integrity import audit
from sandbox.models import (
    FINAL_STATES,
    AccessRequest,
    AuditEntry,
    DatasetRecord,
    DatasetVersion,
    Grant,
    Job,
    JobStatus,
    iso,
    utcnow,
)

MAX_USAGE_JOBS = 200
MAX_USAGE_ENTRIES = 100


def my_datasets(sandbox: Sandbox, *, by: Person) -> list[dict[str, Any]]:
    """The datasets ``by`` owns (every dataset for an admin), each with its versions."""
    if not user_may_bring_datasets(by):
        raise Forbidden("Only data owners have datasets of their own.")
    with sandbox.tx() as session:
        query = select(DatasetRecord).order_by(DatasetRecord.name)
        if not user_is_admin(by):
            query = query.where(DatasetRecord.owner_id == by.id)
        return [_dataset_view(session, r) for r in session.scalars(query)]


def dataset_versions(sandbox: Sandbox, *, by: Person, dataset: str) -> dict[str, Any]:
    with sandbox.tx() as session:
        record = _governed(session, by=by, dataset=dataset)
        return _dataset_view(session, record)


def export_definition(sandbox: Sandbox, *, by: Person, dataset: str) -> str:
    """The current version's definition as YAML, ready to edit and import again."""
    with transaction(sandbox, by=by, action="dataset.export", subject=dataset) as session:
        record = _governed(session, by=by, dataset=dataset)
        row = _version_row(session, dataset, record.current)
        manifest, _ = parsed_version(row)
        audit.append(
            session,
            actor=by.username,
            action="dataset.definition_exported",
            subject=dataset,
            details={"number": row.number},
        )
        return dump_definition(manifest, row.policy_text)


def retire_dataset(sandbox: Sandbox, *, by: Person, dataset: str, confirm: str) -> dict[str, Any]:
    """Close the dataset for good: its data key is destroyed (nothing of it can be
    decrypted again), its grants end, no job runs on it. Audited."""
    with transaction(sandbox, by=by, action="dataset.retire", subject=dataset) as session:
        record = _governed(session, by=by, dataset=dataset)
        if confirm != dataset:
            raise InvalidRequest(
                "To retire a dataset, confirm with its name: this cannot be undone.",
                field="confirm",
            )
        if record.status == RETIRED:
            raise Conflict(f"{dataset} is retired already.")
        ended = 0
        for grant in session.scalars(select(Grant).where(Grant.dataset == dataset)):
            if grant.revoked_at is None:
                grant.revoked_at = utcnow()
                ended += 1
        record.status, record.retired_at = RETIRED, utcnow()
        audit.append(
            session,
            actor=by.username,
            action="dataset.retired",
            subject=dataset,
            details={"number": record.current, "grants_ended": ended, "data_key": "destroyed"},
        )
        session.flush()
        # Last, inside the transaction: a refusal above leaves the data readable.
        sandbox.store.destroy(dataset)
        marginals_path(sandbox.settings.instance, dataset).unlink(missing_ok=True)
        return _dataset_view(session, record)


def dataset_usage(sandbox: Sandbox, *, by: Person, dataset: str) -> dict[str, Any]:
    """How the owner's data is used: grants with ε and δ spent and left and their use over
    time, jobs by status, releases, and the audit entries about the dataset."""
    with transaction(sandbox, by=by, action="dataset.usage", subject=dataset) as session:
        _governed(session, by=by, dataset=dataset)
        grants = list(session.scalars(select(Grant).where(Grant.dataset == dataset)))
        jobs = list(
            session.scalars(
                select(Job)
                .where(Job.dataset == dataset)
                .order_by(Job.submitted_at.desc())
                .limit(MAX_USAGE_JOBS)
            )
        )
        asked = session.scalars(select(AccessRequest.id).where(AccessRequest.dataset == dataset))
        subjects = [dataset, *(g.id for g in grants), *(j.id for j in jobs), *asked]
        entries = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.subject.in_(subjects))
            .order_by(AuditEntry.seq.desc())
            .limit(MAX_USAGE_ENTRIES)
        )
        zone = ZoneInfo(sandbox.settings.time_zone)
        return {
            "dataset": dataset,
            "grants": [_grant_use(g, jobs, zone) for g in grants],
            "jobs_by_status": dict(Counter(j.status for j in jobs)),
            "jobs": [_job_line(j) for j in jobs[:50]],
            "releases": sum(1 for j in jobs if j.status == JobStatus.RELEASED.value),
            "audit": [_entry_line(e) for e in entries],
        }


# --- building blocks ------------------------------------------------------------------------


def _governed(session: Session, *, by: Person, dataset: str) -> DatasetRecord:
    record = session.scalar(select(DatasetRecord).where(DatasetRecord.name == dataset))
    if record is None:
        raise NotFound(f"There is no dataset {dataset}.")
    check_governs(session, by=by, dataset=dataset)
    return record


def _version_row(session: Session, dataset: str, number: int) -> DatasetVersion:
    row = session.scalar(
        select(DatasetVersion).where(
            DatasetVersion.dataset == dataset, DatasetVersion.number == number
        )
    )
    if row is None:
        raise NotFound(f"{dataset} has no version {number}.")
    return row


def _dataset_view(session: Session, record: DatasetRecord) -> dict[str, Any]:
    versions = session.scalars(
        select(DatasetVersion)
        .where(DatasetVersion.dataset == record.name)
        .order_by(DatasetVersion.number.desc())
    )
    return {
        "name": record.name,
        "status": record.status,
        "current": record.current if record.status == PUBLISHED else None,
        "version": record.version,
        "row_counts": record.row_counts,
        "retired_at": iso(record.retired_at),
        "versions": [
            {
                "number": v.number,
                "version": v.version,
                "mode": v.mode,
                "rows": v.row_counts,
                "published_by": v.published_by,
                "published_at": iso(v.published_at),
                "title": (v.definition or {}).get("title"),
            }
            for v in versions
        ],
    }


def _grant_use(grant: Grant, jobs: list[Job], zone: ZoneInfo) -> dict[str, Any]:
    """A grant's budget and its ε spent day by day (released and running dp jobs), the
    days those of the time zone the pages show."""
    by_day: dict[str, float] = {}
    for job in sorted(jobs, key=lambda j: j.submitted_at):
        if job.grant_id != grant.id or job.mode != "dp" or job.cached_from:
            continue
        if JobStatus(job.status) in FINAL_STATES and job.status != JobStatus.RELEASED.value:
            continue  # failed and withheld jobs were refunded or never spent
        submitted = job.submitted_at
        if submitted.tzinfo is None:  # SQLite gives back naive UTC
            submitted = submitted.replace(tzinfo=dt.UTC)
        day = submitted.astimezone(zone).date().isoformat()
        by_day[day] = by_day.get(day, 0.0) + job.epsilon
    spent, series = 0.0, []
    for day, epsilon in sorted(by_day.items()):
        spent += epsilon
        series.append({"day": day, "epsilon": round(spent, 6)})
    return {
        "id": grant.id,
        "analyst": grant.analyst.username,
        "purpose": grant.purpose,
        "active": grant.is_active(),
        "epsilon_total": grant.epsilon_total,
        "epsilon_spent": grant.epsilon_spent,
        "epsilon_left": max(0.0, grant.epsilon_total - grant.epsilon_spent),
        "delta_total": grant.delta_total,
        "delta_spent": grant.delta_spent,
        "delta_left": max(0.0, grant.delta_total - grant.delta_spent),
        "use_over_time": series,
    }


def _job_line(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "analyst": job.analyst.username,
        "mode": job.mode,
        "language": job.language,
        "status": job.status,
        "epsilon": job.epsilon,
        "dataset_version": job.dataset_version,
        "submitted_at": iso(job.submitted_at),
    }


def _entry_line(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at,
        "actor": entry.actor,
        "action": entry.action,
        "subject": entry.subject,
    }
