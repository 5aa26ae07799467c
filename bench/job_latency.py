"""Submit-to-released latency of one job at a time, through the whole product.

The portal on a free port, a real Celery worker on the embedded broker, the
runner of your choice (Docker by default), the synthetic health dataset. For
each kind of job: 20 jobs one after another, median and p95 of the time from
POST /api/v1/jobs to the job being released, as an analyst would see it.

    .venv/bin/python bench/job_latency.py [--runner docker|local] [--patients N] [--jobs N]
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-latency-") as folder:
        started = time.monotonic()
        live = start_live_portal(
            Path(folder) / "instance", runner=args.runner, patients=args.patients
        )
        print(
            f"set-up ({args.patients} patients, runner {args.runner}): "
            f"{time.monotonic() - started:.1f} s"
        )
        try:
            token = live.token("analyst")
            # One warm-up job so the worker has imported everything.
            live.wait_for(_submit(live, token, KINDS["SQL/masked"]), token)
            print(f"{'job kind':<15}{'n':>4}{'median s':>10}{'p95 s':>8}{'min s':>8}{'max s':>8}")
            for name, body in KINDS.items():
                latencies = []
                for i in range(args.jobs):
                    job_body = {**body, "code": str(body["code"]).replace("{i}", str(1900 + i))}
                    t0 = time.monotonic()
                    job = live.wait_for(_submit(live, token, job_body), token, timeout=300)
                    latencies.append(time.monotonic() - t0)
                    assert job["status"] == "released", job
                print(
                    f"{name:<15}{len(latencies):>4}{statistics.median(latencies):>10.3f}"
                    f"{percentile(latencies, 0.95):>8.3f}{min(latencies):>8.3f}"
                    f"{max(latencies):>8.3f}"
                )
        finally:
            live.stop()


def _submit(live, token: str, body: dict) -> str:  # type: ignore[no-untyped-def]
    status, answer = live.request("POST", "/api/v1/jobs", {"dataset": "health", **body}, token)
    if status != 202:
        raise SystemExit(f"submission refused: {answer}")
    return str(answer["id"])


if __name__ == "__main__":
    main()
