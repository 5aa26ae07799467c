"""Engine and transactions for the metadata database (SQLite embedded, PostgreSQL in production)."""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from sandbox.config import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
# PostgreSQL's answers that mean "run the transaction again": nothing was written.
TRANSIENT_SQLSTATES = {
    "40P01": "deadlock detected",
    "40001": "could not serialize access",
}

_ENGINES: dict[str, Engine] = {}


def engine_for(url: str) -> Engine:
    """One engine (and connection pool) per database URL in this process."""
    engine = _ENGINES.get(url)
    if engine is None:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
            _serialise_sqlite_writers(engine)
        else:
            engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
        engine = _ENGINES.setdefault(url, engine)
    return engine


def close_idle_connections() -> None:
    """Close the pooled connections no one holds, in every engine of this process
    (the engines stay usable and connect again when asked)."""
    for engine in list(_ENGINES.values()):
        engine.dispose()


def _serialise_sqlite_writers(engine: Engine) -> None:
    # pysqlite defers BEGIN until the first write, so two processes could read
    # the same audit head. BEGIN IMMEDIATE takes the write lock up front
    # (SQLAlchemy's documented recipe for pysqlite transactions).
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@cache
def _session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(engine_for(url), expire_on_commit=False)


@contextmanager
def transaction(url: str) -> Iterator[Session]:
    """One unit of work: committed when the block ends, rolled back on error."""
    session = _session_factory(url)()
    try:
        with session.begin():
            yield session
    finally:
        session.close()


def is_transient(error: BaseException) -> bool:
    """Whether the database rolled the transaction back only because of another one."""
    if not isinstance(error, DBAPIError):
        return False
    return getattr(error.orig, "sqlstate", None) in TRANSIENT_SQLSTATES


def retry_transient(work: Callable[[], T], *, attempts: int = 4) -> T:
    """Run ``work`` (which opens its own transaction) again after a deadlock or a
    serialization failure, up to ``attempts`` times with a short random pause.

    ``work`` must do nothing outside the database before its commit, or
    nothing that harms when done again.
    """
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except DBAPIError as error:
            if attempt == attempts or not is_transient(error):
                raise
            state = getattr(error.orig, "sqlstate", "")
            log.warning(
                "transaction rolled back (%s: %s); attempt %d of %d",
                state,
                TRANSIENT_SQLSTATES[state],
                attempt + 1,
                attempts,
            )
            time.sleep(random.uniform(0.005, 0.05) * attempt)
    raise AssertionError("unreachable")


def sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    return None


MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_database(settings: Settings) -> None:
    """Bring the metadata schema to the newest migration."""
    settings.ensure_dirs()
    command.upgrade(alembic_config(settings.database_url), "head")
