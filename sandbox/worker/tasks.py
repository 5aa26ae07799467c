"""Celery tasks. They carry job and submission ids only and never import the web app.

Researchers' jobs go through the ``sandbox-jobs`` queue, contest submissions through
``sandbox-contest``: a worker drains one or both (``sandbox worker --queues``), so a
burst of submissions cannot hold researchers' jobs back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Celery, shared_task

from runners import RunnerUnavailable
from sandbox.contest.scoring import run_submission, score_final
from sandbox.context import current
from sandbox.jobs.pipeline import run_job

log = logging.getLogger(__name__)
TASK_NAME = "sandbox.run_job"
SUBMISSION_TASK = "sandbox.run_submission"
FINAL_TASK = "sandbox.score_final"
JOBS_QUEUE = "sandbox-jobs"
CONTEST_QUEUE = "sandbox-contest"
QUEUES = (JOBS_QUEUE, CONTEST_QUEUE)


@shared_task(
    name=TASK_NAME,
    acks_late=True,
    autoretry_for=(RunnerUnavailable,),
    retry_backoff=True,
    max_retries=8,
)
def run_job_task(job_id: str) -> str:
    return run_job(current(), job_id)


@shared_task(
    name=SUBMISSION_TASK,
    acks_late=True,
    autoretry_for=(RunnerUnavailable,),
    retry_backoff=True,
    max_retries=8,
)
def run_submission_task(submission_id: str) -> str:
    return run_submission(current(), submission_id)


@shared_task(
    name=FINAL_TASK,
    acks_late=True,
    autoretry_for=(RunnerUnavailable,),
    retry_backoff=True,
    max_retries=8,
)
def score_final_task(submission_id: str) -> str:
    return score_final(current(), submission_id)


def send_submission(app: Celery, submission_id: str, *, final: bool = False) -> bool:
    """Hand one submission to the contest queue; False when the broker cannot take it now
    (it waits in 'queued' until a sweeper sends it again)."""
    task = FINAL_TASK if final else SUBMISSION_TASK
    try:
        app.send_task(task, args=[submission_id], queue=CONTEST_QUEUE, retry=False)
    except Exception as error:
        log.warning(
            "submission %s stays queued: broker unavailable (%s)",
            submission_id,
            type(error).__name__,
        )
        return False
    return True


def make_submission_enqueue(app: Celery, *, final: bool = False) -> Callable[[str], None]:
    """How a process hands queued submissions (or final scorings) to the contest queue."""

    def enqueue(submission_id: str) -> None:
        send_submission(app, submission_id, final=final)

    return enqueue


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
