"""Login attempts a guesser gets per minute, with the instance's throttle settings.

Two measurements:

* over real HTTP (a live portal on a free port): wrong passwords as fast as one client
  sends them, from one address to one account, until the answer is 429; how many were
  checked, and how fast checked and refused attempts are answered;
* over simulated hours (the throttle's own code on the same database, its clock moved
  forward instead of waited for; no password hashing): a guesser trying one account
  every ``--interval`` seconds, and one address spraying a new name every interval.
  Attempts allowed (a password checked) per minute, averaged over ``--hours``.

    .venv/bin/python bench/login_throttle.py [--hours 6] [--interval 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox.access import throttle
from sandbox.context import Sandbox
from sandbox.errors import TooManyRequests
from tests.live import LivePortal, start_live_portal


def post_token(live: LivePortal, username: str, password: str) -> int:
    body = json.dumps({"username": username, "password": password}).encode()
    req = urllib.request.Request(live.base_url + "/api/v1/auth/token", data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def over_http(live: LivePortal, *, refused_samples: int = 50) -> None:
    checked: list[float] = []
    while True:
        start = time.perf_counter()
        status = post_token(live, "analyst", "not-the-password")
        if status == 429:
            break
        assert status == 401, status
        checked.append(time.perf_counter() - start)
    refused = []
    for _ in range(refused_samples):
        start = time.perf_counter()
        assert post_token(live, "analyst", "not-the-password") == 429
        refused.append(time.perf_counter() - start)
    print(f"HTTP, one account from one address: {len(checked)} wrong passwords checked, then 429")
    print(f"  checked attempt answered in {1000 * sum(checked) / len(checked):.1f} ms on average")
    print(f"  refused attempt answered in {1000 * sum(refused) / len(refused):.1f} ms on average")


def simulated(sandbox: Sandbox, *, hours: float, interval: float, spray: bool) -> float:
    """Attempts allowed per minute for a guesser trying every ``interval`` seconds."""
    limits = throttle.LoginLimits.of(sandbox.settings)
    now = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)  # after the HTTP run's attempts
    end = now + dt.timedelta(hours=hours)
    address = "198.51.100.7" if spray else "198.51.100.8"
    allowed = n = 0
    while now < end:
        username = f"sprayed{n}" if spray else "auditor"
        n += 1
        try:
            with sandbox.tx() as session:
                attempt = throttle.admit(
                    session, username=username, address=address, limits=limits, now=now
                )
                attempt_id = attempt.id
        except TooManyRequests:
            pass
        else:
            allowed += 1
            with sandbox.tx() as session:
                throttle.record_failure(session, attempt_id=attempt_id, limits=limits, now=now)
        now += dt.timedelta(seconds=interval)
    return allowed / (hours * 60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=6.0, help="Simulated time per guesser.")
    parser.add_argument("--interval", type=float, default=1.0, help="Seconds between guesses.")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    with tempfile.TemporaryDirectory() as folder:
        live = start_live_portal(Path(folder) / "instance", worker=False, patients=200)
        try:
            s = live.sandbox.settings
            print(
                f"settings: {s.login_account_failures} failures per account and "
                f"{s.login_address_failures} per address in {s.login_window_s} s; "
                f"lockout {s.login_lockout_s} s"
            )
            over_http(live)
            account = simulated(live.sandbox, hours=args.hours, interval=args.interval, spray=False)
            address = simulated(live.sandbox, hours=args.hours, interval=args.interval, spray=True)
        finally:
            live.stop()
    every = f"one guess every {args.interval:g} s for {args.hours:g} h (simulated)"
    print(f"one account, {every}: {account:.2f} attempts/min allowed ({account * 60:.0f}/h)")
    print(
        f"one address, new name each guess, {every}: {address:.2f} attempts/min allowed "
        f"({address * 60:.0f}/h)"
    )


if __name__ == "__main__":
    main()
