"""released rows: each released job's sketched rows in a table of their own

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27

The differencing check of a new release read every earlier release's sketches
under the grant (about 1 s once a grant had 1,000 releases). With each row's
persons in a column of its own, a worker reads sizes first (and keeps them:
released rows never change) and sketches only where a small difference is
possible. Released jobs' rows are
copied over; ``jobs.disclosure_sketches`` stays (held jobs keep theirs there
until they are released).
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "released_rows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("grant_id", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("table_name", sa.String(length=128), nullable=False),
        sa.Column("keys", sa.JSON(), nullable=False),
        sa.Column("persons", sa.Integer(), nullable=False),
        sa.Column("released", sa.Boolean(), nullable=False),
        sa.Column("sketch", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["grant_id"], ["grants.id"]),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("released_rows", schema=None) as batch_op:
        batch_op.create_index("ix_released_rows_grant_job", ["grant_id", "job_id"], unique=False)

    connection = op.get_bind()
    jobs = sa.table(
        "jobs",
        sa.column("id", sa.String),
        sa.column("grant_id", sa.String),
        sa.column("status", sa.String),
        sa.column("disclosure_sketches", sa.JSON),
    )
    rows = sa.table(
        "released_rows",
        sa.column("grant_id", sa.String),
        sa.column("job_id", sa.String),
        sa.column("table_name", sa.String),
        sa.column("keys", sa.JSON),
        sa.column("persons", sa.Integer),
        sa.column("released", sa.Boolean),
        sa.column("sketch", sa.JSON),
    )
    released = connection.execute(
        sa.select(jobs.c.id, jobs.c.grant_id, jobs.c.disclosure_sketches).where(
            jobs.c.status == "released", jobs.c.disclosure_sketches.is_not(None)
        )
    )
    for job_id, grant_id, stored in released:
        if isinstance(stored, str):
            stored = json.loads(stored)
        if not stored:
            continue
        connection.execute(
            sa.insert(rows),
            [
                {
                    "grant_id": grant_id,
                    "job_id": job_id,
                    "table_name": row["table"],
                    "keys": row["keys"],
                    "persons": row["persons"],
                    "released": row["released"],
                    "sketch": row["sketch"],
                }
                for row in stored
            ],
        )


def downgrade() -> None:
    with op.batch_alter_table("released_rows", schema=None) as batch_op:
        batch_op.drop_index("ix_released_rows_grant_job")
    op.drop_table("released_rows")
