"""audit entries are append-only: the database refuses UPDATE, DELETE and TRUNCATE

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27

The statements are written out here rather than imported from sandbox.audit,
so this revision stays what it was when it ran; a test checks that both build
the same triggers.

On SQLite a later batch_alter_table("audit_entries") would rebuild the table
and lose these triggers with the old one: such a migration must create them
again.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

MESSAGE = "audit entries are append-only"
UPGRADE: dict[str, tuple[str, ...]] = {
    "sqlite": (
        "CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries "
        f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
        "CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries "
        f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
    ),
    "postgresql": (
        "CREATE FUNCTION audit_entries_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN RAISE EXCEPTION USING MESSAGE = '{MESSAGE}: ' || TG_OP || "
        "' refused', ERRCODE = 'insufficient_privilege'; END $$",
        # Statement level, so TRUNCATE (which fires no row trigger) is refused too.
        "CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE OR TRUNCATE "
        "ON audit_entries FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_refuse_change()",
    ),
}
DOWNGRADE: dict[str, tuple[str, ...]] = {
    "sqlite": (
        "DROP TRIGGER IF EXISTS audit_entries_no_delete",
        "DROP TRIGGER IF EXISTS audit_entries_no_update",
    ),
    "postgresql": (
        "DROP TRIGGER IF EXISTS audit_entries_append_only ON audit_entries",
        "DROP FUNCTION IF EXISTS audit_entries_refuse_change()",
    ),
}


def _run(statements: dict[str, tuple[str, ...]]) -> None:
    dialect = op.get_context().dialect.name
    if dialect not in statements:
        # The audit table must refuse changes wherever it lives: an unknown database
        # is refused rather than left with a mutable audit log.
        raise RuntimeError(
            f"the audit table's append-only triggers exist for PostgreSQL and SQLite, "
            f"not for {dialect}"
        )
    for statement in statements[dialect]:
        op.execute(statement)


def upgrade() -> None:
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
