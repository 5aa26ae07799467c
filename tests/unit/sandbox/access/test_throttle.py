"""The login throttle's arithmetic: when failures lock an account, when an address may try."""

from __future__ import annotations

import datetime as dt

from sandbox.access.throttle import address_free_at, lock_end

T0 = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
WINDOW = dt.timedelta(minutes=15)
LOCKOUT = dt.timedelta(minutes=15)


def at(*minutes: float) -> list[dt.datetime]:
    return [T0 + dt.timedelta(minutes=m) for m in minutes]


def test_lock_end_after_limit_failures_within_window() -> None:
    assert lock_end(at(0, 1, 2, 3, 4), limit=5, window=WINDOW, lockout=LOCKOUT) == at(19)[0]


def test_lock_end_none_below_limit() -> None:
    assert lock_end(at(0, 1, 2, 3), limit=5, window=WINDOW, lockout=LOCKOUT) is None


def test_lock_end_none_when_failures_spread_beyond_window() -> None:
    # Never five within any quarter hour: a person mistyping now and then is not locked.
    assert lock_end(at(0, 10, 20, 30, 40, 50), limit=5, window=WINDOW, lockout=LOCKOUT) is None


def test_lock_end_counting_starts_again_after_a_lock() -> None:
    failures = at(0, 1, 2, 3, 4, 20, 21)  # locked 4..19; two more after it
    assert lock_end(failures, limit=5, window=WINDOW, lockout=LOCKOUT) == at(19)[0]
    failures = at(0, 1, 2, 3, 4, 20, 21, 22, 23, 24)
    assert lock_end(failures, limit=5, window=WINDOW, lockout=LOCKOUT) == at(39)[0]


def test_lock_end_ignores_failures_recorded_during_a_lock() -> None:
    failures = at(0, 1, 2, 3, 4, 5, 6, 7, 8)  # 5..8 fell inside the lock: not counted
    assert lock_end(failures, limit=5, window=WINDOW, lockout=LOCKOUT) == at(19)[0]


def test_address_free_at_none_below_limit() -> None:
    assert address_free_at(at(0, 1, 2), limit=4, window=WINDOW, now=at(3)[0]) is None


def test_address_free_at_when_enough_failures_age_out() -> None:
    # Four failures at 0..3 and a limit of 3: two must age out, the second at 1 + 15.
    assert address_free_at(at(0, 1, 2, 3), limit=3, window=WINDOW, now=at(4)[0]) == at(16)[0]


def test_address_free_at_forgets_failures_outside_window() -> None:
    assert address_free_at(at(0, 1, 2, 3), limit=3, window=WINDOW, now=at(17)[0]) is None
