"""What every action shares: one transaction, and one way to audit a refusal.

An action (``grant_access``, ``submit_job``, ``review_job``, …) takes the
sandbox and keyword-only arguments including ``by=``, the person acting. It
opens its own transaction with :func:`transaction`, asks ``policies.permissions``
before it changes or shows anything, and appends its audit entry in that same
transaction. Views and CLI commands parse, call one action and render: they
never open a transaction.

A refusal (``Forbidden``, and so a missing grant) rolls the action back; the
attempt is then kept in the audit log as ``<action>.refused`` in a transaction
of its own, so a second owner probing the first owner's datasets leaves a
trace. Nothing else is audited for a refusal, and only the rule and the error
code go in: never a value from the request.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from sqlalchemy.orm import Session

from policies.permissions import Actor, Person
from sandbox.context import Sandbox
from sandbox.errors import Forbidden
from sandbox.integrity import audit
from sandbox.models import User

MAX_SUBJECT_CHARS = 128


@contextmanager
def transaction(
    sandbox: Sandbox,
    *,
    by: Person,
    action: str,
    subject: str,
    context: Mapping[str, object] | None = None,
) -> Iterator[Session]:
    """The action's one transaction; a refusal raised inside is audited, then raised.

    ``context`` (plain words such as a mode, never request values) goes with the refusal.
    """
    try:
        with sandbox.tx() as session:
            yield session
    except Forbidden as refusal:
        audit_refusal(
            sandbox, by=by, action=action, subject=subject, refusal=refusal, context=context
        )
        raise


def audit_refusal(
    sandbox: Sandbox,
    *,
    by: Person | str,
    action: str,
    subject: str,
    refusal: Forbidden,
    context: Mapping[str, object] | None = None,
) -> None:
    """Keep a refused attempt in the audit log (its own transaction: the action's rolled back)."""
    actor = by if isinstance(by, str) else by.username
    details: dict[str, object] = {"error": refusal.code, **(context or {})}
    if refusal.details.get("rule"):
        details["rule"] = refusal.details["rule"]
    with sandbox.tx() as session:
        audit.append(
            session,
            actor=actor[:64],
            action=f"{action}.refused",
            subject=subject[:MAX_SUBJECT_CHARS],
            details=details,
        )


def actor_of(user: User) -> Actor:
    return Actor(id=user.id, username=user.username, role=user.role)
