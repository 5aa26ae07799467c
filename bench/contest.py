"""Contest submissions through the whole product: their latency, their throughput, and what
they cost researchers' jobs running beside them.

The portal on a free port, real Celery workers on the embedded broker (one for
researchers' jobs, one for the contest queue, as ``make demo`` runs them), the
runner of your choice (Docker by default), the synthetic health dataset and the
demo contest (three tracks, scikit-learn baselines).

1. Latency: a team submits the 30-day-readmission baseline (logistic regression)
   one submission at a time; median and p95 of POST → scored, as the team sees it
   (smoke run on mock rows, then fit and predict on the hidden part, scoring).
2. Throughput: a burst of submissions over the three tracks from two teams, all
   at once; submissions scored per minute, from the first POST to the last score.
3. Researchers' jobs: submit → released latency of a masked SQL job, one after
   another, on an idle instance and again while the burst runs.

    .venv/bin/python bench/contest.py [--runner docker|local] [--patients N]
        [--latency-runs N] [--burst N] [--jobs N]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import update

from sandbox.demo import BASELINES, DEMO_CONTEST, ensure_demo_contest
from sandbox.models import Track
from tests.live import LivePortal, start_live_portal, start_worker

TRACKS = {
    "readmission-30d": "readmission.py",
    "length-of-stay": "length_of_stay.py",
    "diagnosis-from-labs": "diagnosis_from_labs.py",
}
JOB = {
    "dataset": "health",
    "language": "sql",
    "mode": "masked",
    # The same question each time: a varied one would (rightly) be held for review by
    # the differencing check, and the bench measures the path to release.
    "code": "SELECT p.district, v.department, COUNT(*) AS n, AVG(v.cost) AS avg_cost "
    "FROM visits v JOIN patients p ON v.person_id = p.person_id "
    "GROUP BY p.district, v.department",
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def code_for(track: str, variant: int) -> str:
    """The track's baseline, made a new submission by a comment (same model, new code)."""
    return (BASELINES / TRACKS[track]).read_text(encoding="utf-8") + f"\n# variant {variant}\n"


def submit(live: LivePortal, token: str, track: str, code: str) -> str:
    status, body = live.request(
        "POST",
        f"/api/v1/contests/{DEMO_CONTEST}/tracks/{track}/submissions",
        {"code": code},
        token=token,
    )
    assert status == 202, body
    return str(body["id"])


def run_jobs(live: LivePortal, token: str, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        began = time.monotonic()
        status, body = live.request(
            "POST",
            "/api/v1/jobs",
            JOB,
            token=token,
        )
        assert status == 202, body
        done = live.wait_for(str(body["id"]), token)
        assert done["status"] == "released", done
        latencies.append(time.monotonic() - began)
    return latencies


def row(name: str, values: list[float]) -> str:
    return (
        f"{name:<44}{len(values):>4}{statistics.median(values):>10.2f}"
        f"{percentile(values, 0.95):>8.2f}{min(values):>8.2f}{max(values):>8.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", default="docker", choices=["docker", "local"])
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--latency-runs", type=int, default=5)
    parser.add_argument("--burst", type=int, default=12, help="submissions over 3 tracks")
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--contest-concurrency", type=int, default=1)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per poll

    with tempfile.TemporaryDirectory(prefix="bench-contest-") as folder:
        started = time.monotonic()
        live = start_live_portal(
            Path(folder) / "instance", runner=args.runner, patients=args.patients
        )
        try:
            _bench(live, args, started)
        finally:
            live.stop()


def _bench(live: LivePortal, args: Any, started: float) -> None:
    sandbox = live.sandbox
    ensure_demo_contest(sandbox)
    with sandbox.tx() as session:  # the bench's own quotas: it submits more than a team may
        session.execute(update(Track).values(daily_quota=1000, total_quota=1000, max_running=100))
    live.workers.append(
        start_worker(
            sandbox,
            concurrency=args.contest_concurrency,
            name="contest",
            queues=("sandbox-contest",),
        )
    )
    ivy, dragon, researcher = live.token("analyst"), live.token("analyst2"), live.token("analyst")
    print(
        f"set-up ({args.patients} patients, runner {args.runner}, contest worker "
        f"concurrency {args.contest_concurrency}): {time.monotonic() - started:.1f} s"
    )
    # Warm-up: the baselines the contest opened with, and one researcher's job.
    for track in TRACKS:
        live.wait_for_submission(submit(live, ivy, track, code_for(track, 0)), ivy)
    run_jobs(live, researcher, 1)

    header = f"{'':<44}{'n':>4}{'median s':>10}{'p95 s':>8}{'min s':>8}{'max s':>8}"
    print(header)
    latencies = []
    for i in range(args.latency_runs):
        began = time.monotonic()
        done = live.wait_for_submission(
            submit(live, ivy, "readmission-30d", code_for("readmission-30d", 100 + i)), ivy
        )
        assert done["status"] == "scored", done
        latencies.append(time.monotonic() - began)
    print(row("submission -> scored (readmission baseline)", latencies))

    idle = run_jobs(live, researcher, args.jobs)
    print(row("researcher's job, contest idle", idle))

    busy: list[float] = []
    burst_done = threading.Event()

    def jobs_beside() -> None:
        while not burst_done.is_set():
            busy.extend(run_jobs(live, researcher, 1))

    beside = threading.Thread(target=jobs_beside)
    began = time.monotonic()
    ids = []
    for i in range(args.burst):
        track = list(TRACKS)[i % len(TRACKS)]
        ids.append((submit(live, ivy if i % 2 else dragon, track, code_for(track, 200 + i)), i))
    beside.start()
    for submission_id, i in ids:
        done = live.wait_for_submission(submission_id, ivy if i % 2 else dragon, timeout=1800)
        assert done["status"] == "scored", done
    elapsed = time.monotonic() - began
    burst_done.set()
    beside.join()
    print(row("researcher's job, during the burst", busy))
    print(
        f"burst: {args.burst} submissions over 3 tracks scored in {elapsed:.1f} s: "
        f"{args.burst / elapsed * 60:.2f} submissions/min"
    )
    ratio = statistics.median(busy) / statistics.median(idle)
    print(f"researcher's job median latency, burst / idle: {ratio:.2f}x")


if __name__ == "__main__":
    main()
