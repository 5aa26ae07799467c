"""Released rows for the differencing checks: written at release, copied over by the
migration, read back by a worker's size cache whatever the commit order."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, event, func, select, text, update

from policies.output_checks import Sketch, SketchedRow
from sandbox.context import Sandbox
from sandbox.db import alembic_config
from sandbox.jobs.pipeline import run_job
from sandbox.jobs.released_rows import SizeCache, record, sketches
from sandbox.models import Job, JobStatus, ReleasedRow
from tests.factories import submit_job

QUERY = "SELECT department, COUNT(*) AS n FROM visits GROUP BY department"


def submit(sandbox: Sandbox, code: str = QUERY) -> str:
    return submit_job(sandbox, code).id


def row(table: str, value: str, persons: int) -> dict[str, object]:
    sketch = Sketch.of(f"{value}-{i}" for i in range(persons))
    return SketchedRow(table, (("g", value),), persons, sketch, persons >= 10).to_json()


def test_a_release_stores_its_rows_and_a_held_job_none(sandbox_instance: Sandbox) -> None:
    released = submit(sandbox_instance)
    assert run_job(sandbox_instance, released) == "released"
    with sandbox_instance.tx() as session:
        job = session.get_one(Job, released)
        stored = session.scalars(select(ReleasedRow).where(ReleasedRow.job_id == released)).all()
        assert len(stored) == len(job.disclosure_sketches or []) > 0
        assert {r.grant_id for r in stored} == {job.grant_id}
        assert sorted(r.persons for r in stored) == sorted(
            r["persons"] for r in job.disclosure_sketches or []
        )
    # The same count less one district's 1950 births: held, so nothing is stored yet.
    first = submit(sandbox_instance, "SELECT COUNT(*) AS n FROM patients WHERE birth_year >= 1950")
    assert run_job(sandbox_instance, first) == "released"
    held = submit(
        sandbox_instance,
        "SELECT COUNT(*) AS n FROM patients WHERE birth_year >= 1950 "
        "AND NOT (birth_year = 1950 AND district = '金坛区')",
    )
    assert run_job(sandbox_instance, held) == "pending_review"
    with sandbox_instance.tx() as session:
        count = select(func.count()).select_from(ReleasedRow).where(ReleasedRow.job_id == held)
        assert session.scalar(count) == 0


def test_size_cache_reads_each_job_once_and_misses_none_committed_late(
    sandbox_instance: Sandbox,
) -> None:
    a, b, c = (submit(sandbox_instance) for _ in range(3))
    cache = SizeCache()
    with sandbox_instance.tx() as session:
        for job_id, rows in ((b, [row("t", "x", 40), row("t", "y", 3)]), (c, [row("t", "x", 44)])):
            job = session.get_one(Job, job_id)
            job.disclosure_sketches = rows
            record(session, job)
        grant = session.get_one(Job, a).grant_id
    with sandbox_instance.tx() as session:
        sizes = cache.sizes(session, grant_id=grant, except_job=c)
    assert sorted((s.job, s.persons, s.released) for s in sizes) == [(b, 3, False), (b, 40, True)]

    # A job whose rows commit after higher-numbered rows were read (as two workers'
    # transactions may on PostgreSQL) is still found: the cache asks by job, not by id.
    with sandbox_instance.tx() as session:
        session.execute(
            ReleasedRow.__table__.insert(),
            [
                {
                    "id": 0,
                    "grant_id": grant,
                    "job_id": a,
                    "table_name": "t",
                    "keys": [["g", "z"]],
                    "persons": 12,
                    "released": True,
                    "sketch": Sketch().to_list(),
                }
            ],
        )
    statements: list[str] = []
    with sandbox_instance.tx() as session:
        connection = session.connection()
        event.listen(connection, "before_cursor_execute", lambda *args: statements.append(args[2]))
        sizes = cache.sizes(session, grant_id=grant, except_job=c)
        refs = {s.ref for s in sizes}
        loaded = sketches(session, sizes, refs)
    assert sorted((s.job, s.persons) for s in sizes) == sorted([(a, 12), (b, 3), (b, 40)])
    assert len(loaded) == 3 and {r.job for r in loaded} == {a, b}
    # Only the new job's sizes were read: one query of job ids, one of sizes, one of sketches.
    assert len(statements) == 3, statements


def test_size_cache_evicts_the_least_recently_used_grant(sandbox_instance: Sandbox) -> None:
    job_id = submit(sandbox_instance)
    with sandbox_instance.tx() as session:
        job = session.get_one(Job, job_id)
        job.disclosure_sketches = [row("t", str(i), 20) for i in range(5)]
        record(session, job)
        grant = job.grant_id
    cache = SizeCache(capacity_rows=4)
    with sandbox_instance.tx() as session:
        assert len(cache.sizes(session, grant_id=grant, except_job="none")) == 5
        assert len(cache.sizes(session, grant_id="another", except_job="none")) == 0
        # Over capacity, the older grant goes; asking again reads it again.
        assert len(cache.sizes(session, grant_id=grant, except_job="none")) == 5


def test_migration_copies_the_rows_of_released_jobs(sandbox_instance: Sandbox) -> None:
    released, held = submit(sandbox_instance), submit(sandbox_instance)
    rows = [row("result", "x", 40), row("result", "y", 4)]
    with sandbox_instance.tx() as session:
        session.execute(
            update(Job)
            .where(Job.id == released)
            .values(status=JobStatus.RELEASED.value, disclosure_sketches=rows)
        )
        session.execute(
            update(Job)
            .where(Job.id == held)
            .values(status=JobStatus.PENDING_REVIEW.value, disclosure_sketches=rows)
        )
    url = sandbox_instance.settings.database_url
    config = alembic_config(url)
    command.downgrade(config, "0009")
    command.upgrade(config, "head")
    engine = create_engine(url)
    with engine.connect() as connection:
        copied = connection.execute(
            text("SELECT job_id, table_name, persons, released FROM released_rows ORDER BY persons")
        ).all()
    engine.dispose()
    assert [tuple(r) for r in copied] == [(released, "result", 4, 0), (released, "result", 40, 1)]


def test_an_empty_database_made_before_the_table_upgrades(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0009")
    command.upgrade(config, "head")
    engine = create_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM released_rows")).scalar() == 0
    engine.dispose()
