"""Owners' databases staged for real: the test PostgreSQL and MySQL/MariaDB servers."""

from __future__ import annotations

import datetime as dt
import traceback
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from datasets.errors import SourceError
from datasets.importers import DatabaseOptions, stage_database
from datasets.staging import Staging
from tests.services import (
    drop_created_mysql_databases,
    fresh_mysql_database,
    fresh_postgres_database,
    mysql_available,
)

KEY = bytes(range(32))
ID = "32040219800101001X"

POSTGRES_VISITS = """
CREATE TABLE visits (
    patient_id text NOT NULL,
    hospital varchar(40),
    visit_date date,
    cost numeric(10, 2),
    seen timestamptz,
    visits integer,
    insured boolean
)
"""
MYSQL_VISITS = """
CREATE TABLE visits (
    patient_id varchar(18) NOT NULL,
    hospital varchar(40),
    visit_date date,
    cost decimal(10, 2),
    seen datetime,
    visits int,
    insured tinyint(1)
) CHARACTER SET utf8mb4
"""
ROWS: list[dict[str, Any]] = [
    {
        "patient_id": ID,
        "hospital": "市第一人民医院",
        "visit_date": dt.date(2024, 1, 5),
        "cost": Decimal("12.50"),
        "seen": dt.datetime(2024, 1, 5, 8, 30),
        "visits": 3,
        "insured": True,
    },
    {
        "patient_id": "0519",
        "hospital": None,
        "visit_date": None,
        "cost": None,
        "seen": None,
        "visits": None,
        "insured": None,
    },
]
INSERT = (
    "INSERT INTO visits VALUES "
    "(:patient_id, :hospital, :visit_date, :cost, :seen, :visits, :insured)"
)


def with_visits(url: str, create: str) -> str:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(create))
        connection.execute(text(INSERT), ROWS)
    engine.dispose()
    return url


@pytest.fixture
def staging(tmp_path: Path) -> Staging:
    return Staging(tmp_path / "import", KEY)


@pytest.fixture(scope="module")
def postgres_url() -> str:
    return with_visits(fresh_postgres_database(), POSTGRES_VISITS)


@pytest.fixture(scope="module")
def mysql_url() -> Iterator[str]:
    mysql_available()
    yield with_visits(fresh_mysql_database(), MYSQL_VISITS)
    drop_created_mysql_databases()


def refused(staging: Staging, url: str, **kwargs: Any) -> SourceError:
    with pytest.raises(SourceError) as caught:
        stage_database(url, staging=staging, name="visits", **kwargs)
    assert staging.tables() == []
    assert list(staging.folder.iterdir()) == []
    return caught.value


def everything_said(error: SourceError) -> str:
    """Every text a log could show of the error: its message, fields and traceback."""
    return "\n".join(
        [str(error), repr(error.to_dict()), "".join(traceback.format_exception(error))]
    )


# --- PostgreSQL -------------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_table_staged_as_text_like_a_csv(staging: Staging, postgres_url: str) -> None:
    # PostgreSQL writes the rows itself (COPY … TO STDOUT as CSV): every column is staged
    # as text, as an owner's CSV file is, and typed by the owner's definition.
    staged = stage_database(postgres_url, staging=staging, name="visits", table="public.visits")

    assert staged.rows == 2
    assert [name for name, _ in staged.columns] == [
        "patient_id",
        "hospital",
        "visit_date",
        "cost",
        "seen",
        "visits",
        "insured",
    ]
    assert {kind for _, kind in staged.columns} == {"string"}
    url = make_url(postgres_url)
    assert staged.source["format"] == "postgresql"
    assert staged.source["host"] == url.host and staged.source["database"] == url.database
    assert staged.source["table"] == "public.visits"
    rows = staging.read_table("visits").to_pylist()
    assert [row["patient_id"] for row in rows] == [ID, "0519"]  # ids keep their characters
    assert rows[0]["hospital"] == "市第一人民医院"
    assert rows[0]["cost"] == "12.50"
    assert rows[0]["visit_date"] == "2024-01-05"
    assert rows[0]["insured"] == "t"
    assert rows[1] == {"patient_id": "0519", **{k: None for k in ROWS[1] if k != "patient_id"}}


@pytest.mark.postgres
def test_postgres_query_staged(staging: Staging, postgres_url: str) -> None:
    staged = stage_database(
        postgres_url,
        staging=staging,
        name="costs",
        query="SELECT hospital, cost * 2 AS doubled, visit_date FROM visits "
        "WHERE hospital LIKE '%医院' OR hospital IS NULL ORDER BY patient_id",
        options=DatabaseOptions(batch_rows=1),
    )

    assert [name for name, _ in staged.columns] == ["hospital", "doubled", "visit_date"]
    assert staging.read_table("costs").to_pylist() == [
        {"hospital": None, "doubled": None, "visit_date": None},
        {"hospital": "市第一人民医院", "doubled": "25.00", "visit_date": "2024-01-05"},
    ]


@pytest.mark.postgres
def test_postgres_query_runs_read_only(staging: Staging, postgres_url: str) -> None:
    stage_database(
        postgres_url,
        staging=staging,
        name="setting",
        query="SELECT current_setting('transaction_read_only') AS read_only",
    )

    assert staging.read_table("setting").to_pylist() == [{"read_only": "on"}]


@pytest.mark.postgres
def test_postgres_unreachable_refused(staging: Staging) -> None:
    error = refused(staging, "postgresql://postgres:pw-unseen@127.0.0.1:1/test", table="visits")

    assert error.rule == "import.unreachable"
    assert error.file == "postgresql://postgres@127.0.0.1:1/test"
    assert "pw-unseen" not in everything_said(error)


@pytest.mark.postgres
def test_postgres_rejected_query_refused_without_its_text(
    staging: Staging, postgres_url: str
) -> None:
    # PostgreSQL's own message would quote the value it could not cast.
    error = refused(staging, postgres_url, query="SELECT CAST(patient_id AS integer) FROM visits")

    assert error.rule == "import.query_refused"
    assert "SQLSTATE 22" in str(error)  # a data exception
    assert ID not in everything_said(error)


@pytest.mark.postgres
def test_postgres_missing_table_refused(staging: Staging, postgres_url: str) -> None:
    error = refused(staging, postgres_url, table="no_such_table")

    assert error.rule == "import.query_refused"
    assert "SQLSTATE 42P01" in str(error)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "query",
    [
        "DELETE FROM visits",
        "WITH gone AS (DELETE FROM visits RETURNING *) SELECT * FROM gone",
        "SELECT * INTO copied FROM visits",
        "SELECT 1; DROP TABLE visits",
        "SELECT * FROM visits FOR UPDATE",
    ],
)
def test_postgres_non_select_refused(staging: Staging, postgres_url: str, query: str) -> None:
    error = refused(staging, postgres_url, query=query)

    assert error.rule == "import.not_select"
    engine = create_engine(postgres_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM visits")).scalar() == 2
    engine.dispose()


# --- MySQL / MariaDB --------------------------------------------------------------------------


@pytest.mark.mysql
def test_mysql_table_staged_with_native_types(staging: Staging, mysql_url: str) -> None:
    staged = stage_database(mysql_url, staging=staging, name="visits", table="visits")

    assert staged.rows == 2
    assert dict(staged.columns) == {
        "patient_id": "string",
        "hospital": "string",
        "visit_date": "date32[day]",
        "cost": "decimal128(12, 2)",
        "seen": "timestamp[us]",
        "visits": "int64",
        "insured": "int64",
    }
    assert staged.source["format"] == "mysql"
    assert staged.source["table"] == "visits"
    rows = staging.read_table("visits").to_pylist()
    assert rows[0] == {**ROWS[0], "insured": 1}
    assert rows[1] == {**ROWS[1]}


@pytest.mark.mysql
def test_mysql_query_staged(staging: Staging, mysql_url: str) -> None:
    staged = stage_database(
        mysql_url,
        staging=staging,
        name="costs",
        query="SELECT hospital, cost, visit_date FROM visits WHERE hospital LIKE '%医院'",
    )

    assert staged.rows == 1
    assert staging.read_table("costs").to_pylist() == [
        {"hospital": "市第一人民医院", "cost": Decimal("12.50"), "visit_date": dt.date(2024, 1, 5)}
    ]


@pytest.mark.mysql
def test_mysql_query_runs_read_only(staging: Staging, mysql_url: str) -> None:
    stage_database(mysql_url, staging=staging, name="setting", query="SELECT @@tx_read_only AS ro")

    assert staging.read_table("setting").to_pylist() == [{"ro": 1}]


@pytest.mark.mysql
def test_mysql_unreachable_refused(staging: Staging) -> None:
    error = refused(staging, "mysql://root:pw-unseen@127.0.0.1:1/test", table="visits")

    assert error.rule == "import.unreachable"
    assert "pw-unseen" not in everything_said(error)


@pytest.mark.mysql
def test_mysql_rejected_query_refused(staging: Staging, mysql_url: str) -> None:
    error = refused(staging, mysql_url, query="SELECT no_such_column FROM visits")

    assert error.rule == "import.query_refused"
    assert "SQLSTATE 42S22, error 1054" in str(error)
    assert "no_such_column" not in str(error)


@pytest.mark.mysql
def test_mysql_non_select_refused(staging: Staging, mysql_url: str) -> None:
    error = refused(staging, mysql_url, query="UPDATE visits SET cost = 0")

    assert error.rule == "import.not_select"


@pytest.mark.mysql
def test_mysql_password_never_shown(staging: Staging, mysql_url: str) -> None:
    database = make_url(mysql_url).database
    user, password = "sandbox_t_owner", f"pw-{uuid.uuid4().hex}"
    admin = create_engine(mysql_url)
    with admin.begin() as connection:
        connection.execute(
            text(f"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{password}'")
        )
        connection.execute(text(f"ALTER USER '{user}'@'%' IDENTIFIED BY '{password}'"))
        connection.execute(text(f"GRANT SELECT ON `{database}`.* TO '{user}'@'%'"))
    admin.dispose()
    url = make_url(mysql_url).set(username=user, password=password)
    with_password = url.render_as_string(hide_password=False)
    wrong = url.set(password=password + "x").render_as_string(hide_password=False)

    staged = stage_database(with_password, staging=staging, name="visits", table="visits")
    assert staged.rows == 2
    assert password not in repr(staged)
    staging.remove_table("visits")

    failures = [
        refused(staging, wrong, table="visits"),
        refused(staging, with_password, query="SELECT nothing FROM visits"),
        refused(staging, with_password, query="DELETE FROM visits"),
        refused(staging, url.set(port=1).render_as_string(hide_password=False), table="visits"),
    ]
    assert [f.rule for f in failures] == [
        "import.login_refused",
        "import.query_refused",
        "import.not_select",
        "import.unreachable",
    ]
    for failure in failures:
        assert password not in everything_said(failure)
