"""Celery tasks. They carry job ids only and never import the web app."""

from __future__ import annotations

import logging

from celery import shared_task
from sqlalchemy import select

from runners import RunnerUnavailable
from sandbox.context import current
from sandbox.models import Job, JobStatus
from sandbox.pipeline import run_job

log = logging.getLogger(__name__)


@shared_task(
    name="sandbox.run_job",
    acks_late=True,
    autoretry_for=(RunnerUnavailable,),
    retry_backoff=True,
    max_retries=8,
)
def run_job_task(job_id: str) -> str:
    return run_job(current(), job_id)


def enqueue(job_id: str) -> None:
    """Hand a queued job to the broker; if the broker is down the row waits in 'queued'."""
    try:
        run_job_task.apply_async(args=[job_id], retry=False)
    except Exception as error:  # noqa: BLE001 - any broker failure leaves the job queued
        log.warning("job %s stays queued: broker unavailable (%s)", job_id, type(error).__name__)


def requeue_waiting() -> int:
    """Queue every job that waits in 'queued' (a duplicate delivery is harmless)."""
    with current().tx() as session:
        ids = list(session.scalars(select(Job.id).where(Job.status == JobStatus.QUEUED)))
    for job_id in ids:
        enqueue(job_id)
    return len(ids)
