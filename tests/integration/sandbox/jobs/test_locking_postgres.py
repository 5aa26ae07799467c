"""Lock order between submissions and workers on PostgreSQL.

Under load (bench/throughput.py --metadata postgres) a submission once died
with a deadlock: it held its analyst's row FOR UPDATE and waited for the audit
lock, while a worker held the audit lock and, updating that analyst's job a
second time in its transaction, had PostgreSQL check the job's foreign key
with FOR KEY SHARE on the same analyst row. These tests replay that order
with real transactions on a real server.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from sandbox.context import Sandbox
from sandbox.db import is_transient, retry_transient
from sandbox.integrity import audit
from sandbox.jobs import lifecycle
from sandbox.jobs.pipeline import _locked
from sandbox.models import Job, JobStatus
from tests.factories import make_sandbox, submit_job
from tests.services import fresh_postgres_database

pytestmark = pytest.mark.postgres


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return make_sandbox(tmp_path / "instance", database_url=fresh_postgres_database(), patients=200)


def queued_job(sandbox: Sandbox) -> tuple[str, int]:
    job = submit_job(sandbox, "SELECT department, COUNT(*) AS n FROM visits GROUP BY department")
    assert job.status == JobStatus.QUEUED
    return job.id, job.analyst_id


def test_worker_updating_a_job_does_not_wait_for_a_submission_of_its_analyst(
    sandbox: Sandbox,
) -> None:
    job_id, analyst_id = queued_job(sandbox)
    locked, worker_done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def submission() -> None:
        # What submit.submit does, held open: the analyst's row, then the audit lock.
        try:
            with sandbox.tx() as session:
                assert lifecycle.lock_analyst(session, analyst_id) is not None
                locked.set()
                worker_done.wait(timeout=10)
                audit.append(session, actor="analyst", action="test.submitted", subject=job_id)
        except BaseException as error:
            errors.append(error)

    submitting = threading.Thread(target=submission)
    submitting.start()
    assert locked.wait(timeout=10)
    # What a worker does when it starts a job: lock it, move it (the audit lock),
    # then update it again (PostgreSQL checks the foreign key to the analyst).
    with sandbox.tx() as session:
        job = _locked(session, job_id)
        lifecycle.move(session, job, JobStatus.RUNNING, actor="worker")
        session.flush()
        job.runner = "docker"
        session.flush()
    worker_done.set()  # reached while the submission still holds its analyst's row
    submitting.join(timeout=20)
    assert not submitting.is_alive()
    assert errors == []
    with sandbox.tx() as session:
        assert session.get_one(Job, job_id).status == JobStatus.RUNNING.value


def test_a_deadlock_victim_is_run_again(sandbox: Sandbox) -> None:
    """Two transactions taking two rows in opposite orders: PostgreSQL rolls one back,
    and retry_transient runs it again to a commit."""
    first_id, _ = queued_job(sandbox)
    second_id, _ = queued_job(sandbox)
    both_hold_one = threading.Barrier(2, timeout=10)
    outcomes: dict[str, BaseException | None] = {}

    def take(name: str, order: tuple[str, str]) -> None:
        attempts = 0

        def once() -> None:
            nonlocal attempts
            attempts += 1
            with sandbox.tx() as session:
                _locked(session, order[0]).runner = name
                session.flush()
                if attempts == 1:
                    both_hold_one.wait()
                _locked(session, order[1]).runner = name

        try:
            retry_transient(once)
            outcomes[name] = None
        except BaseException as error:
            outcomes[name] = error

    threads = [
        threading.Thread(target=take, args=("a", (first_id, second_id))),
        threading.Thread(target=take, args=("b", (second_id, first_id))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert outcomes == {"a": None, "b": None}
    with sandbox.tx() as session:
        runners = {session.get_one(Job, i).runner for i in (first_id, second_id)}
    assert len(runners) == 1  # the victim ran again after the other committed


def test_only_a_rollback_for_another_transactions_sake_is_transient(sandbox: Sandbox) -> None:
    calls = 0

    def divide_by_zero() -> None:
        nonlocal calls
        calls += 1
        with sandbox.tx() as session:
            session.execute(text("SELECT 1 / 0"))

    with pytest.raises(DBAPIError) as raised:
        retry_transient(divide_by_zero)
    assert not is_transient(raised.value)
    assert calls == 1  # not run again
