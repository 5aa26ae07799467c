"""Latency, sustained throughput and the container floor of small jobs, whole product.

The portal on a free port, real Celery worker processes on a real broker
(Redis at 127.0.0.1:6379 db 14 when it answers, else the embedded SQLite
broker), the Docker runner, the synthetic health dataset. Four figures:

1. the floor: one trivial harness job through ``DockerRunner.run`` on a
   one-row view (container create, start, wait, logs, remove), 20 times;
2. idle latency: one masked SQL job (a COUNT by department) and one masked
   Python job (``sandbox_job.frequency_table``) at a time, from POST
   /api/v1/jobs until GET /api/v1/jobs/<id> (polled every 20 ms) says
   released, with where that time goes according to the job's audit entries;
3. sustained throughput: several analysts keep a bounded number of jobs in
   flight (SQL and Python taking turns) for ``--duration`` seconds against
   ``--workers`` separate worker processes (concurrency 1 each); jobs
   released a minute and the latency under that load;
4. the goals: SQL median < 1 s, Python median < 2 s, at least 60 jobs a minute.

Prints figures only; nothing here asserts a timing.

    .venv/bin/python bench/throughput.py [--patients N] [--runs N] [--duration S]
        [--workers N] [--analysts N] [--in-flight N] [--broker auto|redis|embedded]
        [--metadata sqlite|postgres]
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import logging
import math
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd
from sqlalchemy import select

from bench.job_latency import percentile
from tests.live import LivePortal, start_live_portal, start_worker

REDIS_URL = "redis://127.0.0.1:6379/14"
GOAL_SQL_S, GOAL_PYTHON_S, GOAL_PER_MINUTE = 1.0, 2.0, 60.0
IDLE_POLL_S = 0.02
# Under load every in-flight job is polled; at 20 ms the polling alone would
# take a good share of the two cores the workers need.
LOAD_POLL_S = 0.2
FINAL = {"released", "rejected", "failed", "withheld", "pending_review"}

SQL_JOB = {
    "language": "sql",
    "mode": "masked",
    "code": "SELECT department, COUNT(*) AS n FROM visits GROUP BY department",
}
PYTHON_JOB = {
    "language": "python",
    "mode": "masked",
    "code": "import sandbox_job\n"
    "visits = sandbox_job.table('visits')\n"
    "sandbox_job.frequency_table('by_department', visits, by=['department'])\n",
}
KINDS = {"SQL": SQL_JOB, "Python": PYTHON_JOB}
# The audit entries of one job, in the order a released job writes them.
STEPS = ("job.submitted", "job.queued", "job.running", "job.checking", "job.released")


@dataclass
class Finished:
    kind: str
    job_id: str
    status: str
    submitted: float  # wall clock, before the POST
    accepted: float  # wall clock, the POST answered
    seen: float  # wall clock, the poll that saw the final status answered

    @property
    def latency(self) -> float:
        return self.seen - self.submitted


@dataclass
class Figures:
    lines: list[str] = field(default_factory=list)
    goals: list[tuple[str, str, str, bool]] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=20, help="idle jobs of each kind")
    parser.add_argument("--floor-runs", type=int, default=20)
    parser.add_argument("--duration", type=float, default=90.0, help="seconds of load")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--analysts", type=int, default=4)
    parser.add_argument("--in-flight", type=int, default=2, help="jobs in flight per analyst")
    parser.add_argument("--broker", default="auto", choices=["auto", "redis", "embedded"])
    parser.add_argument(
        "--metadata",
        default="sqlite",
        choices=["sqlite", "postgres"],
        help="postgres: a fresh database on 127.0.0.1:5432, as in production",
    )
    args = parser.parse_args()

    # One access-log line per poll would drown the figures.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    figures = Figures()
    print(f"host: {os.cpu_count()} CPUs, {_load()}")
    measure_floor(args.floor_runs, figures)

    broker_url, broker_name = choose_broker(args.broker)
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as folder:
        started = time.monotonic()
        # Generous fair-share limits: the analysts here submit as fast as jobs finish.
        database_url = None
        if args.metadata == "postgres":
            from tests.services import fresh_postgres_database

            database_url = fresh_postgres_database()
        live = start_live_portal(
            Path(folder) / "instance",
            runner="docker",
            patients=args.patients,
            broker_url=broker_url,
            max_active_jobs=1000,
            max_submissions_per_minute=100_000,
            database_url=database_url,
        )
        try:
            for n in range(2, args.workers + 1):
                live.workers.append(start_worker(live.sandbox, name=f"w{n}"))
            tokens = analyst_tokens(live, args.analysts)
            print(
                f"set-up: {args.patients} patients, Docker runner, broker {broker_name}, "
                f"metadata {live.sandbox.settings.database_url.split(':')[0]}, "
                f"{args.workers} worker processes x concurrency 1, "
                f"{time.monotonic() - started:.1f} s"
            )
            warm_up(live, tokens, args.workers)
            measure_idle(live, tokens[0], args.runs, figures)
            measure_load(live, tokens, args, figures)
        finally:
            live.stop()
    print_goals(figures)


# --- the floor ---------------------------------------------------------------


def measure_floor(runs: int, figures: Figures) -> None:
    from runners import JobSpec
    from runners.docker_runner import DockerRunner

    runner = DockerRunner()
    times = []
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as folder:
        view = Path(folder) / "input"
        view.mkdir(mode=0o755)
        pd.DataFrame({"person_id": ["p1"], "x": [1]}).to_parquet(view / "t.parquet")
        for i in range(runs + 1):
            spec = JobSpec(
                job_id=f"bench-floor-{i}",
                language="sql",
                code="SELECT 1 AS x",
                input_dir=view,
                timeout_s=60,
            )
            t0 = time.monotonic()
            result = runner.run(spec)
            if i:  # the first one warms the engine's caches
                times.append(time.monotonic() - t0)
            if result.tables[0].rows != [[1]]:
                raise SystemExit(f"the floor job answered {result.tables}")
    print(f"\n1. floor: DockerRunner.run of a trivial SQL harness job, one-row view ({_load()})")
    print(_table_header())
    print(_table_row("container run", times))
    figures.add(
        f"floor: a container create+start+wait+logs+remove with a trivial harness job takes "
        f"{statistics.median(times):.3f} s median (p95 {percentile(times, 0.95):.3f} s, "
        f"n={len(times)})"
    )


# --- set-up ------------------------------------------------------------------


def choose_broker(choice: str) -> tuple[str | None, str]:
    if choice in ("auto", "redis"):
        try:
            import redis

            redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping()
            return REDIS_URL, f"Redis ({REDIS_URL})"
        except Exception as error:
            if choice == "redis":
                raise SystemExit(f"Redis at {REDIS_URL} does not answer: {error}") from error
    return None, "embedded (Kombu SQLAlchemy on SQLite, polled every 50 ms)"


def analyst_tokens(live: LivePortal, count: int) -> list[str]:
    """Tokens of ``count`` analysts, each with a masked grant on the health data."""
    from policies.permissions import Role
    from sandbox.access import grants, users

    names = ["analyst", "analyst2"][:count]
    passwords = dict(live.credentials)
    with live.sandbox.tx() as session:
        owner = users.user_by_name(session, "owner")
        assert owner is not None
        for n in range(len(names) + 1, count + 1):
            name, password = f"bench{n}", secrets.token_urlsafe(12)
            analyst = users.create_user(
                session, username=name, password=password, role=Role.ANALYST, by="bench"
            )
            grants.add_grant(
                session,
                by=owner,
                dataset="health",
                analyst=analyst,
                terms=grants.GrantTerms(modes=("masked",), days=1),
            )
            names.append(name)
            passwords[name] = password
    live.credentials = passwords
    return [live.token(name) for name in names]


def warm_up(live: LivePortal, tokens: list[str], workers: int) -> None:
    """Jobs of both kinds on every worker, so each has imported everything."""
    ids = [submit(live, tokens[0], body)[0] for _ in range(workers) for body in KINDS.values()]
    for job_id in ids:
        job = live.wait_for(job_id, tokens[0], timeout=300, poll=0.1)
        if job["status"] != "released":
            raise SystemExit(f"warm-up job ended {job['status']}: {job}")


def submit(live: LivePortal, token: str, body: dict[str, str]) -> tuple[str, float, float]:
    t0 = time.time()
    status, answer = live.request("POST", "/api/v1/jobs", {"dataset": "health", **body}, token)
    if status != 202:
        raise SystemExit(f"submission refused ({status}): {answer}")
    return str(answer["id"]), t0, time.time()


def poll_once(live: LivePortal, token: str, job_id: str) -> str:
    status, body = live.request("GET", f"/api/v1/jobs/{job_id}", token=token)
    if status != 200:
        raise SystemExit(f"GET job {job_id} answered {status}: {body}")
    return str(body["status"])


# --- idle latency ------------------------------------------------------------


def measure_idle(live: LivePortal, token: str, runs: int, figures: Figures) -> None:
    done: dict[str, list[Finished]] = {}
    for kind, body in KINDS.items():
        done[kind] = []
        for _ in range(runs):
            job_id, t0, accepted = submit(live, token, body)
            while (status := poll_once(live, token, job_id)) not in FINAL:
                time.sleep(IDLE_POLL_S)
            finished = Finished(kind, job_id, status, t0, accepted, time.time())
            if status != "released":
                raise SystemExit(f"{kind} job {job_id} ended {status}")
            done[kind].append(finished)
    print(
        f"\n2. idle latency: one job at a time, submit -> released as polled every "
        f"{IDLE_POLL_S * 1000:.0f} ms ({_load()})"
    )
    print(_table_header())
    for kind, jobs in done.items():
        latencies = [j.latency for j in jobs]
        print(_table_row(f"{kind}/masked", latencies))
        goal = GOAL_SQL_S if kind == "SQL" else GOAL_PYTHON_S
        median = statistics.median(latencies)
        figures.goals.append(
            (f"{kind} median latency, idle", f"{median:.3f} s", f"< {goal:g} s", median < goal)
        )
        figures.add(
            f"idle {kind}: submit -> released median {median:.3f} s, "
            f"p95 {percentile(latencies, 0.95):.3f} s (n={len(latencies)})"
        )
    for kind, jobs in done.items():
        print_timeline(live, kind, jobs)


def print_timeline(live: LivePortal, kind: str, jobs: list[Finished]) -> None:
    """Where the time goes, from the job's audit entries (median ms of each step)."""
    from sandbox.models import AuditEntry

    with live.sandbox.tx() as session:
        rows = session.execute(
            select(AuditEntry.subject, AuditEntry.action, AuditEntry.at).where(
                AuditEntry.subject.in_([j.job_id for j in jobs])
            )
        ).all()
    at: dict[tuple[str, str], float] = {
        (subject, action): dt.datetime.fromisoformat(when).timestamp()
        for subject, action, when in rows
    }
    client = {"POST sent": "submitted", "POST answered": "accepted", "seen by poll": "seen"}

    def moment(job: Finished, name: str) -> float:
        return float(getattr(job, client[name])) if name in client else at[(job.job_id, name)]

    def since_post(name: str) -> float:
        return statistics.median(moment(j, name) - j.submitted for j in jobs)

    # In the order they happen: the worker may lock the job before the POST is answered.
    names = sorted([*client, *STEPS], key=since_post)
    meaning = {
        "job.submitted": "HTTP, token, fair share, job row",
        "job.queued": "policy check and plan",
        "POST answered": "commit, send to broker, HTTP answer",
        "job.running": "broker delivery, worker's lock and lease",
        "job.checking": "consent, view build + Parquet, container run",
        "job.released": "disclosure checks, differencing, signing",
        "seen by poll": "commit, next poll",
    }
    print(f"   {kind}: where the time goes (audit entry times, median over {len(jobs)} jobs)")
    print(f"   {'step':<16}{'+ms':>8}{'at ms':>8}  in between")
    previous: str | None = None
    for name in names:
        step = 0.0
        if previous is not None:
            step = statistics.median(moment(j, name) - moment(j, previous) for j in jobs)
        print(
            f"   {name:<16}{step * 1000:>8.0f}{since_post(name) * 1000:>8.0f}  "
            f"{meaning.get(name, '')}"
        )
        previous = name


# --- sustained throughput ----------------------------------------------------


def measure_load(
    live: LivePortal, tokens: list[str], args: argparse.Namespace, figures: Figures
) -> None:
    load_before = _load()
    busy_before = _cpu_busy()
    cpu_before = _cpu_by_component(live)
    start = time.time()
    end = start + args.duration
    results = _Load(live, in_flight=args.in_flight, end=end).run(tokens)
    drained = time.time()
    busy = _cpu_busy()
    cpu_after = _cpu_by_component(live)
    busy_share = (busy[0] - busy_before[0]) / max(busy[1] - busy_before[1], 1e-9)

    released = [r for r in results if r.status == "released"]
    in_window = [r for r in released if r.seen <= end]
    per_minute = len(in_window) / args.duration * 60
    slice_s = min(30.0, args.duration)
    per_slice = _released_per_slice(released, start, args.duration, slice_s)
    others: dict[str, int] = {}
    for r in results:
        if r.status != "released":
            others[r.status] = others.get(r.status, 0) + 1
    print(
        f"\n3. sustained load: {len(tokens)} analysts x {args.in_flight} jobs in flight, SQL and "
        f"Python taking turns, {args.duration:.0f} s, {args.workers} worker processes x "
        f"concurrency 1, polled every {LOAD_POLL_S * 1000:.0f} ms"
    )
    print(
        f"   {load_before} before, {_load()} after; all CPUs {busy_share:.0%} busy "
        "from the first submission to the last release (every process on the host)"
    )
    print(
        f"   released within the window: {len(in_window)} -> {per_minute:.1f} jobs/min "
        f"(per {slice_s:.0f} s slice: {', '.join(f'{v:.0f}' for v in per_slice)}; "
        f"median {statistics.median(per_slice):.0f}/min)"
    )
    print(
        f"   all submitted: {len(results)}, released {len(released)}"
        + (f", {others}" if others else "")
        + f"; drained {drained - end:.1f} s after the window"
    )
    print_cpu_shares(cpu_before, cpu_after, busy[0] - busy_before[0], len(results))
    print(_table_header())
    for kind in KINDS:
        latencies = [r.latency for r in released if r.kind == kind]
        if latencies:
            print(_table_row(f"{kind} under load", latencies))
    _add_load_figures(
        figures, released, per_minute, workers=args.workers, in_flight=len(tokens) * args.in_flight
    )


@dataclass
class _Load:
    """Analysts, one thread each, keeping ``in_flight`` jobs going until ``end``."""

    live: LivePortal
    in_flight: int
    end: float  # wall clock: no job is submitted after it
    results: list[Finished] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    turn: Iterator[int] = field(default_factory=itertools.count)
    errors: list[BaseException] = field(default_factory=list)

    def run(self, tokens: list[str]) -> list[Finished]:
        """Every job the analysts submitted, once all of them reached a final status."""
        threads = [threading.Thread(target=self.analyst, args=(token,)) for token in tokens]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.errors:
            raise SystemExit(f"an analyst stopped: {self.errors[0]!r}")
        return self.results

    def analyst(self, token: str) -> None:
        try:
            self.keep_jobs_in_flight(token)
        except BaseException as error:
            self.errors.append(error)

    def keep_jobs_in_flight(self, token: str) -> None:
        in_flight: dict[str, tuple[str, float, float]] = {}
        while True:
            now = time.time()
            while now < self.end and len(in_flight) < self.in_flight:
                with self.lock:
                    kind = "SQL" if next(self.turn) % 2 == 0 else "Python"
                job_id, t0, accepted = submit(self.live, token, KINDS[kind])
                in_flight[job_id] = (kind, t0, accepted)
                now = time.time()
            if not in_flight:
                return
            for job_id in list(in_flight):
                status = poll_once(self.live, token, job_id)
                if status in FINAL:
                    kind, t0, accepted = in_flight.pop(job_id)
                    with self.lock:
                        self.results.append(
                            Finished(kind, job_id, status, t0, accepted, time.time())
                        )
            if time.time() > self.end + 300:
                raise SystemExit(f"{len(in_flight)} jobs still unfinished 300 s after the load")
            time.sleep(LOAD_POLL_S)


def _released_per_slice(
    released: list[Finished], start: float, duration: float, slice_s: float
) -> list[float]:
    """Jobs released a minute in each ``slice_s`` slice of the window."""
    slices = max(1, math.floor(duration / slice_s))
    return [
        sum(1 for r in released if start + i * slice_s < r.seen <= start + (i + 1) * slice_s)
        * 60
        / slice_s
        for i in range(slices)
    ]


def _add_load_figures(
    figures: Figures, released: list[Finished], per_minute: float, *, workers: int, in_flight: int
) -> None:
    figures.goals.append(
        (
            "sustained jobs released a minute",
            f"{per_minute:.1f}",
            f">= {GOAL_PER_MINUTE:g}",
            per_minute >= GOAL_PER_MINUTE,
        )
    )
    all_latencies = [r.latency for r in released]
    if all_latencies:
        figures.add(
            f"load: {per_minute:.1f} jobs/min released with {workers} workers and "
            f"{in_flight} in flight; latency median "
            f"{statistics.median(all_latencies):.2f} s, p95 "
            f"{percentile(all_latencies, 0.95):.2f} s"
        )


# --- where the CPU goes --------------------------------------------------------

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_by_component(live: LivePortal) -> dict[str, float]:
    """CPU seconds used so far by the long-lived processes, by component (Linux).

    What is not here (container processes, runc, shims and other processes that
    came and went) is the host's busy time less these.
    """
    workers = {w.pid for w in live.workers}
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    seconds: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry.name)
        parents[pid], names[pid] = int(fields[1]), name
        seconds[pid] = (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime

    def component(pid: int) -> str | None:
        if pid == os.getpid():
            return "portal + bench client (one process)"
        seen = pid
        while seen > 1:
            if seen in workers:
                return "celery workers"
            seen = parents.get(seen, 1)
        if names[pid] in ("dockerd", "containerd"):
            return names[pid]
        if names[pid].startswith(("postgres", "redis-server")):
            return "postgres + redis"
        return None

    totals: dict[str, float] = {}
    for pid, used in seconds.items():
        if (name := component(pid)) is not None:
            totals[name] = totals.get(name, 0.0) + used
    return totals


def print_cpu_shares(
    before: dict[str, float], after: dict[str, float], busy_ticks: float, jobs: int
) -> None:
    used = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
    busy = busy_ticks / TICKS
    used["containers, runc, shims, other"] = max(busy - sum(used.values()), 0.0)
    print(f"   CPU seconds per job (of {busy / max(jobs, 1):.2f} in all, host-wide):")
    for name, value in sorted(used.items(), key=lambda item: -item[1]):
        print(f"     {name:<38}{value / max(jobs, 1):>6.2f}  ({value / max(busy, 1e-9):.0%})")


# --- printing ----------------------------------------------------------------


def print_goals(figures: Figures) -> None:
    print(f"\n4. goals ({_load()})")
    print(f"   {'figure':<36}{'measured':>12}{'goal':>10}  met")
    for name, measured, goal, met in figures.goals:
        print(f"   {name:<36}{measured:>12}{goal:>10}  {'yes' if met else 'NO'}")
    print("\nsummary:")
    for line in figures.lines:
        print(f" - {line}")


def _table_header() -> str:
    return f"   {'':<18}{'n':>4}{'median s':>10}{'p95 s':>8}{'min s':>8}{'max s':>8}"


def _table_row(name: str, values: list[float]) -> str:
    return (
        f"   {name:<18}{len(values):>4}{statistics.median(values):>10.3f}"
        f"{percentile(values, 0.95):>8.3f}{min(values):>8.3f}{max(values):>8.3f}"
    )


def _cpu_busy() -> tuple[float, float]:
    """Busy and total CPU time of the whole host so far, in clock ticks (Linux)."""
    try:
        fields = [float(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


if __name__ == "__main__":
    main()
