"""delta ledger

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("delta_total", sa.Float(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("delta_spent", sa.Float(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("max_delta_per_job", sa.Float(), nullable=False, server_default="1e-05")
        )


def downgrade() -> None:
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_column("max_delta_per_job")
        batch_op.drop_column("delta_spent")
        batch_op.drop_column("delta_total")
