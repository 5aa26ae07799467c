"""The SHA-256 hash-chained audit log.

Each entry's hash covers its own fields and the previous entry's hash, so an
edit, a deletion or a reordering breaks the chain at a point ``verify`` names.
Entries are appended inside the caller's transaction, beside the change they
record: both are written or neither.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from sandbox.models import AuditEntry, utcnow

GENESIS = "0" * 64


def canonical_json(value: Any) -> bytes:
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


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry in the caller's transaction."""
    if session.get_bind().dialect.name == "postgresql":
        # One appender at a time, or two entries would claim the same head.
        session.execute(text("SELECT pg_advisory_xact_lock(7261001)"))
    head = session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
    at = utcnow().isoformat()
    details = json.loads(canonical_json(details or {}))
    entry = AuditEntry(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        subject=subject,
        details=details,
        prev_hash=prev,
        hash=entry_hash(
            seq=seq, at=at, actor=actor, action=action, subject=subject, details=details, prev=prev
        ),
    )
    session.add(entry)
    session.flush()
    return entry


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    head: str
    first_broken: int | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head": self.head,
            "first_broken": self.first_broken,
            "reason": self.reason,
        }


def verify_entries(entries: Iterable[AuditEntry]) -> ChainReport:
    prev, expected_seq, count = GENESIS, 1, 0
    for entry in entries:
        count += 1
        if entry.seq != expected_seq:
            return ChainReport(False, count, prev, entry.seq, f"expected entry {expected_seq}")
        if entry.prev_hash != prev:
            return ChainReport(False, count, prev, entry.seq, "previous hash does not match")
        recomputed = entry_hash(
            seq=entry.seq,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            subject=entry.subject,
            details=entry.details,
            prev=entry.prev_hash,
        )
        if recomputed != entry.hash:
            return ChainReport(False, count, prev, entry.seq, "entry content does not match hash")
        prev, expected_seq = entry.hash, expected_seq + 1
    return ChainReport(True, count, prev)


def verify(session: Session) -> ChainReport:
    entries = session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars()
    return verify_entries(entries.yield_per(5000))
