"""How the differencing check grows with the releases under one grant.

Every masked release is compared with every earlier release under its grant
(``sandbox.jobs.pipeline._differencing``): its rows' sketches are read back from the
database and each new row is checked against them. This bench stores K earlier
releases of 12 sketched rows each (a breakdown by one attribute: 200 to 2,000
persons a row, drawn from 20,000) under one grant, then times the check of one
new 12-row release, for several K: once with nothing cached (a worker's first
check under the grant) and then as a warm worker runs it (median of several
runs), with how many rows exist and how many sketches were read. SQLite metadata.

    .venv/bin/python bench/differencing.py [--releases 0,100,1000,3000] [--runs N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, select

from policies.output_checks import (
    Sketch,
    SketchedRow,
    rows_to_compare,
)
from sandbox.context import Sandbox
from sandbox.jobs.pipeline import SIZES, _differencing
from sandbox.models import (
    Job,
    JobStatus,
    ReleasedRow,
)
from tests.factories import make_sandbox, submit_job

ROWS, PERSONS = 12, 20_000


def breakdown(rng: random.Random, table: str) -> list[SketchedRow]:
    rows = []
    for index in range(ROWS):
        members = rng.sample(range(PERSONS), rng.randint(200, 2_000))
        persons = [f"{p:032x}" for p in members]
        rows.append(
            SketchedRow(table, (("group", f"g{index}"),), len(persons), Sketch.of(persons), True)
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", default="0,100,1000,3000")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    counts = sorted(int(v) for v in args.releases.split(","))
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="bench-differencing-") as folder:
        sandbox = make_sandbox(Path(folder) / "instance", patients=200)
        template = first_job(sandbox)
        # A pool of distinct breakdowns to store (sketching is slow; storing is not).
        stored = [[r.to_json() for r in breakdown(rng, "result")] for _ in range(50)]
        new_rows = breakdown(rng, "result")
        have = 0
        print(
            f"{'earlier releases':>18}{'cold ms':>9}{'warm ms':>9}{'rows':>8}{'sketches read':>15}"
        )
        for count in counts:
            add_releases(sandbox, template, have, count - have, stored)
            have = count
            SIZES.clear()  # the first check after a worker starts reads every size
            cold = check(sandbox, template, new_rows)
            warm = statistics.median(check(sandbox, template, new_rows) for _ in range(args.runs))
            with sandbox.tx() as session:
                job = session.get_one(Job, template)
                sizes = SIZES.sizes(session, grant_id=job.grant_id, except_job=job.id)
                read = len(rows_to_compare(new_rows, sizes, 10))
            print(f"{count:>18}{cold:>9.1f}{warm:>9.1f}{len(sizes):>8}{read:>15}")


def check(sandbox: Sandbox, template: str, new_rows: list[SketchedRow]) -> float:
    """Milliseconds of one differencing check of ``new_rows``, as the worker runs it."""
    with sandbox.tx() as session:
        job = session.get_one(Job, template)
        started = time.perf_counter()
        _differencing(session, job, new_rows, 10)
        return (time.perf_counter() - started) * 1000


def first_job(sandbox: Sandbox) -> str:
    return submit_job(
        sandbox, "SELECT department, COUNT(*) AS n FROM visits GROUP BY department"
    ).id


def add_releases(
    sandbox: Sandbox, template: str, start: int, count: int, stored: list[list[dict]]
) -> None:
    if count <= 0:
        return
    with sandbox.tx() as session:
        row = dict(session.execute(select(Job.__table__).where(Job.id == template)).one()._mapping)
        copies, rows = [], []
        for n in range(start, start + count):
            job_id = f"bench-{n:06d}"
            sketches = stored[n % len(stored)]
            copies.append(
                row
                | {
                    "id": job_id,
                    "status": JobStatus.RELEASED.value,
                    "disclosure_sketches": sketches,
                }
            )
            rows += [
                {
                    "grant_id": row["grant_id"],
                    "job_id": job_id,
                    "table_name": r["table"],
                    "keys": r["keys"],
                    "persons": r["persons"],
                    "released": r["released"],
                    "sketch": r["sketch"],
                }
                for r in sketches
            ]
        session.execute(insert(Job.__table__), copies)
        session.execute(insert(ReleasedRow.__table__), rows)


if __name__ == "__main__":
    main()
