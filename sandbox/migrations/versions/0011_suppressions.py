"""every suppressed row and cell of a job's outputs with every rule it failed (auditors only)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

The rules a cell failed say something of its value (a zero, a dominant person),
so they leave the analyst's result (``result.disclosure.suppressed_by`` is gone
from it) and are kept beside the job for auditors.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("suppressions", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("suppressions")
