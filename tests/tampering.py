"""Tampering with the audit table the way its owner or a superuser could: past the
append-only triggers. Shared by the SQLite and the PostgreSQL tests of the chain."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, text

from sandbox.context import Sandbox
from sandbox.integrity import audit, checkpoints
from sandbox.models import AuditEntry
from tests.factories import make_settings

ENTRIES = 6


def chain_sandbox(instance: Path, database_url: str) -> Sandbox:
    """A sandbox on a migrated, empty database; the caller appends what it needs."""
    return Sandbox(make_settings(instance, database_url=database_url))


def append_entries(sandbox: Sandbox, count: int = ENTRIES, *, actor: str = "t") -> None:
    with sandbox.tx() as session:
        for i in range(count):
            audit.append(
                session,
                actor=actor,
                action="test.event",
                subject=str(i),
                details={"i": i, "名": "值"},
            )


@contextmanager
def past_the_triggers(connection: Connection) -> Iterator[None]:
    """Run the block with the append-only triggers out of the way, then put them back."""
    if connection.dialect.name == "postgresql":
        # What the table's owner can do; a superuser could also set
        # session_replication_role = replica.
        connection.execute(
            text("ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only")
        )
        yield
        connection.execute(
            text("ALTER TABLE audit_entries ENABLE TRIGGER audit_entries_append_only")
        )
        return
    connection.execute(text("DROP TRIGGER audit_entries_no_update"))
    connection.execute(text("DROP TRIGGER audit_entries_no_delete"))
    yield
    for statement in audit.APPEND_ONLY_SQL["sqlite"]:
        connection.execute(text(statement))


def tamper(sandbox: Sandbox, *statements: str) -> None:
    """Run raw SQL against the audit table in one transaction, past the triggers."""
    with sandbox.tx() as session:
        connection = session.connection()
        with past_the_triggers(connection):
            for statement in statements:
                connection.execute(text(statement))


def forge_and_rehash(sandbox: Sandbox, *, seq: int) -> None:
    """Change an entry and give it the hash its new content has."""
    with sandbox.tx() as session:
        entry = session.get_one(AuditEntry, seq)
        at, actor, action, details, prev = (
            entry.at,
            entry.actor,
            entry.action,
            entry.details,
            entry.prev_hash,
        )
        forged = audit.entry_hash(
            seq=seq, at=at, actor=actor, action=action, subject="forged", details=details, prev=prev
        )
        connection = session.connection()
        with past_the_triggers(connection):
            connection.execute(
                text(
                    "UPDATE audit_entries SET subject = 'forged', hash = :forged WHERE seq = :seq"
                ),
                {"forged": forged, "seq": seq},
            )


def rewrite_tail(sandbox: Sandbox, *, keep: int) -> None:
    """Cut the chain after entry ``keep`` and append fresh, consistently hashed entries
    in place of the old tail: the chain verifies, only a checkpoint tells."""
    with sandbox.tx() as session:
        total, _ = audit.head(session)
    tamper(sandbox, f"DELETE FROM audit_entries WHERE seq > {keep}")
    append_entries(sandbox, total - keep, actor="forger")


@dataclass(frozen=True)
class Scenario:
    tamper: Callable[[Sandbox], None]
    first_broken: int
    reason: str
    # Caught only when the chain is compared with a checkpoint of the old head.
    needs_checkpoint: bool = False


SCENARIOS = {
    "edit": Scenario(
        lambda s: tamper(s, "UPDATE audit_entries SET subject = 'forged' WHERE seq = 3"),
        3,
        "content does not match its hash",
    ),
    "edit and rehash": Scenario(
        # Entry 3 is consistent again; entry 4 still names its old hash.
        lambda s: forge_and_rehash(s, seq=3),
        4,
        "previous hash is not the hash of the entry before it",
    ),
    "delete": Scenario(
        lambda s: tamper(s, "DELETE FROM audit_entries WHERE seq = 2"),
        3,
        "entry 2 is missing",
    ),
    "reorder": Scenario(
        lambda s: tamper(
            s,
            "UPDATE audit_entries SET seq = -4 WHERE seq = 4",
            "UPDATE audit_entries SET seq = 4 WHERE seq = 3",
            "UPDATE audit_entries SET seq = 3 WHERE seq = -4",
        ),
        3,
        "previous hash is not the hash of the entry before it",
    ),
    "truncate tail": Scenario(
        lambda s: tamper(s, f"DELETE FROM audit_entries WHERE seq > {ENTRIES - 2}"),
        ENTRIES - 1,
        "tail was cut off",
        needs_checkpoint=True,
    ),
    "rewrite tail": Scenario(
        lambda s: rewrite_tail(s, keep=ENTRIES - 2),
        ENTRIES,
        "differs from the checkpoint",
        needs_checkpoint=True,
    ),
}


def check_scenario(sandbox: Sandbox, scenario: Scenario) -> None:
    """Tamper with a checkpointed chain: verify names the first broken entry and why.

    Without the checkpoint a cut or rewritten tail goes unseen; with it nothing does.
    """
    append_entries(sandbox)
    checkpoints.write_checkpoint(sandbox)
    assert checkpoints.verify_chain(sandbox).ok
    scenario.tamper(sandbox)
    with sandbox.tx() as session:
        bare = audit.verify(session)
    assert bare.ok is scenario.needs_checkpoint, bare
    report = checkpoints.verify_chain(sandbox, checkpoint_after=True)
    assert not report.ok, report
    assert report.first_broken == scenario.first_broken, report
    assert report.reason and scenario.reason in report.reason, report
    assert report.checkpoints == 1
    # A failed verify signs nothing: the broken head never becomes a checkpoint.
    lines = checkpoints.default_file(sandbox).read_text().splitlines()
    assert len(lines) == 1
