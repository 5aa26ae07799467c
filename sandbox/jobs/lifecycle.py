"""A job's life: the moves its state may make (each audited), and the row locks that
order the transactions touching a job or its analyst."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from sandbox.errors import SandboxError
from sandbox.integrity import audit
from sandbox.models import TRANSITIONS, Job, JobStatus, User

# Who moves a job when no person does, as the audit log names it.
WORKER = "worker"


class IllegalTransition(SandboxError):
    """A move the job state machine does not allow (a bug, or a race lost)."""

    code = "illegal_transition"
    status = 409


def move(
    session: Session,
    job: Job,
    to: JobStatus,
    *,
    actor: str,
    details: dict[str, Any] | None = None,
) -> None:
    current = JobStatus(job.status)
    if to not in TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(f"job {job.id} cannot move from {current} to {to}")
    job.status = to.value
    audit.append(
        session, actor=actor, action=f"job.{to.value}", subject=job.id, details=details or {}
    )


def job_lock(job_id: str) -> Select[Job]:
    """The query that locks a job's row until the transaction ends, FOR NO KEY UPDATE
    (as ``lock_analyst`` explains: the row's key never changes)."""
    return select(Job).where(Job.id == job_id).with_for_update(key_share=True)


def lock_analyst(session: Session, user_id: int) -> User | None:
    """Lock the analyst's row until the transaction ends: one submission per analyst at a
    time, so the fair-share counts hold.

    FOR NO KEY UPDATE, not FOR UPDATE: a worker updating this analyst's job twice in
    one transaction has PostgreSQL check the job's foreign key with FOR KEY SHARE on
    this row. Under FOR UPDATE it waited for the submission, which waited for the
    audit lock the worker held: a deadlock, and a 500 for the submission.
    """
    query = select(User).where(User.id == user_id).with_for_update(key_share=True)
    return session.scalars(query).first()


ACTIVE_STATES = (JobStatus.SUBMITTED, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CHECKING)
