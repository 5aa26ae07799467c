"""The throttle's record of login attempts is kept only as long as it can count: the
sweeper forgets older attempts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import select

from sandbox.access import throttle
from sandbox.models import LoginAttempt, aware, utcnow
from sandbox.worker.sweeper import Sweeper
from tests.factories import make_sandbox


def test_sweep_forgets_attempts_too_old_to_count(tmp_path: Path) -> None:
    sandbox = make_sandbox(tmp_path / "instance", patients=20)
    limits = throttle.LoginLimits.of(sandbox.settings)
    now = utcnow()
    too_old = now - limits.window - limits.lockout - dt.timedelta(seconds=1)
    recent = now - dt.timedelta(seconds=30)
    with sandbox.tx() as session:
        for at in (too_old, too_old, recent):
            session.add(
                LoginAttempt(username="analyst", address="10.0.0.9", succeeded=False, at=at)
            )

    report = Sweeper(sandbox, send=lambda _job_id: True).sweep()

    assert report.login_attempts_pruned == 2
    with sandbox.tx() as session:
        kept = session.scalars(select(LoginAttempt.at)).all()
        # Only those that could still count for a lock or a refusal are kept.
        assert [aware(at) for at in kept] == [recent]
