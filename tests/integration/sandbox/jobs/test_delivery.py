"""Delivery that loses nothing: real Redis brokers, real worker processes, real Docker.

Each test starts its own ``redis-server`` on a free port, so stopping it (or
mixing messages of two instances) disturbs nobody else. The job's row is the
truth; the assertions read it and the audit chain, never a mock.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from runners.containers import (
    LABEL_DEADLINE,
    LABEL_HOST,
    LABEL_JOB,
    LABEL_PID,
    LABEL_RUNNER,
)
from runners.image import IMAGE_TAG
from runners.pool import POOL_JOB_LABEL
from sandbox.context import Sandbox
from sandbox.integrity import audit
from sandbox.jobs import submit as submission
from sandbox.jobs.lease import LEASE_MARGIN_S
from sandbox.jobs.lifecycle import move
from sandbox.jobs.planning import JobRequest
from sandbox.models import AuditEntry, Job, JobStatus, utcnow
from sandbox.worker.celery_app import make_celery
from sandbox.worker.tasks import send_job
from tests.factories import actor, make_sandbox
from tests.live import LivePortal, start_live_portal, start_worker
from tests.services import unavailable

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SQL_JOB = "SELECT hospital, COUNT(*) AS n FROM visits GROUP BY hospital"


def sleepy_job(seconds: float) -> str:
    return (
        f"import time\nimport sandbox_job\ntime.sleep({seconds})\n"
        "v = sandbox_job.table('labs')\n"
        "sandbox_job.frequency_table('t', v, by=['test_code'])"
    )


class RedisServer:
    """A private redis-server that the test can stop and start again on the same port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # No persistence: what the broker held is gone when it comes back.
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        wait_until(lambda: _answers(client), timeout=10, what="redis-server to answer")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        unavailable("Redis", "the redis-server program is not installed")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def cold_containers(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests find a job's container by its job label: no warm pool (runners.pool),
    whose containers are labelled before they have a job."""
    monkeypatch.setenv("SANDBOX_RUNNER_POOL", "0")


@pytest.fixture
def live_redis(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., LivePortal]]:
    """Start the portal and one worker on the private broker; stopped after the test."""
    started: list[LivePortal] = []

    def start(*, sweep_interval: float, runner: str = "local", timeout_s: int = 30) -> LivePortal:
        monkeypatch.setenv("SANDBOX_SWEEP_INTERVAL", str(sweep_interval))
        live = start_live_portal(
            tmp_path / "instance", runner=runner, broker_url=redis_server.url, timeout_s=timeout_s
        )
        started.append(live)
        return live

    yield start
    for live in started:
        live.stop()


def test_worker_process_killed_mid_job_is_run_again_and_released_once(
    live_redis: Callable[..., LivePortal],
) -> None:
    # No periodic sweep: only Celery's redelivery can bring the job back in time.
    live = live_redis(sweep_interval=600)
    token = live.token("analyst")
    job_id = submit(live, token, sleepy_job(4))
    holder = wait_for_holder(live.sandbox, job_id)
    worker = live.workers[0]
    assert parent_of(holder) == worker.pid  # the pool process running the job
    time.sleep(1.5)  # into the job's sleep

    os.kill(holder, signal.SIGKILL)

    job = live.wait_for(job_id, token, timeout=45)
    assert job["status"] == "released", worker_logs(live)
    entries = audit_of(live.sandbox, job_id)
    assert actions(entries).count("job.released") == 1
    assert actions(entries).count("job.running") == 1
    (rerun,) = [details for action, details in entries if action == "job.rerun"]
    assert rerun["lost"] == "holder_gone"
    assert int(rerun["worker"].split("/")[1]) != holder
    assert job["attempts"] == 2
    assert worker.poll() is None  # the same worker, with a new pool process, ran it again
    with live.sandbox.tx() as session:
        assert session.get_one(Job, job_id).certificate is not None


def test_duplicate_deliveries_run_a_job_once(
    live_redis: Callable[..., LivePortal], redis_server: RedisServer
) -> None:
    live = live_redis(sweep_interval=600)
    live.workers.append(start_worker(live.sandbox, concurrency=2, name="w2"))
    token = live.token("analyst")
    job_id = submit(live, token, sleepy_job(2))
    app = make_celery(live.sandbox.settings)
    try:
        for _ in range(5):
            assert send_job(app, job_id)  # duplicates of a job queued or running
        assert live.wait_for(job_id, token)["status"] == "released"
    finally:
        app.close()
    broker = redis.Redis.from_url(redis_server.url)
    wait_until(
        lambda: not broker.llen("sandbox-jobs") and not broker.hlen("unacked"),
        timeout=20,
        what="every delivery to be handled",
    )
    broker.close()
    done = actions(audit_of(live.sandbox, job_id))
    assert (done.count("job.running"), done.count("job.released"), done.count("job.rerun")) == (
        1,
        1,
        0,
    )


@pytest.mark.docker
def test_killed_worker_job_is_run_by_another_worker_and_its_container_removed(
    live_redis: Callable[..., LivePortal], docker_client: Any
) -> None:
    live = live_redis(sweep_interval=1, runner="docker")
    token = live.token("analyst")
    job_id = submit(live, token, sleepy_job(4))
    holder = wait_for_holder(live.sandbox, job_id)
    wait_until(
        lambda: any(c.status == "running" for c in job_containers(docker_client, job_id)),
        timeout=20,
        what="the job's container to run",
    )
    (orphan,) = job_containers(docker_client, job_id)

    # The whole worker dies, as with its machine: main process, pool process, all.
    first = live.workers[0]
    for pid in process_tree(first.pid):
        os.kill(pid, signal.SIGKILL)
    first.wait(timeout=10)
    orphan.reload()
    assert orphan.status == "running"  # the job runs on without anyone to read it
    live.workers.append(start_worker(live.sandbox, name="w2"))

    job = live.wait_for(job_id, token, timeout=45)
    assert job["status"] == "released", worker_logs(live)
    entries = audit_of(live.sandbox, job_id)
    assert actions(entries).count("job.released") == 1
    (rerun,) = [details for action, details in entries if action == "job.rerun"]
    assert rerun["lost"] == "holder_gone"
    assert int(rerun["worker"].split("/")[1]) != holder
    # The killed attempt's container went, and the second attempt's after its run.
    wait_until(
        lambda: not job_containers(docker_client, job_id),
        timeout=10,
        what="the job's containers to go",
    )


def test_jobs_submitted_while_broker_down_complete_once_it_returns(
    live_redis: Callable[..., LivePortal], redis_server: RedisServer
) -> None:
    live = live_redis(sweep_interval=1)
    token = live.token("analyst")
    assert live.wait_for(submit(live, token, SQL_JOB), token)["status"] == "released"
    worker = live.workers[0]

    redis_server.stop()
    waiting = []
    for _ in range(3):
        started = time.monotonic()
        job_id = submit(live, token, SQL_JOB)  # accepted: 202
        assert time.monotonic() - started < 5  # no retrying inside the request
        waiting.append(job_id)
    time.sleep(2.5)  # sweeps fail meanwhile
    for job_id in waiting:
        status, body = live.request("GET", f"/api/v1/jobs/{job_id}", token=token)
        assert (status, body["status"]) == (200, "queued")
    redis_server.start()  # empty: the messages never reached it

    for job_id in waiting:
        assert live.wait_for(job_id, token, timeout=40)["status"] == "released", worker_logs(live)
        assert actions(audit_of(live.sandbox, job_id)).count("job.released") == 1
    assert worker.poll() is None  # handed over without restarting the worker
    assert live.workers == [worker]


def test_jobs_left_running_are_recovered_by_the_sweeper(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = make_sandbox(tmp_path / "instance", broker_url=redis_server.url, timeout_s=5)
    dead_holder = f"{socket.gethostname()}/{ended_pid()}/"
    expired = put_running(sandbox, since_s=5 + LEASE_MARGIN_S + 30, holder="elsewhere/4242/1")
    gone = put_running(sandbox, since_s=1, holder=dead_holder)
    held = put_running(sandbox, since_s=1, holder="elsewhere/4242/1")
    # A job whose worker was lost twice already: the third loss ends the loop.
    poison = put_running(sandbox, since_s=1, holder=dead_holder)
    with sandbox.tx() as session:
        for attempt in (2, 3):
            audit.append(
                session,
                actor="worker",
                action="job.rerun",
                subject=poison,
                details={"attempt": attempt, "worker": dead_holder, "lost": "holder_gone"},
            )
        session.get_one(Job, poison).attempts = 3
    monkeypatch.setenv("SANDBOX_SWEEP_INTERVAL", "1")
    worker = start_worker(sandbox)
    try:
        wait_until(
            lambda: status_of(sandbox, expired) == "released",
            timeout=40,
            what="the expired job to be released",
        )
        wait_until(
            lambda: status_of(sandbox, gone) == "released",
            timeout=20,
            what="the job of a gone worker to be released",
        )
        wait_until(
            lambda: status_of(sandbox, poison) == "failed",
            timeout=20,
            what="the job that keeps losing its worker to fail",
        )
        time.sleep(2.5)  # two more sweeps
        assert status_of(sandbox, held) == "running"  # its lease stands: left alone
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    for job_id, lost in ((expired, "expired"), (gone, "holder_gone")):
        entries = audit_of(sandbox, job_id)
        assert actions(entries).count("job.released") == 1
        assert [d["lost"] for a, d in entries if a == "job.rerun"] == [lost]
    assert "job.rerun" not in actions(audit_of(sandbox, held))
    with sandbox.tx() as session:
        assert session.get_one(Job, poison).error_code == "worker_lost"


@pytest.mark.docker
def test_worker_start_removes_orphaned_containers_and_view_folders(
    tmp_path: Path,
    redis_server: RedisServer,
    docker_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox = make_sandbox(
        tmp_path / "instance", broker_url=redis_server.url, runner="docker", timeout_s=30
    )
    here, me, dead = socket.gethostname(), os.getpid(), ended_pid()
    failed = put_running(sandbox, since_s=1, holder=f"{here}/{me}/")
    with sandbox.tx() as session:
        job = session.get_one(Job, failed)
        job.finished_at = utcnow()
        move(session, job, JobStatus.FAILED, actor="worker", details={"error": "test"})
    held = put_running(sandbox, since_s=1, holder="elsewhere/4242/1")
    gone = put_running(sandbox, since_s=1, holder=f"{here}/{dead}/")
    foreign = f"other-instance-{uuid.uuid4().hex[:8]}"
    containers = {
        "failed": sleeper(docker_client, failed, host=here, pid=me),
        "gone": sleeper(docker_client, gone, host=here, pid=dead),
        "earlier_attempt": sleeper(docker_client, held, host=here, pid=me),
        "held": sleeper(docker_client, held, host="elsewhere", pid=4242),
        "foreign": sleeper(docker_client, foreign, host=here, pid=me),
    }
    with sandbox.tx() as session:
        session.get_one(Job, held).attempts = 2  # its worker took it over from a first one
    work = sandbox.settings.work_dir
    views = (f"{failed}/attempt-1", "stale/attempt-1", f"{held}/attempt-1", f"{held}/attempt-2")
    for name in views:
        (work / name / "input").mkdir(parents=True)
    monkeypatch.setenv("SANDBOX_SWEEP_INTERVAL", "600")  # the sweep at start only
    worker = start_worker(sandbox)
    try:
        orphans = {containers[name].id for name in ("failed", "gone", "earlier_attempt")}
        wait_until(
            lambda: not orphans & container_ids(docker_client),
            timeout=30,
            what="the orphaned containers to go",
        )
        assert {containers["held"].id, containers["foreign"].id} <= container_ids(docker_client)
        # The gone worker's job was run again, and its new container removed after it.
        wait_until(
            lambda: status_of(sandbox, gone) == "released",
            timeout=40,
            what="the job of the gone worker to be released",
        )
        assert not job_containers(docker_client, gone)
        assert sorted(str(p.relative_to(work)) for p in work.glob("*/*")) == [f"{held}/attempt-2"]
    finally:
        worker.terminate()
        worker.wait(timeout=20)
        for container in containers.values():
            if container.id in container_ids(docker_client):
                container.remove(force=True)


@pytest.mark.docker
def test_killed_worker_warm_containers_are_removed_and_the_next_worker_serves(
    live_redis: Callable[..., LivePortal], docker_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_RUNNER_POOL", "1")  # this test is about the warm pool
    live = live_redis(sweep_interval=1, runner="docker")
    token = live.token("analyst")
    first = live.workers[0]
    # The worker's pool process (a child, started after the worker) creates them.
    wait_until(
        lambda: bool(warm_containers(docker_client, set(process_tree(first.pid)))),
        timeout=60,
        what="the first worker's warm container to start",
    )
    pids = set(process_tree(first.pid))
    (waiting,) = warm_containers(docker_client, pids)
    pool_folder = live.sandbox.settings.instance / "runner-pool"
    assert any(path.name.split("-")[0] in {str(p) for p in pids} for path in pool_folder.iterdir())

    # The whole worker dies: nobody will ever hand its warm container a job.
    for pid in process_tree(first.pid):
        os.kill(pid, signal.SIGKILL)
    first.wait(timeout=10)
    waiting.reload()
    assert waiting.status == "running"
    second = start_worker(live.sandbox, name="w2")
    live.workers.append(second)

    wait_until(
        lambda: waiting.id not in container_ids(docker_client),
        timeout=30,
        what="the dead worker's warm container to be removed",
    )
    assert not any(
        path.name.split("-")[0] in {str(p) for p in pids} for path in pool_folder.iterdir()
    )  # its folders went with it (removed when the next pool starts)
    job = live.wait_for(submit(live, token, SQL_JOB), token, timeout=60)
    assert job["status"] == "released", worker_logs(live)
    wait_until(
        lambda: bool(warm_containers(docker_client, set(process_tree(second.pid)))),
        timeout=60,
        what="the second worker's pool to refill",
    )


@pytest.mark.docker
def test_a_worker_stopped_gracefully_removes_its_warm_containers(
    live_redis: Callable[..., LivePortal], docker_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_RUNNER_POOL", "1")
    live = live_redis(sweep_interval=600, runner="docker")
    worker = live.workers[0]
    wait_until(
        lambda: bool(warm_containers(docker_client, set(process_tree(worker.pid)))),
        timeout=60,
        what="the worker's warm container to start",
    )
    (waiting,) = warm_containers(docker_client, set(process_tree(worker.pid)))

    worker.terminate()  # SIGTERM: Celery's warm shutdown, as `sandbox demo` stops it
    worker.wait(timeout=30)

    wait_until(
        lambda: waiting.id not in container_ids(docker_client),
        timeout=15,
        what="the stopped worker's warm container to be removed",
    )


# Helpers


def submit(live: LivePortal, token: str, code: str) -> str:
    language = "sql" if code.startswith("SELECT") else "python"
    status, body = live.request(
        "POST",
        "/api/v1/jobs",
        {"dataset": "health", "language": language, "mode": "masked", "code": code},
        token,
    )
    assert status == 202, body
    assert body["status"] == "queued"
    return str(body["id"])


def put_running(sandbox: Sandbox, *, since_s: float, holder: str) -> str:
    """A job left 'running' since ``since_s`` seconds by the process ``holder``."""
    request = JobRequest(dataset="health", language="sql", mode="masked", code=SQL_JOB)
    job = submission.submit_job(
        sandbox, by=actor(sandbox, "analyst"), request=request, enqueue=lambda _: None
    )
    with sandbox.tx() as session:
        row = session.get_one(Job, job.id)
        move(
            session,
            row,
            JobStatus.RUNNING,
            actor="worker",
            details={"attempt": 1, "worker": holder},
        )
        row.attempts = 1
        row.started_at = utcnow() - dt.timedelta(seconds=since_s)
    return job.id


def sleeper(client: Any, job_id: str, *, host: str, pid: int) -> Any:
    """A running container labelled as the runner labels a job's container."""
    return client.containers.run(
        IMAGE_TAG,
        entrypoint=["python3", "-c", "import time; time.sleep(300)"],
        detach=True,
        network_mode="none",
        labels={
            LABEL_JOB: job_id,
            LABEL_RUNNER: "1",
            LABEL_HOST: host,
            LABEL_PID: str(pid),
            LABEL_DEADLINE: f"{time.time() + 600:.0f}",
        },
    )


def job_containers(client: Any, job_id: str) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"{LABEL_JOB}={job_id}"}))


def warm_containers(client: Any, creators: set[int]) -> list[Any]:
    """Running warm-pool containers created by one of ``creators`` (process ids)."""
    listed = client.containers.list(filters={"label": f"{LABEL_JOB}={POOL_JOB_LABEL}"})
    return [c for c in listed if int(c.labels.get(LABEL_PID, "0")) in creators]


def container_ids(client: Any) -> set[str]:
    listed = client.api.containers(all=True, filters={"label": f"{LABEL_RUNNER}=1"})
    return {entry["Id"] for entry in listed}


def audit_of(sandbox: Sandbox, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    with sandbox.tx() as session:
        rows = session.execute(
            select(AuditEntry.action, AuditEntry.details)
            .where(AuditEntry.subject == job_id)
            .order_by(AuditEntry.seq)
        ).all()
    return [(action, dict(details or {})) for action, details in rows]


def actions(entries: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [action for action, _ in entries]


def status_of(sandbox: Sandbox, job_id: str) -> str:
    with sandbox.tx() as session:
        return session.get_one(Job, job_id).status


def wait_for_holder(sandbox: Sandbox, job_id: str) -> int:
    """The pid of the process that started the job (its lease holder)."""
    found: list[int] = []

    def started() -> bool:
        for action, details in audit_of(sandbox, job_id):
            if action == "job.running":
                found.append(int(details["worker"].split("/")[1]))
                return True
        return False

    wait_until(started, timeout=30, what="the job to start")
    return found[0]


def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def ended_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def parent_of(pid: int) -> int:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return int(raw[raw.rfind(")") + 2 :].split()[1])


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants, parents first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat.read_text()
        except OSError:
            continue
        children.setdefault(int(raw[raw.rfind(")") + 2 :].split()[1]), []).append(
            int(stat.parent.name)
        )
    tree, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def worker_logs(live: LivePortal) -> str:
    return "\n".join(
        path.read_text(errors="replace")[-4000:]
        for path in sorted(live.sandbox.settings.instance.glob("worker-*.log"))
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(client: Any) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False
