"""The Celery application: configured from the sandbox settings, tasks in sandbox.tasks.

The job's truth is its database row; the broker only carries job ids. Tasks
are acknowledged late and re-delivered when a worker dies mid-job.
"""

from __future__ import annotations

from celery import Celery

from sandbox.broker import celery_broker_settings
from sandbox.config import Settings


def make_celery(settings: Settings) -> Celery:
    app = Celery("sandbox", include=["sandbox.tasks"])
    app.conf.update(
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="sandbox-jobs",
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        **celery_broker_settings(settings.broker_url),
    )
    return app
