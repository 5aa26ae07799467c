"""The audit chain on PostgreSQL: append throughput and the time to verify a long chain.

On a fresh database (migrated, so the append-only trigger is in place):

* append: 5,000 entries through ``audit.append``, one transaction per entry as
  the product writes them (and, for comparison, 100 entries per transaction);
  entries per second, median of several runs;
* verify: 1,000,000 correctly chained entries bulk-loaded with COPY (INSERT
  fires no trigger), then ``audit.verify`` over all of them, with one signed
  checkpoint at the head; median of 3.

    .venv/bin/python bench/audit_chain.py [--appends N] [--runs N] [--entries N]

Needs the test PostgreSQL (SANDBOX_TEST_POSTGRES_URL, default
postgresql+psycopg://postgres@127.0.0.1:5432/test); the database is dropped after.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alembic import command
from sqlalchemy import text

from sandbox.context import Sandbox
from sandbox.db import (
    alembic_config,
    engine_for,
)
from sandbox.integrity import audit, checkpoints
from tests.factories import make_settings
from tests.services import drop_created_databases, fresh_postgres_database

# What entries look like in practice: a job submission's details are among the largest.
DETAILS = {
    "dataset": "health",
    "language": "sql",
    "mode": "dp",
    "epsilon": 0.5,
    "code_sha256": "9f" * 32,
    "grant": "4c1e0b7f1d2a4e9b8a7c6d5e4f3a2b1c",
}
ACTIONS = ("job.submitted", "job.queued", "job.running", "job.checking", "job.released")


def bench_append(sandbox: Sandbox, *, count: int, per_transaction: int) -> float:
    """Entries per second appended through audit.append."""
    started = time.perf_counter()
    for first in range(0, count, per_transaction):
        with sandbox.tx() as session:
            for i in range(first, min(count, first + per_transaction)):
                audit.append(
                    session,
                    actor="analyst",
                    action=ACTIONS[i % len(ACTIONS)],
                    subject=f"job{i:08d}",
                    details=DETAILS,
                )
    return count / (time.perf_counter() - started)


def load_chain(sandbox: Sandbox, entries: int) -> float:
    """Replace the log with ``entries`` correctly chained entries; seconds taken."""
    started = time.perf_counter()
    engine = engine_for(sandbox.settings.database_url)
    with engine.begin() as connection:
        # The benchmark's own database: the owner steps past the trigger to empty it.
        connection.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER USER"))
        connection.execute(text("TRUNCATE audit_entries"))
        connection.execute(text("ALTER TABLE audit_entries ENABLE TRIGGER USER"))
    moment = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        prev = audit.GENESIS
        columns = "seq, at, actor, action, subject, details, prev_hash, hash"
        with cursor.copy(f"COPY audit_entries ({columns}) FROM STDIN") as copy:
            for seq in range(1, entries + 1):
                at = (moment + dt.timedelta(milliseconds=seq)).isoformat()
                action, subject = ACTIONS[seq % len(ACTIONS)], f"job{seq // 5:08d}"
                details = {**DETAILS, "n": seq}
                digest = audit.entry_hash(
                    seq=seq,
                    at=at,
                    actor="analyst",
                    action=action,
                    subject=subject,
                    details=details,
                    prev=prev,
                )
                # As append stores them: the details as their canonical JSON text.
                stored = audit.canonical_json(details).decode()
                copy.write_row((seq, at, "analyst", action, subject, stored, prev, digest))
                prev = digest
        raw.commit()
    finally:
        raw.close()
    with engine.begin() as connection:
        connection.execute(text("ANALYZE audit_entries"))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-audit-") as folder:
        url = fresh_postgres_database()
        try:
            command.upgrade(alembic_config(url), "head")
            sandbox = Sandbox(make_settings(Path(folder) / "instance", database_url=url))

            for per_transaction in (1, 100):
                rates = [
                    bench_append(sandbox, count=args.appends, per_transaction=per_transaction)
                    for _ in range(args.runs)
                ]
                print(
                    f"append, {per_transaction:>3} per transaction: "
                    f"median {statistics.median(rates):,.0f} entries/s over {args.runs} runs "
                    f"of {args.appends:,} ({', '.join(f'{r:,.0f}' for r in rates)})"
                )
            with sandbox.tx() as session:
                assert audit.verify(session).ok

            loaded = load_chain(sandbox, args.entries)
            print(f"loaded {args.entries:,} chained entries with COPY in {loaded:.1f} s")
            checkpoints.write_checkpoint(sandbox)
            times = []
            for _ in range(3):
                started = time.perf_counter()
                report = checkpoints.verify_chain(sandbox)
                times.append(time.perf_counter() - started)
                assert report.ok and report.entries == args.entries, report
                assert report.checkpoints == 1
            print(
                f"verify {args.entries:,} entries: median {statistics.median(times):.1f} s "
                f"({', '.join(f'{t:.1f}' for t in times)}), "
                f"{args.entries / statistics.median(times):,.0f} entries/s"
            )
        finally:
            engine_for(url).dispose()
            drop_created_databases()


if __name__ == "__main__":
    main()
