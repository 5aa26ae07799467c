"""One place that decides whether a real service test runs, skips or fails.

Locally a test whose service is absent skips; under
``SANDBOX_REQUIRE_SERVICES=1`` (CI) it fails instead, so nothing is skipped
silently there.
"""

from __future__ import annotations

import os

import pytest

POSTGRES_URL = os.environ.get(
    "SANDBOX_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("SANDBOX_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
CREATED_DATABASES: list[str] = []


def services_required() -> bool:
    return os.environ.get("SANDBOX_REQUIRE_SERVICES", "") not in ("", "0", "false", "no")


def unavailable(service: str, why: str) -> None:
    """Skip the calling test, or fail it when services are required."""
    message = f"{service} is not available: {why}"
    if services_required():
        pytest.fail(message + " (SANDBOX_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


def fresh_postgres_database() -> str:
    """A new, empty database on the test PostgreSQL server; its SQLAlchemy URL."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    name = f"sandbox_t_{uuid.uuid4().hex[:12]}"
    try:
        admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    except OperationalError as error:
        unavailable("PostgreSQL", type(error).__name__)
    # Only once it exists: a server that is down leaves nothing to drop at the end.
    CREATED_DATABASES.append(name)
    base, _, _ = POSTGRES_URL.rpartition("/")
    return f"{base}/{name}"


def drop_created_databases() -> None:
    """Drop the databases this test session created (connections and all)."""
    from sqlalchemy import create_engine, text

    if not CREATED_DATABASES:
        return
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for name in CREATED_DATABASES:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
    CREATED_DATABASES.clear()


def redis_available() -> None:
    """Skip (or fail in CI) unless the test Redis answers."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.exceptions.RedisError as error:
        unavailable("Redis", type(error).__name__)


MYSQL_URL = os.environ.get("SANDBOX_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
CREATED_MYSQL_DATABASES: list[str] = []


def mysql_available() -> None:
    """Skip (or fail in CI) unless the test MySQL/MariaDB answers."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    try:
        engine = create_engine(MYSQL_URL, connect_args={"connect_timeout": 2})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except OperationalError as error:
        unavailable("MySQL/MariaDB", type(error).__name__)


def fresh_mysql_database() -> str:
    """A new, empty utf8mb4 database on the test MySQL/MariaDB server; its SQLAlchemy URL."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    name = f"sandbox_t_{uuid.uuid4().hex[:12]}"
    try:
        admin = create_engine(MYSQL_URL, connect_args={"connect_timeout": 2})
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        admin.dispose()
    except OperationalError as error:
        unavailable("MySQL/MariaDB", type(error).__name__)
    CREATED_MYSQL_DATABASES.append(name)
    return make_url(MYSQL_URL).set(database=name).render_as_string(hide_password=False)


def drop_created_mysql_databases() -> None:
    """Drop the MySQL/MariaDB databases this test session created."""
    from sqlalchemy import create_engine, text

    if not CREATED_MYSQL_DATABASES:
        return
    admin = create_engine(MYSQL_URL)
    with admin.connect() as connection:
        for name in CREATED_MYSQL_DATABASES:
            connection.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    admin.dispose()
    CREATED_MYSQL_DATABASES.clear()
