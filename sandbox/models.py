"""The metadata database: users, grants, jobs and the audit chain."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def aware(moment: dt.datetime) -> dt.datetime:
    """A stored time with its zone: SQLite gives stored times back without it, and every
    stored time is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def iso(moment: dt.datetime | None) -> str | None:
    """A stored time as ISO 8601 text in UTC with its offset, None kept as None."""
    return aware(moment).isoformat() if moment is not None else None


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class JobStatus(StrEnum):
    SUBMITTED = "submitted"
    REJECTED = "rejected"
    QUEUED = "queued"
    RUNNING = "running"
    FAILED = "failed"
    CHECKING = "checking"
    WITHHELD = "withheld"
    PENDING_REVIEW = "pending_review"
    RELEASED = "released"


# The only moves a job may make (ARCHITECTURE.md, "One job, end to end").
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.SUBMITTED: frozenset({JobStatus.REJECTED, JobStatus.QUEUED}),
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING}),
    JobStatus.RUNNING: frozenset({JobStatus.FAILED, JobStatus.CHECKING}),
    JobStatus.CHECKING: frozenset(
        {JobStatus.WITHHELD, JobStatus.PENDING_REVIEW, JobStatus.RELEASED}
    ),
    JobStatus.PENDING_REVIEW: frozenset({JobStatus.RELEASED, JobStatus.WITHHELD}),
    # The analyst's objection (异议) to an auditor's withholding sends it back for review.
    JobStatus.WITHHELD: frozenset({JobStatus.PENDING_REVIEW}),
}
# Final for the worker: nothing runs a job again from these. Only an objection
# reopens a withheld output, and only for review (sandbox.jobs.reviews).
FINAL_STATES = frozenset(
    {JobStatus.REJECTED, JobStatus.FAILED, JobStatus.WITHHELD, JobStatus.RELEASED}
)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    display_name: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Too many failed logins lock the account until then (sandbox.access.throttle).
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class LoginAttempt(Base):
    """One password login tried, by account name and client address, for the throttle."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_username_at", "username", "at"),
        Index("ix_login_attempts_address_at", "address", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    succeeded: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    label: Mapped[str] = mapped_column(String(64), default="", server_default="")
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)

    user: Mapped[User] = relationship()


class DatasetRecord(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    version: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    row_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # How many distinct auditors must approve an output held for review (1 or 2).
    reviewers_required: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # ... and an output the sandbox could not verify (1 or 2; two unless the owner lowers it).
    unverified_reviewers_required: Mapped[int] = mapped_column(
        Integer, default=2, server_default="2"
    )
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The published version jobs read (DatasetVersion.number), and whether it is still open.
    current: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    status: Mapped[str] = mapped_column(String(16), default="published", server_default="published")
    retired_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DatasetVersion(Base):
    """One published version of a dataset: its definition and policy as they were then.

    Versions never change. Jobs read the current one; its content hash
    (``version``) is what jobs and certificates name.
    """

    __tablename__ = "dataset_versions"
    __table_args__ = (Index("ix_dataset_versions_number", "dataset", "number", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset: Mapped[str] = mapped_column(String(64))
    number: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(64), index=True)
    # The manifest half of the owner's definition (datasets.definition), and the policy text.
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    policy_text: Mapped[str] = mapped_column(Text)
    row_counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    mode: Mapped[str] = mapped_column(String(16), default="new")  # new, append, replace
    published_by: Mapped[str] = mapped_column(String(64))
    published_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ImportStatus(StrEnum):
    STAGING = "staging"  # tables being added to the encrypted staging
    PROFILED = "profiled"  # profiled, a class proposed for every column
    CONFIRMED = "confirmed"  # the owner confirmed every column and the policy
    PUBLISHED = "published"
    DISCARDED = "discarded"


class Import(Base):
    """An owner's import: staged tables (encrypted, the owner's alone) on their way to a
    published version. Nothing of it enters any view before it is published."""

    __tablename__ = "imports"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    dataset: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(16), default="new")  # new, append, replace
    status: Mapped[str] = mapped_column(String(16), default=ImportStatus.STAGING.value)
    # The staging key, wrapped by the master key (datasets.storage).
    staging_key: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Per staged table: rows, columns and where it came from (never a password).
    tables: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Profiles and proposals: data-derived, shown to the owner only.
    profile: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The owner's confirmed definition and policy text.
    definition: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    policy_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    published_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    owner: Mapped[User] = relationship()


class Grant(Base):
    __tablename__ = "grants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    dataset: Mapped[str] = mapped_column(String(64))
    analyst_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    purpose: Mapped[str] = mapped_column(String(64), default="research")
    modes: Mapped[str] = mapped_column(String(32), default="dp,masked")
    epsilon_total: Mapped[float] = mapped_column(Float, default=10.0)
    epsilon_spent: Mapped[float] = mapped_column(Float, default=0.0)
    max_epsilon_per_job: Mapped[float] = mapped_column(Float, default=2.0)
    # δ for (ε, δ) jobs (Gaussian noise); 0 allows pure ε only.
    delta_total: Mapped[float] = mapped_column(Float, default=0.0)
    delta_spent: Mapped[float] = mapped_column(Float, default=0.0)
    max_delta_per_job: Mapped[float] = mapped_column(Float, default=1e-5)
    # The most rows a person may contribute to one dp query; a query may ask for
    # fewer. None: the manifest's bound per table.
    max_rows_per_person: Mapped[int | None] = mapped_column(Integer, nullable=True)
    k_threshold: Mapped[int] = mapped_column(Integer, default=10)
    requires_consent: Mapped[bool] = mapped_column(Boolean, default=True)
    requires_review: Mapped[bool] = mapped_column(Boolean, default=False)
    # "table.column" names the grant opens; empty: every column the policy allows.
    columns: Mapped[list[Any]] = mapped_column(default=list)
    # Per-grant narrowing of the dataset policy's column rules ("table.column": rule).
    column_rules: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    analyst: Mapped[User] = relationship(foreign_keys=[analyst_id])

    @property
    def mode_list(self) -> list[str]:
        return [m for m in self.modes.split(",") if m]

    def is_active(self, now: dt.datetime | None = None) -> bool:
        now = now or utcnow()
        expires = self.expires_at
        if expires.tzinfo is None:  # SQLite hands datetimes back naive
            expires = expires.replace(tzinfo=dt.UTC)
        return self.revoked_at is None and expires > now

    @property
    def epsilon_remaining(self) -> float:
        return max(0.0, self.epsilon_total - self.epsilon_spent)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    analyst_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    grant_id: Mapped[str] = mapped_column(ForeignKey("grants.id"))
    dataset: Mapped[str] = mapped_column(String(64))
    dataset_version: Mapped[str] = mapped_column(String(64), default="")
    language: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(Text)
    code_sha256: Mapped[str] = mapped_column(String(64))
    # SHA-256 of the dataset policy (and grant narrowing) the job was checked against.
    policy_version: Mapped[str] = mapped_column(String(64), default="")
    # A dp job identical to one already released under the same grant gets that
    # job's noisy answer again instead of spending budget on a fresh draw.
    cached_from: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # SHA-256 of the checked query in normal form (case, spacing, comments gone).
    question_sha256: Mapped[str] = mapped_column(String(64), default="", index=True)
    epsilon: Mapped[float] = mapped_column(Float, default=0.0)
    delta: Mapped[float] = mapped_column(Float, default=0.0)
    # dp: the rows each person may contribute, as the analyst asked (None: the default).
    rows_per_person: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.SUBMITTED.value, index=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    findings: Mapped[list[Any]] = mapped_column(default=list)
    runner: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # The container runtime (runsc, runc; None for the development runner) and the
    # runner image's digest the job ran under.
    runtime: Mapped[str | None] = mapped_column(String(16), nullable=True)
    image_digest: Mapped[str | None] = mapped_column(String(80), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    submitted_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    certificate: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Per output row (released or suppressed): its group keys, persons and a sketch of
    # them, for the differencing checks of later releases. Never shown to anyone.
    disclosure_sketches: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    # Every suppressed row and cell of the outputs with every rule it failed: auditors
    # only (a rule says something of the value: a zero, a dominant person).
    suppressions: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # What the job printed: auditors only, never the analyst.
    log: Mapped[str | None] = mapped_column(Text, nullable=True)

    analyst: Mapped[User] = relationship()
    grant: Mapped[Grant] = relationship()


class ReleasedRow(Base):
    """One sketched row (released or suppressed) of a released job's output, kept for the
    differencing checks of later jobs under the same grant; never shown to anyone.

    Written when the job is released, never changed. The group keys and persons
    are columns of their own, so a check reads earlier rows' sizes without their
    sketches and loads sketches only where sizes allow a small difference
    (``sandbox.jobs.released_rows``).
    """

    __tablename__ = "released_rows"
    __table_args__ = (Index("ix_released_rows_grant_job", "grant_id", "job_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    grant_id: Mapped[str] = mapped_column(ForeignKey("grants.id"))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    table_name: Mapped[str] = mapped_column(String(128))
    keys: Mapped[list[Any]] = mapped_column(JSON)
    persons: Mapped[int] = mapped_column(Integer)
    released: Mapped[bool] = mapped_column(Boolean)
    sketch: Mapped[list[Any]] = mapped_column(JSON)


class AuditEntry(Base):
    __tablename__ = "audit_entries"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AccessRequestStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"


class AccessRequest(Base):
    """An analyst asks an owner for a grant: purpose, columns, modes, duration."""

    __tablename__ = "access_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    analyst_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    dataset: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(64))
    justification: Mapped[str] = mapped_column(Text, default="")
    columns: Mapped[list[Any]] = mapped_column(default=list)
    modes: Mapped[str] = mapped_column(String(32))
    epsilon: Mapped[float] = mapped_column(Float, default=0.0)
    days: Mapped[int] = mapped_column(Integer, default=90)
    status: Mapped[str] = mapped_column(String(16), default=AccessRequestStatus.PENDING.value)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    decision_comment: Mapped[str] = mapped_column(Text, default="")
    grant_id: Mapped[str | None] = mapped_column(ForeignKey("grants.id"), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    analyst: Mapped[User] = relationship(foreign_keys=[analyst_id])


class ConsentRecord(Base):
    """One person's consent (个人授权) to one purpose of use, until withdrawn."""

    __tablename__ = "consent_records"
    __table_args__ = (Index("ix_consent_records_lookup", "dataset", "purpose", "person_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset: Mapped[str] = mapped_column(String(64), index=True)
    person_id: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(64))
    given_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ReviewKind(StrEnum):
    APPROVE = "approve"
    WITHHOLD = "withhold"
    OBJECTION = "objection"


class ReviewEvent(Base):
    """One step of a held output's review: an auditor's decision or the analyst's objection.

    A review runs in rounds: the first starts when the job is held, each
    objection starts the next. Approvals count within their round only.
    """

    __tablename__ = "review_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    comment: Mapped[str] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    actor: Mapped[User] = relationship()


class ContestPhase(StrEnum):
    REGISTRATION = "registration"  # teams register and form; nothing is scored yet
    OPEN = "open"  # submissions scored on the public part
    FINAL = "final"  # no new submissions; teams pick their final ones
    CLOSED = "closed"  # the private part scored once, the final board published


class Contest(Base):
    __tablename__ = "contests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200), default="")
    phase: Mapped[str] = mapped_column(String(16), default=ContestPhase.REGISTRATION.value)
    organizer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    max_team_size: Mapped[int] = mapped_column(Integer, default=5)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Track(Base):
    """One task of a contest on a published dataset version, with its split and quotas."""

    __tablename__ = "tracks"
    __table_args__ = (Index("ix_tracks_contest_slug", "contest_id", "slug", unique=True),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    contest_id: Mapped[str] = mapped_column(ForeignKey("contests.id"))
    slug: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200), default="")
    dataset: Mapped[str] = mapped_column(String(64))
    dataset_version: Mapped[str] = mapped_column(String(64))
    task: Mapped[str] = mapped_column(String(16))  # binary, multiclass, regression, survival
    # "table.column" of the label, and the tables whose view columns are the features.
    target: Mapped[str] = mapped_column(String(130))
    features: Mapped[list[Any]] = mapped_column(JSON, default=list)
    metric: Mapped[str] = mapped_column(String(64))
    # The split key (sandbox.contest.splits), wrapped by the master key: never shown.
    split_key: Mapped[dict[str, Any]] = mapped_column(JSON)
    public_share: Mapped[float] = mapped_column(Float, default=0.15)
    private_share: Mapped[float] = mapped_column(Float, default=0.15)
    daily_quota: Mapped[int] = mapped_column(Integer, default=5)
    total_quota: Mapped[int] = mapped_column(Integer, default=100)
    max_running: Mapped[int] = mapped_column(Integer, default=2)
    # The data owner's grant to the organizer under which the track reads the data:
    # its column rules and consent basis shape what teams' code sees.
    grant_id: Mapped[str | None] = mapped_column(ForeignKey("grants.id"), nullable=True)
    # "table.column" names kept from every part (a restatement of the target, say).
    withheld: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Survival tracks: the target is the follow-up time, this the event flag.
    event: Mapped[str] = mapped_column(String(130), default="")
    # The organizer's baseline submission, scored like any team's.
    baseline: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RegistrationStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class Registration(Base):
    """A person's real-name registration for a contest, approved by its organizer."""

    __tablename__ = "contest_registrations"
    __table_args__ = (
        Index("ix_contest_registrations_person", "contest_id", "user_id", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contest_id: Mapped[str] = mapped_column(ForeignKey("contests.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    real_name: Mapped[str] = mapped_column(String(64))
    institution: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=RegistrationStatus.PENDING.value)
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    user: Mapped[User] = relationship()


class Team(Base):
    __tablename__ = "teams"
    __table_args__ = (Index("ix_teams_contest_name", "contest_id", "name", unique=True),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    contest_id: Mapped[str] = mapped_column(ForeignKey("contests.id"))
    name: Mapped[str] = mapped_column(String(64))
    captain_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # The organizer's own team holds the baselines; it is not ranked.
    is_baseline: Mapped[bool] = mapped_column(Boolean, default=False)
    disqualified_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    disqualified_reason: Mapped[str] = mapped_column(Text, default="")
    # Set when the team was merged into another: it submits no more.
    merged_into: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Membership(Base):
    """A person in a team, or invited to it; one team per person per contest."""

    __tablename__ = "team_members"
    __table_args__ = (Index("ix_team_members_team_user", "team_id", "user_id", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    contest_id: Mapped[str] = mapped_column(ForeignKey("contests.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(16))  # invited, member
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    user: Mapped[User] = relationship()


class SubmissionStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"  # the smoke run on mock data, then fit and predict on hidden data
    SCORED = "scored"
    FAILED = "failed"


class Submission(Base):
    """A team's fit/predict code for a track, and what its runs released.

    Only scores leave: the hidden runs' logs, predictions and models are never
    kept. ``smoke_log`` is the run on mock data, which the team may read whole.
    """

    __tablename__ = "submissions"
    __table_args__ = (Index("ix_submissions_track_team", "track_id", "team_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    track_id: Mapped[str] = mapped_column(ForeignKey("tracks.id"))
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    submitted_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    code: Mapped[str] = mapped_column(Text)
    code_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=SubmissionStatus.QUEUED.value)
    # smoke, hidden; a failure in the smoke run does not count against the quota.
    failed_in: Mapped[str | None] = mapped_column(String(16), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    smoke_log: Mapped[str | None] = mapped_column(Text, nullable=True)
    smoke_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The public score shown after this submission (the Ladder's), and its interval.
    shown_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    shown_low: Mapped[float | None] = mapped_column(Float, nullable=True)
    shown_high: Mapped[float | None] = mapped_column(Float, nullable=True)
    improved: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    certificate: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # As on jobs: the runtime and runner image digest the scoring runs ran under.
    runtime: Mapped[str | None] = mapped_column(String(16), nullable=True)
    image_digest: Mapped[str | None] = mapped_column(String(80), nullable=True)
    selected: Mapped[bool] = mapped_column(Boolean, default=False)
    # The private part, scored once at the close for selected submissions.
    final_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    final_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    final_low: Mapped[float | None] = mapped_column(Float, nullable=True)
    final_high: Mapped[float | None] = mapped_column(Float, nullable=True)
    final_error: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    holder: Mapped[str | None] = mapped_column(String(200), nullable=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LeaderboardEntry(Base):
    """A team's line on a track's public board: the Ladder's state and what it shows."""

    __tablename__ = "leaderboard_entries"
    __table_args__ = (Index("ix_leaderboard_track_team", "track_id", "team_id", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    track_id: Mapped[str] = mapped_column(ForeignKey("tracks.id"))
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    # policies.leaderboard.LadderState as JSON: per-example losses, never shown.
    state: Mapped[str] = mapped_column(Text)
    shown_score: Mapped[float] = mapped_column(Float)
    shown_low: Mapped[float] = mapped_column(Float)
    shown_high: Mapped[float] = mapped_column(Float)
    # The submission that set the shown score; its time breaks ties.
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"))


class FinalBoard(Base):
    """A track's final board: the private scores of the selected submissions, signed."""

    __tablename__ = "final_boards"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    track_id: Mapped[str] = mapped_column(ForeignKey("tracks.id"), unique=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    certificate: Mapped[dict[str, Any]] = mapped_column(JSON)
    published_by: Mapped[str] = mapped_column(String(64))
    published_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DisputeStatus(StrEnum):
    OPEN = "open"
    UPHELD = "upheld"
    REJECTED = "rejected"


class Dispute(Base):
    """A team's objection (异议) to a score or a disqualification, and its decision."""

    __tablename__ = "contest_disputes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contest_id: Mapped[str] = mapped_column(ForeignKey("contests.id"))
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    submission_id: Mapped[str | None] = mapped_column(ForeignKey("submissions.id"), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))  # score, disqualification
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=DisputeStatus.OPEN.value)
    raised_by: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(Text, default="")
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
