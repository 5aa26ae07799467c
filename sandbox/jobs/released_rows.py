"""The rows of released outputs that every later release under the same grant is checked
against (differencing), as stored in ``released_rows``.

A released job's rows are written once, in the transaction that releases it,
and never change. So each worker process keeps the sizes it has read (group
keys, persons, released or suppressed: no sketch) per grant and per job, and
asks the database only which jobs under the grant have rows, reading the sizes
of those it has not seen. Commit order does not matter: a job is either wholly
there or not. Sketches are read only for the rows whose sizes leave room for a
small difference (``policies.output_checks.rows_to_compare``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from policies.output_checks import RowSize, Sketch, SketchedRow
from sandbox.models import Job, ReleasedRow

# Sizes kept per process, in rows (a row's size takes about 300 bytes).
CAPACITY_ROWS = 200_000
# Bound the IN lists sent to the database.
CHUNK = 500


def record(session: Session, job: Job) -> None:
    """Store the released job's sketched rows (in the releasing transaction)."""
    session.add_all(
        ReleasedRow(
            grant_id=job.grant_id,
            job_id=job.id,
            table_name=row["table"],
            keys=row["keys"],
            persons=row["persons"],
            released=row["released"],
            sketch=row["sketch"],
        )
        for row in job.disclosure_sketches or []
    )


def released_jobs(session: Session, *, grant_id: str, except_job: str) -> set[str]:
    """The jobs that released rows under the grant, ``except_job`` aside."""
    jobs = set(
        session.scalars(
            select(ReleasedRow.job_id).where(ReleasedRow.grant_id == grant_id).distinct()
        )
    )
    jobs.discard(except_job)
    return jobs


class SizeCache:
    """What this process has read of each grant's released rows, least recently used first."""

    def __init__(self, capacity_rows: int = CAPACITY_ROWS) -> None:
        self.capacity_rows = capacity_rows
        self._grants: OrderedDict[str, dict[str, list[RowSize]]] = OrderedDict()
        self._rows = 0
        self._lock = threading.Lock()

    def sizes(self, session: Session, *, grant_id: str, except_job: str) -> list[RowSize]:
        """Every row released under the grant by a job other than ``except_job``."""
        jobs = released_jobs(session, grant_id=grant_id, except_job=except_job)
        with self._lock:
            known = dict(self._grants.get(grant_id, {}))
        missing = sorted(jobs - known.keys())
        if missing:
            read = _read_sizes(session, grant_id, missing)
            known |= read
            with self._lock:
                cached = self._grants.setdefault(grant_id, {})
                for job_id, rows in read.items():
                    if job_id not in cached:
                        cached[job_id] = rows
                        self._rows += len(rows)
                self._evict(keep=grant_id)
        with self._lock:
            if grant_id in self._grants:
                self._grants.move_to_end(grant_id)
        return [row for job_id in sorted(jobs) for row in known.get(job_id, [])]

    def clear(self) -> None:
        with self._lock:
            self._grants.clear()
            self._rows = 0

    def _evict(self, *, keep: str) -> None:
        while self._rows > self.capacity_rows and len(self._grants) > 1:
            grant_id, jobs = next(iter(self._grants.items()))
            if grant_id == keep:
                self._grants.move_to_end(grant_id)
                continue
            del self._grants[grant_id]
            self._rows -= sum(len(rows) for rows in jobs.values())


def sketches(session: Session, sizes: Iterable[RowSize], refs: set[int]) -> list[SketchedRow]:
    """The rows ``refs`` with their sketches, read from the database."""
    by_ref = {size.ref: size for size in sizes if size.ref in refs}
    wanted = sorted(by_ref)
    rows: list[SketchedRow] = []
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        for ref, raw in session.execute(
            select(ReleasedRow.id, ReleasedRow.sketch).where(ReleasedRow.id.in_(chunk))
        ):
            size = by_ref[ref]
            rows.append(
                SketchedRow(
                    size.table,
                    size.keys,
                    size.persons,
                    Sketch.from_list(raw),
                    size.released,
                    job=size.job,
                )
            )
    return rows


def _read_sizes(session: Session, grant_id: str, jobs: list[str]) -> dict[str, list[RowSize]]:
    read: dict[str, list[RowSize]] = {job_id: [] for job_id in jobs}
    for start in range(0, len(jobs), CHUNK):
        chunk = jobs[start : start + CHUNK]
        for ref, job_id, table, keys, persons, released in session.execute(
            select(
                ReleasedRow.id,
                ReleasedRow.job_id,
                ReleasedRow.table_name,
                ReleasedRow.keys,
                ReleasedRow.persons,
                ReleasedRow.released,
            )
            .where(ReleasedRow.grant_id == grant_id, ReleasedRow.job_id.in_(chunk))
            .order_by(ReleasedRow.id)
        ):
            read[job_id].append(RowSize(ref, job_id, table, _keys(keys), persons, released))
    return read


def _keys(raw: Iterable[tuple[str, Any]]) -> tuple[tuple[str, Any], ...]:
    return tuple((name, value) for name, value in raw)
