"""auditor review: each dataset's number of required auditors, and the review history

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27

Leaves audit_entries alone: on SQLite a batch rebuild of that table would drop
the append-only triggers 0007 created.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        # Existing datasets keep what held before: one auditor's approval releases.
        batch_op.add_column(
            sa.Column("reviewers_required", sa.Integer(), server_default="1", nullable=False)
        )
    op.create_table(
        "review_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("review_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_review_events_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("review_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_review_events_job_id"))
    op.drop_table("review_events")
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_column("reviewers_required")
