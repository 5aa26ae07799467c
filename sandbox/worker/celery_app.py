"""The Celery application: configured from the sandbox settings, tasks in sandbox.worker.tasks.

The job's truth is its database row; the broker only carries job ids, and a
message that is lost is sent again by a worker's sweeper (sandbox.worker.sweeper).
Tasks are acknowledged late, and put back when the worker process running
them dies; a duplicate delivery is harmless (sandbox.jobs.pipeline, sandbox.jobs.lease).
"""

from __future__ import annotations

from celery import Celery

from sandbox.config import Settings
from sandbox.worker.broker import EMBEDDED_PREFIX, celery_broker_settings


def make_celery(settings: Settings) -> Celery:
    app = Celery("sandbox", include=["sandbox.worker.tasks"])
    app.conf.update(
        task_ignore_result=True,
        result_backend=None,
        # Acknowledged once run_job returns, so a message is not lost with its worker.
        task_acks_late=True,
        # Without this a late-acknowledged message is still acknowledged when the
        # process running it is killed (OOM, SIGKILL); with it the message goes
        # back to the queue. The loop this can cause is bounded by run_job
        # (sandbox.jobs.lease.MAX_WORKER_LOSSES).
        task_reject_on_worker_lost=True,
        # One message per worker process: a long job does not hold others back
        # in its worker while another worker is idle.
        worker_prefetch_multiplier=1,
        # A job that finishes while the broker is away stays finished (its row
        # says so); its unacknowledged message comes back and is a no-op. Killing
        # it instead would only throw the work away.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # Wait for a lost broker for as long as it takes (the default gives up
        # after 100 attempts and stops the worker).
        broker_connection_max_retries=None,
        task_default_queue="sandbox-jobs",
        # Submissions have a queue of their own (sandbox.worker.tasks.CONTEST_QUEUE).
        task_routes={
            "sandbox.run_submission": {"queue": "sandbox-contest"},
            "sandbox.score_final": {"queue": "sandbox-contest"},
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        **celery_broker_settings(settings.broker_url),
    )
    if not settings.broker_url.startswith(EMBEDDED_PREFIX):
        # A producer (the portal, the sweeper) that finds the broker down gives up
        # at once instead of retrying for seconds inside a web request: the job
        # waits in 'queued' and a sweeper sends it once the broker is back.
        app.conf.broker_transport_options = {
            **app.conf.broker_transport_options,
            "max_retries": 0,
        }
    return app
