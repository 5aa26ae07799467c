"""The audit chain on PostgreSQL: the trigger refuses UPDATE, DELETE and TRUNCATE;
tampering past it (as the table's owner can) is named by verify; browsing by time
compares timestamps byte by byte whatever the database's locale."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, delete, text, update
from sqlalchemy.exc import DBAPIError

from sandbox.context import Sandbox
from sandbox.db import alembic_config
from sandbox.integrity import audit
from sandbox.integrity.audit import APPEND_ONLY_MESSAGE, AuditFilter
from sandbox.models import AuditEntry, Base
from tests.services import fresh_postgres_database
from tests.tampering import SCENARIOS, append_entries, chain_sandbox, check_scenario

pytestmark = pytest.mark.postgres


@pytest.fixture
def chain(tmp_path: Path) -> Sandbox:
    """An empty audit log on a fresh PostgreSQL database, migrated as production is."""
    url = fresh_postgres_database()
    command.upgrade(alembic_config(url), "head")
    return chain_sandbox(tmp_path / "instance", url)


def trigger_names(url: str) -> list[str]:
    engine = create_engine(url)
    with engine.connect() as connection:
        names = (
            connection.execute(
                text(
                    "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_entries'::regclass "
                    "AND NOT tgisinternal ORDER BY tgname"
                )
            )
            .scalars()
            .all()
        )
    engine.dispose()
    return list(names)


def test_postgres_migrations_match_models_and_install_trigger(chain: Sandbox) -> None:
    url = chain.settings.database_url
    engine = create_engine(url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    engine.dispose()
    assert trigger_names(url) == ["audit_entries_append_only"]
    command.downgrade(alembic_config(url), "0006")
    assert trigger_names(url) == []
    command.downgrade(alembic_config(url), "base")
    command.upgrade(alembic_config(url), "head")
    assert trigger_names(url) == ["audit_entries_append_only"]


def test_postgres_schema_from_models_gets_the_trigger(tmp_path: Path) -> None:
    url = fresh_postgres_database()
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    assert trigger_names(url) == ["audit_entries_append_only"]


@pytest.mark.parametrize(
    "statement",
    [
        update(AuditEntry).where(AuditEntry.seq == 2).values(subject="forged"),
        delete(AuditEntry).where(AuditEntry.seq == 3),
        delete(AuditEntry).where(AuditEntry.seq > 100),  # even one touching no row
        text("TRUNCATE audit_entries"),
    ],
    ids=["update", "delete", "delete nothing", "truncate"],
)
def test_postgres_refuses_update_delete_truncate(chain: Sandbox, statement: object) -> None:
    append_entries(chain)
    with pytest.raises(DBAPIError, match=APPEND_ONLY_MESSAGE) as refused:
        with chain.tx() as session:
            session.execute(statement)  # type: ignore[call-overload]
    assert getattr(refused.value.orig, "sqlstate", None) == "42501"  # insufficient_privilege
    with chain.tx() as session:
        report = audit.verify(session)
    assert report.ok and report.entries == 6


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_postgres_tampering_named(chain: Sandbox, name: str) -> None:
    check_scenario(chain, SCENARIOS[name])


def test_postgres_browse_by_time_ignores_locale_collation(chain: Sandbox) -> None:
    append_entries(chain, 3)
    with chain.tx() as session:
        (first, *_rest) = audit.browse(session, AuditFilter()).entries
        # The exact moment of entry 1, without the fraction: "…:SS+00:00" sorts
        # before "…:SS.ffffff+00:00" byte by byte, but not under every locale.
        moment = first["at"].split(".")[0] + "+00:00"
        found = audit.browse(session, AuditFilter.from_args({"since": moment}))
    assert [e["seq"] for e in found.entries] == [1, 2, 3]


def test_postgres_details_kept_as_canonical_json_text(chain: Sandbox) -> None:
    with chain.tx() as session:
        audit.append(session, actor="t", action="a", subject="s", details={"b": 1, "a": "名"})
        stored = session.execute(text("SELECT details::text FROM audit_entries")).scalar()
        assert session.get_one(AuditEntry, 1).details == {"a": "名", "b": 1}
    assert stored == '{"a":"名","b":1}'  # what verify hashes without parsing
