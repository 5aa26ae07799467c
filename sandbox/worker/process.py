"""The worker process's Celery app: ``celery -A sandbox.worker.process worker``.

Besides running tasks, the worker's main process runs the sweeper
(sandbox.worker.sweeper): it sends again the jobs whose message was lost and clears
what killed workers left behind, as the worker starts and then periodically.
"""

from __future__ import annotations

from functools import partial

from celery.signals import (
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from sandbox.context import current
from sandbox.db import engine_for
from sandbox.worker.celery_app import make_celery
from sandbox.worker.sweeper import Sweeper, docker_for

app = make_celery(current().settings)
_sweepers: list[Sweeper] = []


@worker_ready.connect
def _start_sweeper(sender: object = None, **_: object) -> None:
    from sandbox.worker.tasks import send_job, send_submission

    if _sweepers:
        return
    sandbox = current()
    sweeper = Sweeper(
        sandbox,
        partial(send_job, app),
        docker=docker_for(sandbox.settings),
        send_submission=lambda submission_id, final: send_submission(
            app, submission_id, final=final
        ),
    )
    _sweepers.append(sweeper)
    sweeper.start()


@worker_shutdown.connect
def _stop_sweeper(sender: object = None, **_: object) -> None:
    for sweeper in _sweepers:
        sweeper.stop()


@worker_process_init.connect
def _own_database_connections(sender: object = None, **_: object) -> None:
    """A pool process is forked from the main one, whose sweeper holds pooled
    connections: the child starts a pool of its own and leaves those alone."""
    engine_for(current().settings.database_url).dispose(close=False)


@worker_process_init.connect
def _warm_runner(sender: object = None, **_: object) -> None:
    """Each pool process starts its warm runner containers (runners.pool) at once."""
    warm_up = getattr(current().runner, "warm_up", None)
    if warm_up is not None:
        warm_up()


@worker_process_shutdown.connect
def _close_runner(sender: object = None, **_: object) -> None:
    """A pool process that stops removes its warm containers itself (a killed one's are
    removed by the next sweep, as their creator is gone)."""
    close = getattr(current().runner, "close", None)
    if close is not None:
        close()
