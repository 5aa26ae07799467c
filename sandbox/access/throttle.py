"""Login throttling, per account and per client address, from the recorded attempts.

Every password tried is recorded (``LoginAttempt``) as failed *before* it is checked,
in a transaction that first asks whether this account and this address may try now;
the check then runs outside any transaction and marks the attempt succeeded if it
was right. So guesses sent in parallel count as failures while they are checked, and
cannot slip past the limit between a count and the next one.

An account that fails ``login_account_failures`` times within the window is locked
for the lockout (``User.locked_until``, audited ``auth.locked``); a name that is no
account is throttled by the same arithmetic from its attempts, so the answer never
says whether the account exists. Counting starts again after a successful login and
after a lock ends (an admin's unlock ends it at once). An address that fails
``login_address_failures`` times within the window, for any names, is refused until
enough of those failures age out of it (audited ``auth.address_blocked`` once). A
refused attempt checks no password and is not recorded: a flood of them neither
grows the table nor the audit log.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from sandbox.config import Settings
from sandbox.errors import TooManyRequests
from sandbox.integrity import audit
from sandbox.models import LoginAttempt, User, aware, utcnow

log = logging.getLogger(__name__)

# Serialises the admission of logins on PostgreSQL (SQLite's BEGIN IMMEDIATE already
# does): two attempts must not both count the failures before either is recorded.
_ADMISSION_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('sandbox.login_admission'))")
NAME_CHARS = 64  # LoginAttempt.username and .address


@dataclass(frozen=True)
class LoginLimits:
    account_failures: int
    address_failures: int
    window: dt.timedelta
    lockout: dt.timedelta

    @classmethod
    def of(cls, settings: Settings) -> LoginLimits:
        return cls(
            account_failures=settings.login_account_failures,
            address_failures=settings.login_address_failures,
            window=dt.timedelta(seconds=settings.login_window_s),
            lockout=dt.timedelta(seconds=settings.login_lockout_s),
        )


# --- the arithmetic: pure ------------------------------------------------------------------


def lock_end(
    failures: Sequence[dt.datetime], *, limit: int, window: dt.timedelta, lockout: dt.timedelta
) -> dt.datetime | None:
    """When the last lock these failures (oldest first) earned ends, if they earned one.

    ``limit`` failures within ``window`` lock the account for ``lockout`` from the last
    of them; counting starts again after the lock (no failure is recorded during one).
    """
    run: deque[dt.datetime] = deque()
    end: dt.datetime | None = None
    for at in failures:
        if end is not None and at < end:
            continue
        run.append(at)
        while run[0] <= at - window:
            run.popleft()
        if len(run) >= limit:
            end = at + lockout
            run.clear()
    return end


def address_free_at(
    failures: Sequence[dt.datetime], *, limit: int, window: dt.timedelta, now: dt.datetime
) -> dt.datetime | None:
    """When an address with these failures (oldest first) may try again; None: now."""
    recent = [at for at in failures if at > now - window]
    if len(recent) < limit:
        return None
    # It may try once fewer than `limit` failures are left in the window.
    return recent[len(recent) - limit] + window


# --- over the recorded attempts ------------------------------------------------------------


def admit(
    session: Session,
    *,
    username: str,
    address: str,
    limits: LoginLimits,
    now: dt.datetime | None = None,
) -> LoginAttempt:
    """Record an attempt as failed until its password proves right; refuse it first
    (``TooManyRequests`` with ``retry_after`` seconds) if the address or account may
    not try now."""
    now = now or utcnow()
    if session.connection().dialect.name == "postgresql":
        session.execute(_ADMISSION_LOCK)
    address = address[:NAME_CHARS]
    free_at = address_free_at(
        _failures(session, LoginAttempt.address == address, since=now - limits.window),
        limit=limits.address_failures,
        window=limits.window,
        now=now,
    )
    if free_at is not None:
        log.info("login refused: address over the failure limit")
        raise _throttled(
            "Too many failed logins from this address: try again in {seconds} seconds.",
            rule="auth.address_throttled",
            wait=free_at - now,
        )
    until = account_locked_until(session, username=username, limits=limits, now=now)
    if until is not None:
        raise _throttled(
            "Too many failed logins for this account: it is locked; try again in "
            "{seconds} seconds or ask an admin to unlock it.",
            rule="auth.account_locked",
            wait=until - now,
        )
    attempt = LoginAttempt(username=username[:NAME_CHARS], address=address, succeeded=False, at=now)
    session.add(attempt)
    session.flush()
    return attempt


def account_locked_until(
    session: Session, *, username: str, limits: LoginLimits, now: dt.datetime
) -> dt.datetime | None:
    """Until when this name may not log in; None: it may now. A name that is no account
    gets the answer its attempts would give an account, so the two look alike."""
    user = session.scalar(select(User).where(User.username == username))
    since = now - limits.window - limits.lockout
    if user is not None:
        if user.locked_until is not None:
            locked_until = aware(user.locked_until)
            if locked_until > now:
                return locked_until
            since = max(since, locked_until)
        last_success = session.scalar(
            select(func.max(LoginAttempt.at)).where(
                LoginAttempt.username == username, LoginAttempt.succeeded.is_(True)
            )
        )
        if last_success is not None:
            since = max(since, aware(last_success))
    end = lock_end(
        # From the moment a lock ended (inclusive): an attempt made then counts.
        _failures(
            session, LoginAttempt.username == username[:NAME_CHARS], since=since, inclusive=True
        ),
        limit=limits.account_failures,
        window=limits.window,
        lockout=limits.lockout,
    )
    return end if end is not None and end > now else None


def record_failure(
    session: Session, *, attempt_id: int, limits: LoginLimits, now: dt.datetime | None = None
) -> None:
    """After a wrong password: lock the account if this failure reached the limit, and
    note an address that has just reached its own."""
    now = now or utcnow()
    attempt = session.get_one(LoginAttempt, attempt_id)
    user = session.scalar(
        select(User).where(User.username == attempt.username).with_for_update(key_share=True)
    )
    until = account_locked_until(session, username=attempt.username, limits=limits, now=now)
    if user is not None and until is not None:
        already = user.locked_until is not None and aware(user.locked_until) >= until
        if not already:
            user.locked_until = until
            audit.append(
                session,
                actor=attempt.username,
                action="auth.locked",
                subject=attempt.username,
                details={
                    "until": until.isoformat(),
                    "failures": limits.account_failures,
                    "window_s": int(limits.window.total_seconds()),
                },
            )
    recent = _failures(session, LoginAttempt.address == attempt.address, since=now - limits.window)
    if len(recent) == limits.address_failures:
        audit.append(
            session,
            actor=attempt.username,
            action="auth.address_blocked",
            subject=attempt.address,
            details={
                "failures": limits.address_failures,
                "window_s": int(limits.window.total_seconds()),
            },
        )


def record_success(session: Session, *, attempt_id: int) -> None:
    session.get_one(LoginAttempt, attempt_id).succeeded = True


def unlock(session: Session, *, user: User, now: dt.datetime | None = None) -> bool:
    """End the account's lock now (and with it the count of its failures); whether it
    was locked."""
    now = now or utcnow()
    was_locked = user.locked_until is not None and aware(user.locked_until) > now
    user.locked_until = now
    return was_locked


def prune_attempts(session: Session, *, limits: LoginLimits, now: dt.datetime) -> int:
    """Forget the attempts too old to count for any lock or refusal (older than the window
    and the lockout together); how many went. The sweeper calls it."""
    cutoff = now - limits.window - limits.lockout
    old = session.execute(delete(LoginAttempt).where(LoginAttempt.at < cutoff))
    return int(old.rowcount or 0)  # type: ignore[attr-defined]


def _failures(
    session: Session, where: object, *, since: dt.datetime, inclusive: bool = False
) -> list[dt.datetime]:
    after = LoginAttempt.at >= since if inclusive else LoginAttempt.at > since
    moments = session.scalars(
        select(LoginAttempt.at)
        .where(where, LoginAttempt.succeeded.is_(False), after)  # type: ignore[arg-type]
        .order_by(LoginAttempt.at)
    )
    return [aware(at) for at in moments]


def _throttled(message: str, *, rule: str, wait: dt.timedelta) -> TooManyRequests:
    seconds = max(1, math.ceil(wait.total_seconds()))
    return TooManyRequests(message.format(seconds=seconds), rule=rule, retry_after=seconds)
