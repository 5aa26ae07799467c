"""Users, passwords and API tokens."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from policies.permissions import Actor, Role
from sandbox.actions import actor_of
from sandbox.context import Sandbox
from sandbox.errors import InvalidRequest, NotFound, Unauthenticated
from sandbox.integrity import audit
from sandbox.models import ApiToken, User, utcnow

TOKEN_LIFETIME = dt.timedelta(days=7)


def create_user(
    session: Session, *, username: str, password: str, role: Role, by: str, display_name: str = ""
) -> User:
    if session.scalar(select(User).where(User.username == username)):
        raise InvalidRequest(f"A user named {username} exists already.")
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


def authenticate(session: Session, *, username: str, password: str) -> User:
    user = user_by_name(session, username)
    if user is None or not check_password_hash(user.password_hash, password):
        audit.append(session, actor=username[:64], action="auth.failed", subject=username[:128])
        raise Unauthenticated("Wrong username or password.")
    audit.append(session, actor=user.username, action="auth.login", subject=user.username)
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, *, user: User) -> str:
    token = secrets.token_urlsafe(32)
    session.add(
        ApiToken(user_id=user.id, token_hash=_digest(token), expires_at=utcnow() + TOKEN_LIFETIME)
    )
    audit.append(session, actor=user.username, action="auth.token_issued", subject=user.username)
    return token


def user_for_token(session: Session, token: str) -> User:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(token)))
    if row is None:
        raise Unauthenticated("The token is not valid.")
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=dt.UTC)
    if expires <= utcnow():
        raise Unauthenticated("The token has expired; ask for a new one.")
    return row.user


def user_named(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"There is no user {username}.")
    return user


# --- actions: what the portal and the CLI call --------------------------------------------


def log_in(sandbox: Sandbox, *, username: str, password: str) -> Actor:
    """Check a password; a failed attempt is committed to the audit log, then refused."""
    failure: Unauthenticated | None = None
    with sandbox.tx() as session:
        try:
            user = authenticate(session, username=username, password=password)
        except Unauthenticated as error:
            failure = error  # raised after the commit, so the audit keeps the failed login
        else:
            return actor_of(user)
    raise failure


def log_in_for_token(sandbox: Sandbox, *, username: str, password: str) -> tuple[str, Actor]:
    """A new API token for the person whose password this is."""
    actor = log_in(sandbox, username=username, password=password)
    return token_for(sandbox, username=actor.username), actor


def token_for(sandbox: Sandbox, *, username: str) -> str:
    """An API token for ``username`` (the CLI's operator command, and after a login)."""
    with sandbox.tx() as session:
        return issue_token(session, user=user_named(session, username))


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
