"""contest submissions: the runs' scores, the public boards' Ladder states, final boards, disputes

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tracks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("grant_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("withheld", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(
            sa.Column("event", sa.String(length=130), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("baseline", sa.Text(), nullable=False, server_default=""))
        batch_op.create_foreign_key("fk_tracks_grant", "grants", ["grant_id"], ["id"])
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("is_baseline", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("disqualified_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("disqualified_reason", sa.Text(), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("merged_into", sa.String(length=32), nullable=True))
    op.create_table(
        "submissions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("track_id", sa.String(length=32), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("submitted_by", sa.Integer(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("code_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("failed_in", sa.String(length=16), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("smoke_log", sa.Text(), nullable=True),
        sa.Column("smoke_score", sa.Float(), nullable=True),
        sa.Column("shown_score", sa.Float(), nullable=True),
        sa.Column("shown_low", sa.Float(), nullable=True),
        sa.Column("shown_high", sa.Float(), nullable=True),
        sa.Column("improved", sa.Boolean(), nullable=True),
        sa.Column("certificate", sa.JSON(), nullable=True),
        sa.Column("selected", sa.Boolean(), nullable=False),
        sa.Column("final_status", sa.String(length=16), nullable=True),
        sa.Column("final_score", sa.Float(), nullable=True),
        sa.Column("final_low", sa.Float(), nullable=True),
        sa.Column("final_high", sa.Float(), nullable=True),
        sa.Column("final_error", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["submitted_by"], ["users.id"]),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"]),
        sa.ForeignKeyConstraint(["track_id"], ["tracks.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_submissions_track_team", ["track_id", "team_id", "created_at"], unique=False
        )
    op.create_table(
        "leaderboard_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("track_id", sa.String(length=32), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("shown_score", sa.Float(), nullable=False),
        sa.Column("shown_low", sa.Float(), nullable=False),
        sa.Column("shown_high", sa.Float(), nullable=False),
        sa.Column("submission_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["submission_id"], ["submissions.id"]),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"]),
        sa.ForeignKeyConstraint(["track_id"], ["tracks.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("leaderboard_entries", schema=None) as batch_op:
        batch_op.create_index("ix_leaderboard_track_team", ["track_id", "team_id"], unique=True)
    op.create_table(
        "final_boards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("track_id", sa.String(length=32), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("certificate", sa.JSON(), nullable=False),
        sa.Column("published_by", sa.String(length=64), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["track_id"], ["tracks.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("track_id"),
    )
    op.create_table(
        "contest_disputes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contest_id", sa.String(length=32), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("submission_id", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("raised_by", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["contest_id"], ["contests.id"]),
        sa.ForeignKeyConstraint(["submission_id"], ["submissions.id"]),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"]),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("contest_disputes")
    op.drop_table("final_boards")
    with op.batch_alter_table("leaderboard_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_leaderboard_track_team")
    op.drop_table("leaderboard_entries")
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.drop_index("ix_submissions_track_team")
    op.drop_table("submissions")
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.drop_column("merged_into")
        batch_op.drop_column("disqualified_reason")
        batch_op.drop_column("disqualified_at")
        batch_op.drop_column("is_baseline")
    with op.batch_alter_table("tracks", schema=None) as batch_op:
        batch_op.drop_constraint("fk_tracks_grant", type_="foreignkey")
        batch_op.drop_column("baseline")
        batch_op.drop_column("event")
        batch_op.drop_column("withheld")
        batch_op.drop_column("grant_id")
