"""Users, passwords and API tokens.

A password is checked against the rule (``sandbox.access.passwords``) when it is set,
and at login only after the throttle (``sandbox.access.throttle``) admitted the
attempt. An API token is shown once, when it is issued; only its SHA-256 is kept,
with its label, lifetime, last use and revocation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from functools import cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from policies.permissions import (
    Actor,
    Person,
    Role,
    user_may_list_tokens_of_others,
    user_may_manage_token,
    user_may_set_password_of,
    user_may_unlock_accounts,
)
from sandbox.access import throttle
from sandbox.access.passwords import require_good_password
from sandbox.actions import actor_of, transaction
from sandbox.context import Sandbox
from sandbox.errors import Forbidden, InvalidRequest, NotFound, Unauthenticated
from sandbox.integrity import audit
from sandbox.models import ApiToken, User, aware, iso, utcnow

# The operator at the instance's command line: they hold the instance folder (its keys,
# its database), so the CLI's user commands act as an admin.
OPERATOR = Actor(id=0, username="cli", role=Role.ADMIN)
LABEL_CHARS = 64
# A token's last use is written at most this often: not one write per API request.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
ALL_USERS = "*"


def create_user(
    session: Session, *, username: str, password: str, role: Role, by: str, display_name: str = ""
) -> User:
    if session.scalar(select(User).where(User.username == username)):
        raise InvalidRequest(f"A user named {username} exists already.")
    require_good_password(password, username=username)
    user = User(
        username=username,
        password_hash=generate_password_hash(password),
        role=role.value,
        display_name=display_name or username,
    )
    session.add(user)
    session.flush()
    audit.append(session, actor=by, action="user.created", subject=username, details={"role": role})
    return user


def user_by_name(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


@cache
def _decoy_hash() -> str:
    """A hash to check a password against when the name is no account, so the answer
    takes as long as for an account."""
    return generate_password_hash(secrets.token_urlsafe(16))


def password_matches(stored_hash: str | None, password: str) -> bool:
    if stored_hash is None:
        check_password_hash(_decoy_hash(), password)
        return False
    return check_password_hash(stored_hash, password)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_terms(
    settings_max_days: int, *, label: object = "", lifetime_days: object = None
) -> tuple[str, dt.timedelta]:
    """A token's label and lifetime as asked, checked: a label of at most 64 printable
    characters; a lifetime of whole days, at most the instance's (its default)."""
    if label is None:
        label = ""
    if not isinstance(label, str) or len(label) > LABEL_CHARS or not label.isprintable():
        raise InvalidRequest(
            f"label must be text of at most {LABEL_CHARS} printable characters.",
            field="label",
            rule="token.label",
        )
    if lifetime_days is None:
        lifetime_days = settings_max_days
    if (
        isinstance(lifetime_days, bool)
        or not isinstance(lifetime_days, int)
        or not 1 <= lifetime_days <= settings_max_days
    ):
        raise InvalidRequest(
            f"lifetime_days must be a whole number of days from 1 to {settings_max_days}.",
            field="lifetime_days",
            rule="token.lifetime",
        )
    return label.strip(), dt.timedelta(days=lifetime_days)


def issue_token(
    session: Session, *, user: User, by: str, label: str = "", lifetime: dt.timedelta
) -> tuple[str, ApiToken]:
    """A new token for ``user``: the token itself (shown once) and its stored row."""
    token = secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=user.id,
        token_hash=_digest(token),
        expires_at=utcnow() + lifetime,
        label=label,
    )
    session.add(row)
    session.flush()
    audit.append(
        session,
        actor=by,
        action="auth.token_issued",
        subject=user.username,
        details={"token_id": row.id, "label": label, "expires_at": iso(row.expires_at)},
    )
    return token, row


def user_for_token(session: Session, token: str) -> User:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(token)))
    if row is None:
        raise Unauthenticated("The token is not valid.")
    if row.revoked_at is not None:
        raise Unauthenticated("The token has been revoked; ask for a new one.")
    now = utcnow()
    if aware(row.expires_at) <= now:
        raise Unauthenticated("The token has expired; ask for a new one.")
    if row.last_used_at is None or aware(row.last_used_at) <= now - LAST_USED_RESOLUTION:
        row.last_used_at = now
    return row.user


def token_row(row: ApiToken) -> dict[str, Any]:
    """What is shown of a token: never the token, never its hash."""
    return {
        "id": row.id,
        "label": row.label,
        "created_at": iso(row.created_at),
        "expires_at": iso(row.expires_at),
        "last_used_at": iso(row.last_used_at),
        "revoked_at": iso(row.revoked_at),
        "user": row.user.username,
    }


def user_named(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"There is no user {username}.")
    return user


# --- actions: what the portal and the CLI call --------------------------------------------


def log_in(sandbox: Sandbox, *, username: str, password: str, address: str) -> Actor:
    """Check a password tried from ``address`` (the client's IP address).

    The throttle admits the attempt first (``TooManyRequests`` when the account is
    locked or the address has failed too often); the password is checked outside any
    transaction (it is slow on purpose); a failure is audited ``auth.failed`` and may
    lock the account. A wrong password and an unknown name get the same answer.
    """
    limits = throttle.LoginLimits.of(sandbox.settings)
    with sandbox.tx() as session:
        attempt = throttle.admit(session, username=username, address=address, limits=limits)
        attempt_id = attempt.id
        user = user_by_name(session, username)
        stored_hash = user.password_hash if user is not None else None
    right = password_matches(stored_hash, password)
    with sandbox.tx() as session:
        if right:
            throttle.record_success(session, attempt_id=attempt_id)
            user = user_named(session, username)
            audit.append(session, actor=user.username, action="auth.login", subject=user.username)
            return actor_of(user)
        audit.append(session, actor=username[:64], action="auth.failed", subject=username[:128])
        throttle.record_failure(session, attempt_id=attempt_id, limits=limits)
    raise Unauthenticated("Wrong username or password.")


def log_in_for_token(
    sandbox: Sandbox,
    *,
    username: str,
    password: str,
    address: str,
    label: object = "",
    lifetime_days: object = None,
) -> dict[str, Any]:
    """A new API token for the person whose password this is: ``{token, id, expires_at}``.
    The label and lifetime are checked before the password, so a bad field costs no
    attempt."""
    token_terms(sandbox.settings.token_lifetime_days, label=label, lifetime_days=lifetime_days)
    actor = log_in(sandbox, username=username, password=password, address=address)
    return issue_api_token(sandbox, by=actor, label=label, lifetime_days=lifetime_days)


def issue_api_token(
    sandbox: Sandbox, *, by: Person, label: object = "", lifetime_days: object = None
) -> dict[str, Any]:
    """A new API token for the person acting (after their login, or from their tokens
    page): ``{token, id, expires_at}``; the token is shown this once."""
    name, lifetime = token_terms(
        sandbox.settings.token_lifetime_days, label=label, lifetime_days=lifetime_days
    )
    with sandbox.tx() as session:
        user = session.get_one(User, by.id)
        token, row = issue_token(
            session, user=user, by=user.username, label=name, lifetime=lifetime
        )
        return {"token": token, "id": row.id, "expires_at": iso(row.expires_at)}


def token_for(sandbox: Sandbox, *, username: str, label: str = "cli") -> str:
    """An API token for ``username`` of the instance's lifetime (the CLI's operator
    command)."""
    lifetime = dt.timedelta(days=sandbox.settings.token_lifetime_days)
    with sandbox.tx() as session:
        token, _ = issue_token(
            session,
            user=user_named(session, username),
            by=OPERATOR.username,
            label=label,
            lifetime=lifetime,
        )
        return token


def list_tokens(sandbox: Sandbox, *, by: Person, user: str | None = None) -> list[dict[str, Any]]:
    """API tokens, newest first: the caller's own; an admin's ``user=NAME`` one user's,
    ``user="*"`` everyone's."""
    user = user or None
    subject = user or by.username
    with transaction(sandbox, by=by, action="auth.tokens_listed", subject=subject) as session:
        query = select(ApiToken).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
        if user is not None and user != by.username and not user_may_list_tokens_of_others(by):
            raise Forbidden("Only an admin may see another user's tokens.", rule="token.others")
        if user == ALL_USERS:
            rows = session.scalars(query)
        else:
            owner = user_named(session, subject) if user is not None else None
            owner_id = owner.id if owner is not None else by.id
            rows = session.scalars(query.where(ApiToken.user_id == owner_id))
        return [token_row(row) for row in rows]


def revoke_token(sandbox: Sandbox, *, by: Person, token_id: int) -> dict[str, Any]:
    """Revoke an API token (its user, or an admin); revoking it again changes nothing.
    Another's token is answered as if it did not exist."""
    with sandbox.tx() as session:
        row = session.get(ApiToken, token_id, with_for_update={"key_share": True})
        if row is None or not user_may_manage_token(by, token_user_id=row.user_id):
            raise NotFound(f"There is no token {token_id} of yours.")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            row.revoked_by = by.username[:64]
            audit.append(
                session,
                actor=by.username,
                action="auth.token_revoked",
                subject=row.user.username,
                details={"token_id": row.id, "label": row.label},
            )
        return {"id": row.id, "revoked_at": iso(row.revoked_at)}


def unlock_account(sandbox: Sandbox, *, by: Person, username: str) -> bool:
    """End a lock after too many failed logins (admins); whether the account was locked."""
    with transaction(sandbox, by=by, action="auth.unlocked", subject=username) as session:
        if not user_may_unlock_accounts(by):
            raise Forbidden("Only an admin may unlock an account.", rule="auth.unlock")
        user = user_named(session, username)
        was_locked = throttle.unlock(session, user=user)
        audit.append(
            session,
            actor=by.username,
            action="auth.unlocked",
            subject=user.username,
            details={"was_locked": was_locked},
        )
        return was_locked


def change_password(sandbox: Sandbox, *, by: Person, username: str, password: str) -> None:
    """Set a new password (its user, or an admin); it must pass the password rule."""
    with transaction(sandbox, by=by, action="user.password_changed", subject=username) as session:
        user = user_named(session, username)
        if not user_may_set_password_of(by, user_id=user.id):
            raise Forbidden("You may change only your own password.", rule="password.others")
        require_good_password(password, username=user.username)
        user.password_hash = generate_password_hash(password)
        # A new password is how a leaked one is recovered from: the tokens issued on the
        # old one stop working with it.
        now = utcnow()
        revoked = []
        for row in session.scalars(
            select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        ):
            row.revoked_at, row.revoked_by = now, by.username[:64]
            revoked.append(row.id)
        audit.append(
            session,
            actor=by.username,
            action="user.password_changed",
            subject=user.username,
            details={"tokens_revoked": revoked},
        )


def actor_for_token(sandbox: Sandbox, *, token: str) -> Actor:
    with sandbox.tx() as session:
        return actor_of(user_for_token(session, token))


def actor_named(sandbox: Sandbox, *, username: str) -> Actor:
    """The CLI's ``--as USER``: who acts, looked up by name."""
    with sandbox.tx() as session:
        return actor_of(user_named(session, username))


def add_user(
    sandbox: Sandbox, *, by: str, username: str, password: str, role: Role, display_name: str = ""
) -> Actor:
    with sandbox.tx() as session:
        return actor_of(
            create_user(
                session,
                username=username,
                password=password,
                role=role,
                by=by,
                display_name=display_name,
            )
        )
