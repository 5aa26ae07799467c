"""Celery tasks. They carry job ids only and never import the web app."""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Celery, shared_task
from sqlalchemy import select

from runners import RunnerUnavailable
from sandbox.context import current
from sandbox.models import Job, JobStatus
from sandbox.pipeline import run_job

log = logging.getLogger(__name__)
TASK_NAME = "sandbox.run_job"


@shared_task(
    name=TASK_NAME,
    acks_late=True,
    autoretry_for=(RunnerUnavailable,),
    retry_backoff=True,
    max_retries=8,
)
def run_job_task(job_id: str) -> str:
    return run_job(current(), job_id)


def make_enqueue(app: Celery) -> Callable[[str], None]:
    """How a process hands queued jobs to this Celery app's broker."""

    def enqueue(job_id: str) -> None:
        # If the broker is down the job's row waits in 'queued' and a worker
        # picks it up when it starts (requeue_waiting).
        try:
            app.send_task(TASK_NAME, args=[job_id], retry=False)
        except Exception as error:  # noqa: BLE001 - any broker failure leaves the job queued
            log.warning(
                "job %s stays queued: broker unavailable (%s)", job_id, type(error).__name__
            )

    return enqueue


def requeue_waiting() -> int:
    """Queue every job that waits in 'queued' (a duplicate delivery is harmless)."""
    with current().tx() as session:
        ids = list(session.scalars(select(Job.id).where(Job.status == JobStatus.QUEUED)))
    enqueue = make_enqueue(run_job_task.app)
    for job_id in ids:
        enqueue(job_id)
    return len(ids)
