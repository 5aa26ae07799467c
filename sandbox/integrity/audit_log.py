"""The audit log as auditors read it: a filtered page, the head, the chain check."""

from __future__ import annotations

from typing import Any

from policies.permissions import Person, user_may_read_audit
from sandbox.context import Sandbox
from sandbox.errors import Forbidden
from sandbox.integrity import audit, checkpoints


def _check_reader(by: Person) -> None:
    if not user_may_read_audit(by):
        raise Forbidden("Only auditors and admins read the audit log.")


def browse_audit(
    sandbox: Sandbox, *, by: Person, filters: audit.AuditFilter
) -> tuple[audit.AuditPage, int]:
    """One page of entries (oldest first) and the sequence number of the newest."""
    _check_reader(by)
    with sandbox.tx() as session:
        last_seq, _ = audit.head(session)
        return audit.browse(session, filters), last_seq


def verify_audit(sandbox: Sandbox, *, by: Person) -> dict[str, Any]:
    _check_reader(by)
    return checkpoints.verify_chain(sandbox).to_dict()
