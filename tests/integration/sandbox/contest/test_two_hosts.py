"""Contest submissions fan out over Celery workers on two hosts.

Two network namespaces stand for two machines (tests/netns.py): each has a host name
of its own and reaches PostgreSQL and a private Redis broker only through its veth
pair. The instance folder (datasets, keys) is the shared storage both read. One
worker per host drains the one ``sandbox-contest`` queue with the development runner.
The submissions' rows and the audit chain are the truth the assertions read.

The hosts, the broker, the database and the open contest are the module's; each test
starts the workers it needs. A worker killed with its machine is noticed only when
its lease expires (``sandbox.jobs.lease``): the other host cannot see its processes.
The kill test therefore restarts the workers with a short submission timeout (the
lease is ``RUNS_PER_ATTEMPT * timeout + LEASE_MARGIN_S`` seconds) once the baselines,
whose runs are the heavy ones, are scored, and submits light code only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from sqlalchemy import select, update
from sqlalchemy.engine import make_url

from sandbox.cli import worker_command
from sandbox.contest.scoring import RUNS_PER_ATTEMPT
from sandbox.contest.submissions import submit
from sandbox.context import Sandbox
from sandbox.demo import DEMO_CONTEST, ensure_demo_contest
from sandbox.jobs.lease import LEASE_MARGIN_S
from sandbox.models import AuditEntry, Contest, Submission, SubmissionStatus, Track
from sandbox.worker.celery_app import make_celery
from sandbox.worker.tasks import CONTEST_QUEUE, send_submission
from tests.factories import actor, make_sandbox
from tests.live import worker_env
from tests.netns import NetworkHost, network_hosts, require_namespaces
from tests.services import POSTGRES_URL, fresh_postgres_database, unavailable

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

HOSTS = ("host-a", "host-b")
PATIENTS = 1500
SWEEP_INTERVAL_S = 2
# Per run. The baselines' heavy fits take 3-6 s alone, up to 20 s beside another
# worker's on two busy cores; nothing here is about timeouts.
SCORING_TIMEOUT_S = 120
# The teams' light runs take 2-3 s, on a loaded machine too: a margin of three or
# more, and a lost lease expires in 100 s.
KILL_TEST_TIMEOUT_S = 10
START_ACTIONS = ("submission.running", "submission.rerun")

# The teams' own code: a constant model, so that the runs are as short as the
# harness allows.
KILL_TEST_CODE = {
    "readmission-30d": (
        "import numpy as np\n\n\n"
        "def fit(train):\n"
        '    return {"p": float(train["visits"]["readmitted_30d"].mean())}\n\n\n'
        "def predict(model, features):\n"
        '    return np.full(len(features["visits"]), model["p"])\n'
    ),
    "length-of-stay": (
        "import numpy as np\n\n\n"
        "def fit(train):\n"
        '    return {"days": float(train["visits"]["length_of_stay"].median())}\n\n\n'
        "def predict(model, features):\n"
        '    return np.full(len(features["visits"]), model["days"])\n'
    ),
}
TEAM_CODE = {
    **KILL_TEST_CODE,
    "diagnosis-from-labs": (
        "def fit(train):\n"
        '    return {"icd10": train["visits"]["icd10"].dropna().astype(str).mode()[0]}\n\n\n'
        "def predict(model, features):\n"
        '    return [model["icd10"]] * len(features["visits"])\n'
    ),
}
CAPTAINS = ("analyst", "analyst2")


class RedisServer:
    """A redis-server of this module's own on 127.0.0.1: no other test's messages in it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            wait_until(lambda: _answers(client), timeout=10, what="redis-server to answer")
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@dataclass
class Cluster:
    """One instance, its broker, and a worker on each host."""

    sandbox: Sandbox
    celery: Celery
    hosts: dict[str, NetworkHost]
    broker_port: int
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    timeout_s: int | None = None
    baselines: list[str] = field(default_factory=list)

    def start_workers(self, *, timeout_s: int) -> None:
        """A fresh worker on each host, scoring with ``timeout_s`` per run; ready once
        each answers a ping through the broker. Running ones with that timeout stay."""
        alive = [w for w in self.workers.values() if w.poll() is None]
        if self.timeout_s == timeout_s and len(alive) == len(self.hosts):
            return
        self.stop_workers()
        self.timeout_s = timeout_s
        for name, host in self.hosts.items():
            self.workers[name] = start_worker(self, host, timeout_s=timeout_s)
        for name in self.hosts:
            wait_for_worker(self, name)

    def stop_workers(self) -> None:
        for worker in self.workers.values():
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)  # Celery's warm shutdown
        for worker in self.workers.values():
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()  # reaped, so no zombie outlives the test
        self.workers.clear()

    def enqueue(self, submission_id: str) -> None:
        assert send_submission(self.celery, submission_id), "the broker refused a submission"

    def log_of(self, name: str) -> str:
        path = self.sandbox.settings.instance / f"worker-{name}.log"
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.log_of(name)}" for name in self.hosts)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The demo contest open on a fresh PostgreSQL database, a private Redis broker, and a
    worker on each of two hosts; its baselines queued as it opened. All of it stopped
    and removed after, in the reverse order, whatever happened."""
    require_namespaces()
    if shutil.which("redis-server") is None:
        unavailable("Redis", "the redis-server program is not installed")
    folder = tmp_path_factory.mktemp("two-hosts")
    with ExitStack() as stack:
        broker = RedisServer(folder)
        stack.callback(broker.stop)
        broker.start()
        sandbox = make_sandbox(
            folder / "instance",
            database_url=fresh_postgres_database(),
            broker_url=broker.url,
            patients=PATIENTS,
        )
        database_port = make_url(POSTGRES_URL).port or 5432
        hosts = stack.enter_context(network_hosts(HOSTS, forward=(database_port, broker.port)))
        cluster = Cluster(sandbox, make_celery(sandbox.settings), hosts, broker.port)
        stack.callback(cluster.celery.close)
        stack.callback(remove_run_leftovers, sandbox)
        stack.callback(cluster.stop_workers)
        cluster.start_workers(timeout_s=SCORING_TIMEOUT_S)
        cluster.baselines = open_contest(cluster)
        yield cluster


def test_two_hosts_drain_one_queue_and_score_each_submission_once(cluster: Cluster) -> None:
    cluster.start_workers(timeout_s=SCORING_TIMEOUT_S)
    started = time.monotonic()
    ids = [*cluster.baselines, *submit_for_teams(cluster, TEAM_CODE)]
    assert len(ids) == 3 + len(CAPTAINS) * len(TEAM_CODE)  # the baselines, the teams'

    wait_until_scored(cluster, ids, timeout=300)
    elapsed = time.monotonic() - started

    entries = audit_of(cluster.sandbox, ids)
    for submission_id in ids:
        actions = [action for action, _ in entries[submission_id]]
        assert actions.count("submission.scored") == 1, (submission_id, actions)
        (start,) = starts_of(entries[submission_id])  # run once: never taken over
        assert start[0] == "submission.running"
    drained = drained_by_host(entries)
    print(f"\ntwo hosts, {len(ids)} submissions scored in {elapsed:.0f} s: drained {dict(drained)}")
    assert set(drained) == set(HOSTS), drained  # both hosts drained the one queue
    # The hosts are apart: neither reaches this namespace's loopback services.
    for host in cluster.hosts.values():
        assert not reaches(host, ("127.0.0.1", make_url(POSTGRES_URL).port or 5432))


def test_a_host_killed_mid_submission_leaves_it_to_the_other_after_its_lease_expires(
    cluster: Cluster,
) -> None:
    # The baselines' heavier runs are done under the long timeout, whichever test ran first.
    wait_until_scored(cluster, cluster.baselines, timeout=300)
    cluster.start_workers(timeout_s=KILL_TEST_TIMEOUT_S)
    lease_s = RUNS_PER_ATTEMPT * KILL_TEST_TIMEOUT_S + LEASE_MARGIN_S
    began = time.monotonic()
    ids = submit_for_teams(cluster, KILL_TEST_CODE)
    victim = wait_for_running_on(cluster, "host-a", ids, timeout=60)

    # The whole worker dies, as with its machine: main process, pool process, runs.
    group = cluster.workers["host-a"].pid
    os.killpg(group, signal.SIGKILL)
    cluster.workers["host-a"].wait(timeout=10)
    killed = time.monotonic()
    wait_until(lambda: not live_members(group), timeout=10, what="host-a's processes to end")
    with cluster.sandbox.tx() as session:
        row = session.get_one(Submission, victim)
        holder = row.holder.split("/")[0] if row.holder else None
        # Killed mid-submission: it is still the dead host's.
        assert (row.status, holder) == (SubmissionStatus.RUNNING.value, "host-a")

    # Redis keeps the dead worker's unacknowledged message for its visibility timeout
    # (an hour): host-b's sweeper sends the submission again once its lease expired.
    wait_until_scored(cluster, ids, timeout=lease_s + 120)
    done = time.monotonic()

    entries = audit_of(cluster.sandbox, ids)
    for submission_id in ids:
        actions = [action for action, _ in entries[submission_id]]
        assert actions.count("submission.scored") == 1, (submission_id, actions)
        if submission_id != victim:
            (start,) = starts_of(entries[submission_id])
            assert start[0] == "submission.running"
            assert host_of(start[1]) == "host-b"  # host-a ran nothing but the victim
    first, rerun = starts_of(entries[victim])
    assert (first[0], host_of(first[1])) == ("submission.running", "host-a")
    assert (rerun[0], host_of(rerun[1]), rerun[1]["lost"]) == (
        "submission.rerun",
        "host-b",
        "expired",
    )
    with cluster.sandbox.tx() as session:
        assert session.get_one(Submission, victim).attempts == 2
    drained = drained_by_host(entries)
    print(
        f"\nkilled host-a {killed - began:.0f} s in, mid-submission {victim}; "
        f"lease {lease_s} s; all {len(ids)} scored {done - killed:.0f} s after the kill; "
        f"drained {dict(drained)}"
    )
    assert drained == {"host-b": len(ids)}


# Helpers


def start_worker(cluster: Cluster, host: NetworkHost, *, timeout_s: int) -> subprocess.Popen[bytes]:
    """The command `sandbox worker --queues sandbox-contest` runs, on ``host``: under the
    host's name, reaching the database and the broker at the host's root address."""
    env = worker_env(cluster.sandbox)
    database = make_url(cluster.sandbox.settings.database_url).set(host=host.root_address)
    env.update(
        SANDBOX_DATABASE_URL=database.render_as_string(hide_password=False),
        SANDBOX_BROKER_URL=f"redis://{host.root_address}:{cluster.broker_port}/0",
        SANDBOX_RUNNER="local",
        SANDBOX_SUBMISSION_TIMEOUT=str(timeout_s),
        SANDBOX_SWEEP_INTERVAL=str(SWEEP_INTERVAL_S),
    )
    argv = [*worker_command(1, queues=(CONTEST_QUEUE,)), "-n", f"{host.name}@%h"]
    with open(cluster.sandbox.settings.instance / f"worker-{host.name}.log", "ab") as log:
        return subprocess.Popen(
            host.command(argv, hostname=host.name),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cluster.sandbox.settings.instance,
            # A process group of its own: the kill takes the worker and all its runs.
            start_new_session=True,
        )


def wait_for_worker(cluster: Cluster, name: str) -> None:
    """Until the worker answers a ping through the broker (so it consumes)."""
    worker = cluster.workers[name]

    def answers() -> bool:
        assert worker.poll() is None, f"{name}'s worker exited:\n{cluster.log_of(name)}"
        return bool(cluster.celery.control.ping(destination=[f"{name}@{name}"], timeout=0.5))

    wait_until(answers, timeout=90, what=f"{name}'s worker to answer")


def open_contest(cluster: Cluster) -> list[str]:
    """Open the demo contest, its baselines queued as it opens, and raise its tracks'
    quotas (the teams submit more at once than a contest allows); the baselines' ids."""
    sandbox = cluster.sandbox
    queued: list[str] = []

    def enqueue(submission_id: str) -> None:
        cluster.enqueue(submission_id)
        queued.append(submission_id)

    assert ensure_demo_contest(sandbox, enqueue=enqueue)
    with sandbox.tx() as session:
        contest_id = session.scalars(select(Contest.id).where(Contest.slug == DEMO_CONTEST)).one()
        session.execute(
            update(Track)
            .where(Track.contest_id == contest_id)
            .values(daily_quota=100, total_quota=100, max_running=100)
        )
    return queued


def submit_for_teams(cluster: Cluster, code_by_track: dict[str, str]) -> list[str]:
    """Each team's submission to each track, queued; their ids, in the order queued."""
    sandbox = cluster.sandbox
    return [
        submit(
            sandbox,
            by=actor(sandbox, captain),
            contest=DEMO_CONTEST,
            track=track,
            code=code,
            enqueue=cluster.enqueue,
        )["id"]
        for track, code in code_by_track.items()
        for captain in CAPTAINS
    ]


def wait_until_scored(cluster: Cluster, ids: list[str], *, timeout: float) -> None:
    final = (SubmissionStatus.SCORED.value, SubmissionStatus.FAILED.value)

    def statuses() -> dict[str, str]:
        with cluster.sandbox.tx() as session:
            rows = session.execute(
                select(Submission.id, Submission.status).where(Submission.id.in_(ids))
            ).all()
        return {submission_id: status for submission_id, status in rows}

    wait_until(
        lambda: all(status in final for status in statuses().values()),
        timeout=timeout,
        what=f"{len(ids)} submissions to be scored",
        explain=lambda: f"{statuses()}\n{cluster.logs()}",
    )
    with cluster.sandbox.tx() as session:
        failed = session.execute(
            select(Submission.id, Submission.failed_in, Submission.error_code).where(
                Submission.id.in_(ids), Submission.status != SubmissionStatus.SCORED.value
            )
        ).all()
    assert not failed, f"{failed}\n{cluster.logs()}"


def wait_for_running_on(cluster: Cluster, name: str, ids: list[str], *, timeout: float) -> str:
    """The id of one of the submissions ``ids`` that ``name``'s worker is running."""
    found: list[str] = []

    def running() -> bool:
        with cluster.sandbox.tx() as session:
            found.extend(
                session.scalars(
                    select(Submission.id).where(
                        Submission.id.in_(ids),
                        Submission.status == SubmissionStatus.RUNNING.value,
                        Submission.holder.startswith(f"{name}/"),
                    )
                )
            )
        return bool(found)

    wait_until(running, timeout=timeout, what=f"{name} to run a submission")
    return found[0]


def audit_of(sandbox: Sandbox, ids: list[str]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Each submission's audit entries, in the chain's order."""
    entries: dict[str, list[tuple[str, dict[str, Any]]]] = {i: [] for i in ids}
    with sandbox.tx() as session:
        rows = session.execute(
            select(AuditEntry.subject, AuditEntry.action, AuditEntry.details)
            .where(AuditEntry.subject.in_(ids))
            .order_by(AuditEntry.seq)
        ).all()
    for subject, action, details in rows:
        entries[subject].append((action, dict(details or {})))
    return entries


def starts_of(entries: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """The entries that start an attempt, naming its holder ``host/pid/start``."""
    return [(action, details) for action, details in entries if action in START_ACTIONS]


def host_of(details: dict[str, Any]) -> str:
    return str(details["worker"]).split("/")[0]


def drained_by_host(entries: dict[str, list[tuple[str, dict[str, Any]]]]) -> Counter[str]:
    """How many submissions each host scored: the holder of the attempt that scored."""
    return Counter(host_of(starts_of(e)[-1][1]) for e in entries.values())


def reaches(host: NetworkHost, address: tuple[str, int]) -> bool:
    probe = (
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection({address!r}, timeout=2).close()\n"
        "except OSError:\n"
        "    sys.exit(1)\n"
    )
    argv = host.command(["python3", "-c", probe], hostname=host.name)
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def live_members(group: int) -> list[int]:
    """The processes of a process group that still run (a zombie has ended)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat.read_text()
        except OSError:
            continue  # ended while we looked
        state, _, _, pgrp = raw[raw.rfind(")") + 2 :].split()[:4]
        if int(pgrp) == group and state not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


def remove_run_leftovers(sandbox: Sandbox) -> None:
    """What a killed run leaves in the shared temporary folder (the development runner's
    model folders and harness folders; nothing removes them), for this instance's ids."""
    with sandbox.tx() as session:
        ids = list(session.scalars(select(Submission.id)))
    temp = Path(tempfile.gettempdir())
    for submission_id in ids:
        for pattern in (
            f"sandbox-models-*/sandbox-model-{submission_id}-*",
            f"sandbox-job-{submission_id}-*",
        ):
            for path in temp.glob(pattern):
                shutil.rmtree(path, ignore_errors=True)


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    explain: Callable[[], str] = str,
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{explain()}")
        time.sleep(0.25)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False
