"""Celery tasks. They carry job ids only and never import the web app."""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Celery, shared_task

from runners import RunnerUnavailable
from sandbox.context import current
from sandbox.jobs.pipeline import run_job

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


def send_job(app: Celery, job_id: str) -> bool:
    """Hand one job to the broker; False when the broker cannot take it now.

    The job's row is the truth: a job whose message never arrives waits in
    'queued' until a worker's sweeper (sandbox.worker.sweeper) sends it again, and a
    duplicate message is harmless.
    """
    try:
        app.send_task(TASK_NAME, args=[job_id], retry=False)
    except Exception as error:
        log.warning("job %s stays queued: broker unavailable (%s)", job_id, type(error).__name__)
        return False
    return True


def make_enqueue(app: Celery) -> Callable[[str], None]:
    """How a process hands queued jobs to this Celery app's broker."""

    def enqueue(job_id: str) -> None:
        send_job(app, job_id)

    return enqueue
