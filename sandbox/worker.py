"""The worker process's Celery app: ``celery -A sandbox.worker worker`` (``sandbox worker``)."""

from __future__ import annotations

from celery.signals import worker_ready

from sandbox.celery_app import make_celery
from sandbox.context import current

app = make_celery(current().settings)


@worker_ready.connect
def _requeue_waiting_jobs(sender: object = None, **_: object) -> None:
    """Queue again jobs that were accepted while no broker or worker was there."""
    from sandbox.tasks import requeue_waiting

    requeue_waiting()
