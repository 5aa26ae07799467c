"""The SHA-256 hash-chained audit log.

Each entry's hash covers its own fields and the previous entry's hash, so an
edit, a deletion or a reordering breaks the chain at a point ``verify`` names.
Entries are appended inside the caller's transaction, beside the change they
record: both are written or neither.

The database refuses UPDATE and DELETE on the table (migration 0007, and the
same triggers when a schema is built from the models). Whoever can get past
that (the table's owner, a superuser) can still rewrite the chain consistently
or cut its tail off; signed checkpoints of the head (``sandbox.integrity.checkpoints``)
are what catch those.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    ColumnElement,
    Text,
    bindparam,
    cast,
    event,
    insert,
    select,
    text,
)
from sqlalchemy.orm import Session

from sandbox.errors import InvalidRequest
from sandbox.models import AuditEntry, utcnow

GENESIS = "0" * 64
# Rows fetched per round trip while verifying: the chain is streamed, never loaded whole.
VERIFY_BATCH = 10_000
DEFAULT_PAGE = 50
MAX_PAGE = 500
# The message both databases answer an UPDATE or DELETE of an entry with.
APPEND_ONLY_MESSAGE = "audit entries are append-only"

# The triggers that make the table append-only, per dialect. Migration 0007 keeps
# its own copy (a migration must not change when this module does);
# tests/unit/sandbox/integrity/test_audit_chain.py checks the two build the same triggers.
# No "%" and no ":name" in these: DDL() formats with "%", text() binds ":name".
APPEND_ONLY_SQL: dict[str, tuple[str, ...]] = {
    "sqlite": (
        "CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries "
        f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END",
        "CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries "
        f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END",
    ),
    "postgresql": (
        "CREATE FUNCTION audit_entries_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN RAISE EXCEPTION USING MESSAGE = '{APPEND_ONLY_MESSAGE}: ' || TG_OP || "
        "' refused', ERRCODE = 'insufficient_privilege'; END $$",
        # Statement level, so TRUNCATE (which fires no row trigger) is refused too.
        "CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE OR TRUNCATE "
        "ON audit_entries FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_refuse_change()",
    ),
}

for _dialect, _statements in APPEND_ONLY_SQL.items():
    for _statement in _statements:
        # A schema made with metadata.create_all (some tests) gets the triggers too.
        event.listen(
            AuditEntry.__table__, "after_create", DDL(_statement).execute_if(dialect=_dialect)
        )


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(
    *, seq: int, at: str, actor: str, action: str, subject: str, details: dict[str, Any], prev: str
) -> str:
    body = {
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "subject": subject,
        "details": details,
        "prev": prev,
    }
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _hash_of_stored(
    seq: int, at: str, actor: str, action: str, subject: str, details_json: str, prev: str
) -> str:
    """:func:`entry_hash` from the details' stored JSON text, without parsing it.

    Equal to ``entry_hash`` when the text is the canonical JSON of the details,
    as :func:`append` stores it: the body is spelled out in canonical key order
    and each string encoded as ``json.dumps`` encodes it.
    """
    q = _json_string
    body = (
        f'{{"action":{q(action)},"actor":{q(actor)},"at":{q(at)},"details":{details_json},'
        f'"prev":{q(prev)},"seq":{seq},"subject":{q(subject)}}}'
    )
    return hashlib.sha256(body.encode()).hexdigest()


_json_string = json.encoder.encode_basestring  # what dumps(..., ensure_ascii=False) uses


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry in the caller's transaction; return it (a copy, not in the session)."""
    connection = session.connection()
    dialect = connection.dialect.name
    if dialect == "postgresql":
        # One appender at a time, or two entries would claim the same head.
        connection.execute(_APPEND_LOCK)
    last = connection.execute(_HEAD).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    at = utcnow().isoformat()
    stored = canonical_json(details or {}).decode()
    details = json.loads(stored)
    values = {
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "subject": subject,
        "details": details,
        "prev_hash": prev,
        "hash": entry_hash(
            seq=seq, at=at, actor=actor, action=action, subject=subject, details=details, prev=prev
        ),
    }
    # Core, not the unit of work: entries are never loaded back or changed here.
    canonical_insert = _CANONICAL_INSERT.get(dialect)
    if canonical_insert is None:  # elsewhere the driver spells the JSON; verify parses it
        connection.execute(insert(AuditEntry), values)
    else:
        row = {name: value for name, value in values.items() if name != "details"}
        connection.execute(canonical_insert, row | {"canonical": stored})
    return AuditEntry(**values)


# The details go in as their canonical JSON text, so verify can hash them unparsed.
_CANONICAL_INSERT = {
    # A json column keeps the text it is given.
    "postgresql": insert(AuditEntry).values(details=cast(bindparam("canonical", type_=Text), JSON)),
    "sqlite": insert(AuditEntry).values(details=bindparam("canonical", type_=Text)),
}
_APPEND_LOCK = text("SELECT pg_advisory_xact_lock(7261001)")
_HEAD = select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)


def head(session: Session) -> tuple[int, str]:
    """The newest entry's sequence number and hash; ``(0, GENESIS)`` for an empty log."""
    row = session.connection().execute(_HEAD).first()
    return (row[0], row[1]) if row else (0, GENESIS)


# --- verifying -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A head someone vouched for: the chain had ``seq`` entries ending in ``head``.

    Its signature is checked where it is read (``sandbox.integrity.checkpoints``); here it
    is only compared with the chain.
    """

    seq: int
    head: str
    at: str


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    head: str
    first_broken: int | None = None
    reason: str | None = None
    # How many checkpoints the chain was compared with.
    checkpoints: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head": self.head,
            "first_broken": self.first_broken,
            "reason": self.reason,
            "checkpoints": self.checkpoints,
        }


# The columns verify reads, in the order verify_rows unpacks them: the details as
# their stored JSON text, which is hashed as it is unless it is spelled otherwise.
CHAIN_COLUMNS = (
    AuditEntry.seq,
    AuditEntry.at,
    AuditEntry.actor,
    AuditEntry.action,
    AuditEntry.subject,
    cast(AuditEntry.details, Text).label("details"),
    AuditEntry.prev_hash,
    AuditEntry.hash,
)


def verify_rows(
    rows: Iterable[Sequence[Any]], checkpoints: Iterable[Checkpoint] = ()
) -> ChainReport:
    """Check rows of :data:`CHAIN_COLUMNS` in ``seq`` order, and the checkpoints against them.

    The first problem met, in chain order, is the one reported.
    """
    pinned: dict[int, list[Checkpoint]] = {}
    for checkpoint in checkpoints:
        pinned.setdefault(checkpoint.seq, []).append(checkpoint)
    compared = sum(len(found) for found in pinned.values())
    prev, count = GENESIS, 0
    stored_hash = _hash_of_stored
    for seq, at, actor, action, subject, details, prev_hash, hash_ in rows:
        count += 1
        if seq != count:
            if seq > count:
                reason = f"entry {count} is missing (the next entry is {seq})"
            else:
                reason = f"entry {seq} is out of place (expected entry {count})"
            return ChainReport(False, count, prev, seq, reason, compared)
        if prev_hash != prev:
            reason = "its previous hash is not the hash of the entry before it"
            return ChainReport(False, count, prev, seq, reason, compared)
        if stored_hash(seq, at, actor, action, subject, details, prev_hash) != hash_ and (
            # Details stored in another spelling (entries written before 0007, or
            # through the ORM): hash their canonical form.
            _parsed_hash(seq, at, actor, action, subject, details, prev_hash) != hash_
        ):
            return ChainReport(
                False, count, prev, seq, "its content does not match its hash", compared
            )
        if seq in pinned:
            for checkpoint in pinned[seq]:
                if checkpoint.head != hash_:
                    reason = (
                        f"its hash differs from the checkpoint signed at {checkpoint.at}: "
                        "the chain was rewritten from here or earlier"
                    )
                    return ChainReport(False, count, prev, seq, reason, compared)
        prev = hash_
    longest = max((seq for seq in pinned if seq > count), default=None)
    if longest is not None:
        signed_at = pinned[longest][0].at
        reason = (
            f"the chain ends at entry {count}, but a checkpoint signed at {signed_at} "
            f"covers {longest} entries: its tail was cut off"
        )
        return ChainReport(False, count, prev, count + 1, reason, compared)
    return ChainReport(True, count, prev, checkpoints=compared)


def _parsed_hash(
    seq: int, at: str, actor: str, action: str, subject: str, details_json: str, prev: str
) -> str | None:
    try:
        details = json.loads(details_json)
    except (TypeError, ValueError):
        return None
    return entry_hash(
        seq=seq, at=at, actor=actor, action=action, subject=subject, details=details, prev=prev
    )


def verify(session: Session, *, checkpoints: Iterable[Checkpoint] = ()) -> ChainReport:
    """Recompute the whole chain, streamed in batches of plain rows (no ORM objects)."""
    query = select(*CHAIN_COLUMNS).order_by(AuditEntry.seq)
    connection = session.connection().execution_options(yield_per=VERIFY_BATCH)
    result = connection.execute(query)
    try:
        # Whole batches, not row by row: per-row fetching costs as much as the hashing.
        return verify_rows(chain.from_iterable(result.partitions()), checkpoints)
    finally:
        result.close()


# --- browsing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    """Which entries an auditor asks for; ``after_seq`` pages forward through them."""

    actor: str | None = None
    # Exact, or a prefix when it ends in "*": "job.*" is every job event.
    action: str | None = None
    subject: str | None = None
    since: dt.datetime | None = None  # inclusive
    until: dt.datetime | None = None  # exclusive
    after_seq: int = 0
    limit: int = DEFAULT_PAGE

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> AuditFilter:
        """Read the query string ``actor, action, subject, since, until, limit, after_seq``.

        Times are ISO 8601 and UTC unless they say otherwise; a bare date as
        ``until`` means the end of that day.
        """

        def text_arg(name: str) -> str | None:
            value = (args.get(name) or "").strip()
            if len(value) > 128:
                raise InvalidRequest(f"{name} must be at most 128 characters.", field=name)
            return value or None

        return cls(
            actor=text_arg("actor"),
            action=text_arg("action"),
            subject=text_arg("subject"),
            since=_moment(args.get("since"), "since", end_of_day=False),
            until=_moment(args.get("until"), "until", end_of_day=True),
            after_seq=_whole(args.get("after_seq"), "after_seq", default=0, low=0, high=2**62),
            limit=_whole(args.get("limit"), "limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE),
        )

    def to_args(self) -> dict[str, str]:
        """The query string that asks for this filter again (for paging links)."""
        args = {
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }
        found = {name: value for name, value in args.items() if value}
        if self.limit != DEFAULT_PAGE:
            found["limit"] = str(self.limit)
        return found


def _moment(raw: str | None, name: str, *, end_of_day: bool) -> dt.datetime | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError as error:
        raise InvalidRequest(
            f"{name} must be an ISO 8601 date or time, e.g. 2026-11-26 or 2026-11-26T08:00:00Z.",
            field=name,
        ) from error
    if end_of_day and len(raw) == 10:  # a bare date: all of that day
        moment += dt.timedelta(days=1)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _whole(raw: str | None, name: str, *, default: int, low: int, high: int) -> int:
    raw = (raw or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidRequest(f"{name} must be a whole number from {low} to {high}.", field=name)
    return int(raw)


@dataclass(frozen=True)
class AuditPage:
    entries: list[dict[str, Any]]
    # Ask again with after_seq=this for the next page; None: this was the last.
    next_after_seq: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"entries": self.entries, "next_after_seq": self.next_after_seq}


def browse(session: Session, filters: AuditFilter) -> AuditPage:
    """One page of entries matching ``filters``, oldest first, after ``filters.after_seq``."""
    query = select(AuditEntry).where(AuditEntry.seq > filters.after_seq)
    if filters.actor:
        query = query.where(AuditEntry.actor == filters.actor)
    if filters.action and filters.action.endswith("*"):
        prefix = filters.action.removesuffix("*")
        query = query.where(AuditEntry.action.startswith(prefix, autoescape=True))
    elif filters.action:
        query = query.where(AuditEntry.action == filters.action)
    if filters.subject:
        query = query.where(AuditEntry.subject == filters.subject)
    at = _time_column(session)
    # Entries store utcnow().isoformat(); a bound in the same form compares as text.
    if filters.since:
        query = query.where(at >= filters.since.isoformat())
    if filters.until:
        query = query.where(at < filters.until.isoformat())
    found = list(session.scalars(query.order_by(AuditEntry.seq).limit(filters.limit + 1)))
    more = len(found) > filters.limit
    found = found[: filters.limit]
    return AuditPage(
        entries=[entry_view(entry) for entry in found],
        next_after_seq=found[-1].seq if more else None,
    )


def _time_column(session: Session) -> ColumnElement[str]:
    # PostgreSQL compares text by the database's locale, which may ignore
    # punctuation; timestamps must compare byte by byte.
    postgres = session.get_bind().dialect.name == "postgresql"
    return AuditEntry.at.collate("C" if postgres else "BINARY")


def entry_view(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at,
        "actor": entry.actor,
        "action": entry.action,
        "subject": entry.subject,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }
