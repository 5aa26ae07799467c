"""cached dp answers

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cached_from", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("question_sha256", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.create_index("ix_jobs_question_sha256", ["question_sha256"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_question_sha256")
        batch_op.drop_column("question_sha256")
        batch_op.drop_column("cached_from")
