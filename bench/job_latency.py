"""Submit-to-released latency of one job at a time, through the whole product.

The portal on a free port, a real Celery worker on the embedded broker, the
runner of your choice (Docker by default), the synthetic health dataset. For
each kind of job: 20 jobs one after another, median and p95 of the time from
POST /api/v1/jobs to the job being released, as an analyst would see it.

With the Docker runner, each engine runtime given (``--runtimes``, by default
gVisor's runsc and runc, one instance each, one after the other) is measured
in the same run, and the medians are printed side by side with their ratio.

    .venv/bin/python bench/job_latency.py [--runner docker|local] [--patients N] [--jobs N]
        [--runtimes runsc,runc]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.live import start_live_portal

KINDS = {
    "SQL/dp": {
        "language": "sql",
        "mode": "dp",
        "epsilon": 0.01,
        # {i} makes every job a new question: an identical one is answered from cache.
        "code": "SELECT district, COUNT(*) AS n FROM patients WHERE birth_year > {i} "
        "GROUP BY district",
    },
    "SQL/masked": {
        "language": "sql",
        "mode": "masked",
        "code": "SELECT p.district, v.department, COUNT(*) AS n, AVG(v.cost) AS avg_cost "
        "FROM visits v JOIN patients p ON v.person_id = p.person_id "
        "GROUP BY p.district, v.department",
    },
    "Python/masked": {
        "language": "python",
        "mode": "masked",
        "code": "import sandbox_job\n"
        "visits = sandbox_job.table('visits')\n"
        "sandbox_job.magnitude_table('by_department', visits, by=['department'], "
        "value='cost', statistic='mean')\n",
    },
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", default="docker", choices=["docker", "local"])
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument(
        "--runtimes",
        default="runsc,runc",
        help="Docker runner only: the engine runtimes to measure, comma-separated",
    )
    args = parser.parse_args()
    # The portal's request log would bury the figures.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    if args.runner == "local":
        runtimes = ["auto"]  # no container: the setting is unused

    medians: dict[str, dict[str, float]] = {}
    for runtime in runtimes:
        medians[runtime] = _measure(args, runtime)
    if len(runtimes) == 2:
        first, second = runtimes
        print(f"\nmedian submit → released, {first} against {second}")
        print(f"{'job kind':<15}{first + ' s':>10}{second + ' s':>10}{'ratio':>8}")
        for name in KINDS:
            a, b = medians[first][name], medians[second][name]
            print(f"{name:<15}{a:>10.3f}{b:>10.3f}{a / b:>8.2f}")


def _measure(args: argparse.Namespace, runtime: str) -> dict[str, float]:
    """Each kind's median latency under one runtime, printed with its spread."""
    medians: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as folder:
        started = time.monotonic()
        live = start_live_portal(
            Path(folder) / "instance", runner=args.runner, patients=args.patients, runtime=runtime
        )
        print(
            f"\nset-up ({args.patients} patients, runner {args.runner}, runtime {runtime}): "
            f"{time.monotonic() - started:.1f} s"
        )
        try:
            token = live.token("analyst")
            # One warm-up job so the worker has imported everything.
            warm_up = _submit(live, token, KINDS["SQL/masked"])
            live.wait_for(warm_up, token)
            print(f"jobs ran under: {_ran_under(live, warm_up)}")
            print(f"{'job kind':<15}{'n':>4}{'median s':>10}{'p95 s':>8}{'min s':>8}{'max s':>8}")
            for name, body in KINDS.items():
                latencies = []
                for i in range(args.jobs):
                    job_body = {**body, "code": str(body["code"]).replace("{i}", str(1900 + i))}
                    t0 = time.monotonic()
                    job = live.wait_for(_submit(live, token, job_body), token, timeout=300)
                    latencies.append(time.monotonic() - t0)
                    assert job["status"] == "released", job
                medians[name] = statistics.median(latencies)
                print(
                    f"{name:<15}{len(latencies):>4}{medians[name]:>10.3f}"
                    f"{percentile(latencies, 0.95):>8.3f}{min(latencies):>8.3f}"
                    f"{max(latencies):>8.3f}"
                )
        finally:
            live.stop()
    return medians


def _ran_under(live, job_id: str) -> str:  # type: ignore[no-untyped-def]
    """What the job records it ran under: its runtime and image."""
    from sandbox.models import Job

    with live.sandbox.tx() as session:
        job = session.get_one(Job, job_id)
        return f"runtime {job.runtime}, image {job.image_digest}"


def _submit(live, token: str, body: dict) -> str:  # type: ignore[no-untyped-def]
    status, answer = live.request("POST", "/api/v1/jobs", {"dataset": "health", **body}, token)
    if status != 202:
        raise SystemExit(f"submission refused: {answer}")
    return str(answer["id"])


if __name__ == "__main__":
    main()
