"""The front door over real HTTP: login throttling and lockout, API tokens (issue, list,
revoke, expiry), security headers on every kind of response, and the cookie's flags."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from werkzeug.serving import make_server

from portal import create_app
from portal.cli import main
from portal.security import CONTENT_SECURITY_POLICY
from sandbox import context
from sandbox.context import Sandbox
from sandbox.models import ApiToken, AuditEntry, LoginAttempt, User
from tests.clients import CSRF_TOKEN
from tests.factories import make_app
from tests.live import LivePortal, start_live_portal

PATIENTS = 200
ACCOUNT_FAILURES = 3


@dataclasses.dataclass
class Answer:
    status: int
    headers: Message
    body: Any


def call(
    base_url: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base_url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            raw, status, found = response.read(), response.status, response.headers
    except urllib.error.HTTPError as error:
        raw, status, found = error.read(), error.code, error.headers
    kind = found.get("Content-Type", "")
    return Answer(status, found, json.loads(raw) if "json" in kind else raw.decode())


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePortal]:
    """The portal alone (no job is run) with a small account limit, on a free port."""
    live = start_live_portal(
        tmp_path_factory.mktemp("door") / "instance",
        worker=False,
        patients=PATIENTS,
        login_account_failures=ACCOUNT_FAILURES,
        login_address_failures=1000,
        login_window_s=600,
        login_lockout_s=600,
    )
    yield live
    live.stop()


def log_in(live: LivePortal, username: str, password: str | None = None, **extra: Any) -> Answer:
    body = {"username": username, "password": password or live.credentials[username], **extra}
    return call(live.base_url, "POST", "/api/v1/auth/token", body)


def web_log_in(live: LivePortal, username: str) -> tuple[int, str, str]:
    """The login form, as a browser posts it: its status, Retry-After and page."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    with opener.open(live.base_url + "/login", timeout=30) as response:
        found = CSRF_TOKEN.search(response.read().decode())
    assert found
    form = {"username": username, "password": live.credentials[username], "csrf_token": found[1]}
    try:
        with opener.open(live.base_url + "/login", urlencode(form).encode(), timeout=30) as answer:
            return answer.status, "", answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Retry-After", ""), error.read().decode()


def audited(sandbox: Sandbox, action: str, subject: str) -> list[AuditEntry]:
    with sandbox.tx() as session:
        found = select(AuditEntry).where(AuditEntry.action == action, AuditEntry.subject == subject)
        return list(session.scalars(found))


def operator(sandbox: Sandbox, *args: str, input: str | None = None) -> Any:
    context.set_current(sandbox)
    try:
        return CliRunner().invoke(main, list(args), input=input)
    finally:
        context.set_current(None)


# --- throttling -----------------------------------------------------------------------------


def test_login_throttle_locks_account_and_refuses_its_right_password(door: LivePortal) -> None:
    for _ in range(ACCOUNT_FAILURES):
        assert log_in(door, "organizer", "wrong-password").status == 401
    locked = log_in(door, "organizer")  # the right password, refused while locked
    assert locked.status == 429, locked.body
    assert 590 <= int(locked.headers["Retry-After"]) <= 600
    error = locked.body["error"]
    assert error["code"] == "rate_limited" and error["rule"] == "auth.account_locked"
    assert "locked" in error["message"] and door.credentials["organizer"] not in str(locked.body)
    [entry] = audited(door.sandbox, "auth.locked", "organizer")
    assert entry.details["failures"] == ACCOUNT_FAILURES
    with door.sandbox.tx() as session:
        user = session.scalars(select(User).where(User.username == "organizer")).one()
        assert user.locked_until is not None
        # The refused attempt checked no password and was not recorded.
        attempts = session.scalars(select(LoginAttempt).where(LoginAttempt.username == "organizer"))
        assert [a.succeeded for a in attempts] == [False] * ACCOUNT_FAILURES


def test_login_throttle_unknown_name_answered_like_an_account(door: LivePortal) -> None:
    answers = [log_in(door, "nobody-here", "wrong-password") for _ in range(ACCOUNT_FAILURES + 1)]
    assert [a.status for a in answers] == [401] * ACCOUNT_FAILURES + [429]
    assert answers[0].body == log_in(door, "analyst", "wrong-password").body  # same 401 body
    refused = answers[-1]
    assert refused.body["error"]["rule"] == "auth.account_locked"
    assert 590 <= int(refused.headers["Retry-After"]) <= 600
    assert audited(door.sandbox, "auth.locked", "nobody-here") == []  # no account to lock


def test_login_throttle_admin_unlock_lets_right_password_in(door: LivePortal) -> None:
    for _ in range(ACCOUNT_FAILURES):
        log_in(door, "auditor", "wrong-password")
    assert log_in(door, "auditor").status == 429
    result = operator(door.sandbox, "users", "unlock", "auditor")
    assert result.exit_code == 0 and "unlocked auditor" in result.output
    assert log_in(door, "auditor").status == 200
    assert [e.details for e in audited(door.sandbox, "auth.unlocked", "auditor")] == [
        {"was_locked": True}
    ]
    # Counting started again at the unlock: one wrong password does not lock it again.
    assert log_in(door, "auditor", "wrong-password").status == 401
    assert log_in(door, "auditor").status == 200


def test_login_throttle_lock_ends_after_lockout(door: LivePortal) -> None:
    for _ in range(ACCOUNT_FAILURES):
        log_in(door, "analyst2", "wrong-password")
    assert log_in(door, "analyst2").status == 429
    # Ten minutes pass: the lock and the failures behind it are in the past.
    past = dt.timedelta(minutes=11)
    with door.sandbox.tx() as session:
        user = session.scalars(select(User).where(User.username == "analyst2")).one()
        assert user.locked_until is not None
        user.locked_until -= past
        for attempt in session.scalars(
            select(LoginAttempt).where(LoginAttempt.username == "analyst2")
        ):
            attempt.at -= past
    assert log_in(door, "analyst2").status == 200


def test_login_throttle_address_refused_after_failures(tmp_path: Path) -> None:
    live = start_live_portal(
        tmp_path / "instance", worker=False, patients=PATIENTS, login_address_failures=4
    )
    try:
        for n in range(4):  # four names, once each: no account reaches its own limit
            # A client cannot pick its address: X-Forwarded-For is not believed by default.
            forged = {"X-Forwarded-For": f"10.0.0.{n}"}
            body = {"username": f"guess{n}", "password": "wrong-password"}
            answer = call(live.base_url, "POST", "/api/v1/auth/token", body, headers=forged)
            assert answer.status == 401
        refused = log_in(live, "analyst")
        assert refused.status == 429 and refused.body["error"]["rule"] == "auth.address_throttled"
        assert int(refused.headers["Retry-After"]) > 800
        assert "address" in refused.body["error"]["message"]
        [entry] = audited(live.sandbox, "auth.address_blocked", "127.0.0.1")
        assert entry.details["failures"] == 4
        # The web login says so too, in the page's words, with the same status.
        status, retry_after, html = web_log_in(live, "analyst")
        assert status == 429 and int(retry_after) > 800
        assert "来自此地址的登录失败次数过多" in html and live.credentials["analyst"] not in html
    finally:
        live.stop()


def test_login_throttle_trusted_proxy_counts_forwarded_address(door: LivePortal) -> None:
    settings = dataclasses.replace(
        door.sandbox.settings, trusted_proxies=1, login_address_failures=2
    )
    client = make_app(Sandbox(settings)).test_client()

    def attempt(address: str, username: str) -> int:
        body = {"username": username, "password": "wrong-password"}
        headers = {"X-Forwarded-For": address}
        return client.post("/api/v1/auth/token", json=body, headers=headers).status_code

    assert [attempt("203.0.113.7", f"proxy-guess{n}") for n in range(3)] == [401, 401, 429]
    assert attempt("203.0.113.8", "proxy-guess9") == 401  # another client behind the proxy


# --- tokens ---------------------------------------------------------------------------------


def test_token_issue_returns_contract_fields(door: LivePortal) -> None:
    answer = log_in(door, "analyst", label="notebook", lifetime_days=2)
    assert answer.status == 200, answer.body
    assert set(answer.body) == {"token", "id", "expires_at"}
    assert answer.headers["Cache-Control"] == "no-store"
    expires = dt.datetime.fromisoformat(answer.body["expires_at"])
    left = expires - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=1, hours=23) < left <= dt.timedelta(days=2)
    [entry] = [
        e
        for e in audited(door.sandbox, "auth.token_issued", "analyst")
        if e.details["token_id"] == answer.body["id"]
    ]
    assert entry.details["label"] == "notebook" and answer.body["token"] not in json.dumps(
        entry.details
    )
    with door.sandbox.tx() as session:
        row = session.get_one(ApiToken, answer.body["id"])
        assert row.token_hash != answer.body["token"] and len(row.token_hash) == 64


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"lifetime_days": 8}, "lifetime_days"),
        ({"lifetime_days": 0}, "lifetime_days"),
        ({"lifetime_days": "7"}, "lifetime_days"),
        ({"lifetime_days": True}, "lifetime_days"),
        ({"label": "x" * 65}, "label"),
        ({"label": 5}, "label"),
    ],
)
def test_token_issue_bad_terms_refused_naming_field(
    door: LivePortal, extra: dict[str, Any], field: str
) -> None:
    answer = log_in(door, "owner", **extra)
    assert answer.status == 400, answer.body
    assert answer.body["error"]["field"] == field and "token" not in answer.body


def test_token_list_own_only_without_secrets(door: LivePortal) -> None:
    mine = log_in(door, "analyst", label="list-me").body
    log_in(door, "owner")
    listed = call(door.base_url, "GET", "/api/v1/tokens", token=mine["token"])
    assert listed.status == 200
    tokens = listed.body["tokens"]
    assert tokens and {t["user"] for t in tokens} == {"analyst"}
    fields = {"id", "label", "created_at", "expires_at", "last_used_at", "revoked_at", "user"}
    assert all(set(t) == fields for t in tokens)
    [this] = [t for t in tokens if t["id"] == mine["id"]]
    assert this["label"] == "list-me" and this["last_used_at"] is not None  # used to list
    assert mine["token"] not in json.dumps(listed.body)


def test_token_list_others_admin_only(door: LivePortal) -> None:
    analyst = log_in(door, "analyst").body["token"]
    admin = log_in(door, "admin").body["token"]
    refused = call(door.base_url, "GET", "/api/v1/tokens?user=owner", token=analyst)
    assert refused.status == 403 and refused.body["error"]["rule"] == "token.others"
    assert call(door.base_url, "GET", "/api/v1/tokens?user=*", token=analyst).status == 403
    theirs = call(door.base_url, "GET", "/api/v1/tokens?user=analyst", token=admin).body
    assert theirs["tokens"] and {t["user"] for t in theirs["tokens"]} == {"analyst"}
    everyone = call(door.base_url, "GET", "/api/v1/tokens?user=*", token=admin).body
    assert {"analyst", "admin"} <= {t["user"] for t in everyone["tokens"]}


def test_token_revoke_own_then_refused(door: LivePortal) -> None:
    issued = log_in(door, "analyst").body
    revoked = call(door.base_url, "DELETE", f"/api/v1/tokens/{issued['id']}", token=issued["token"])
    assert revoked.status == 200 and revoked.body["id"] == issued["id"]
    assert revoked.body["revoked_at"]
    after = call(door.base_url, "GET", "/api/v1/datasets", token=issued["token"])
    assert after.status == 401 and "revoked" in after.body["error"]["message"]
    [entry] = [
        e
        for e in audited(door.sandbox, "auth.token_revoked", "analyst")
        if e.details["token_id"] == issued["id"]
    ]
    assert entry.actor == "analyst"


def test_token_revoke_another_users_is_not_found(door: LivePortal) -> None:
    victim = log_in(door, "owner").body
    other = log_in(door, "analyst").body["token"]
    theirs = call(door.base_url, "DELETE", f"/api/v1/tokens/{victim['id']}", token=other)
    missing = call(door.base_url, "DELETE", "/api/v1/tokens/999999", token=other)
    assert theirs.status == missing.status == 404
    assert theirs.body["error"]["code"] == missing.body["error"]["code"] == "not_found"
    assert call(door.base_url, "GET", "/api/v1/datasets", token=victim["token"]).status == 200


def test_token_revoke_by_admin(door: LivePortal) -> None:
    victim = log_in(door, "owner").body
    admin = log_in(door, "admin").body["token"]
    revoked = call(door.base_url, "DELETE", f"/api/v1/tokens/{victim['id']}", token=admin)
    assert revoked.status == 200
    assert call(door.base_url, "GET", "/api/v1/datasets", token=victim["token"]).status == 401
    with door.sandbox.tx() as session:
        assert session.get_one(ApiToken, victim["id"]).revoked_by == "admin"


def test_token_expired_refused(door: LivePortal) -> None:
    issued = log_in(door, "owner").body
    with door.sandbox.tx() as session:
        row = session.get_one(ApiToken, issued["id"])
        row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    answer = call(door.base_url, "GET", "/api/v1/datasets", token=issued["token"])
    assert answer.status == 401 and "expired" in answer.body["error"]["message"]


def test_token_cli_lists_and_revokes(door: LivePortal) -> None:
    issued = log_in(door, "owner", label="from-cli-test").body
    listed = operator(door.sandbox, "users", "tokens", "owner")
    assert listed.exit_code == 0 and "from-cli-test" in listed.output
    assert issued["token"] not in listed.output
    revoked = operator(door.sandbox, "users", "revoke-token", str(issued["id"]))
    assert revoked.exit_code == 0, revoked.output
    assert call(door.base_url, "GET", "/api/v1/datasets", token=issued["token"]).status == 401


# --- passwords ------------------------------------------------------------------------------


def test_password_cli_refuses_weak_and_sets_good(door: LivePortal) -> None:
    weak = operator(door.sandbox, "users", "password", "owner", input="short\nshort\n")
    assert weak.exit_code != 0 and "at least 12 characters" in weak.output
    assert "Traceback" not in weak.output
    good = "Data-steward-pass-2026"
    before = log_in(door, "owner").body["token"]
    changed = operator(door.sandbox, "users", "password", "owner", input=f"{good}\n{good}\n")
    assert changed.exit_code == 0, changed.output
    # The tokens issued on the old password authenticate nothing any more.
    assert call(door.base_url, "GET", "/api/v1/datasets", token=before).status == 401
    assert log_in(door, "owner", good).status == 200
    assert log_in(door, "owner").status == 401  # the old one no longer
    assert log_in(door, "owner", good).status == 200  # and the success reset the count
    door.credentials["owner"] = good


# --- headers and cookies --------------------------------------------------------------------


def test_security_headers_on_every_kind_of_response(door: LivePortal) -> None:
    token = log_in(door, "admin").body["token"]
    answers = {
        "page": call(door.base_url, "GET", "/login"),
        "api": call(door.base_url, "GET", "/api/v1/datasets", token=token),
        "api error": call(door.base_url, "GET", "/api/v1/datasets"),
        "api 404": call(door.base_url, "GET", "/api/v1/no-such-thing", token=token),
        "page 404": call(door.base_url, "GET", "/no-such-page"),
        "page 400": call(door.base_url, "POST", "/login", {"username": "x"}),
        "static": call(door.base_url, "GET", "/static/style.css"),
    }
    assert [a.status for a in answers.values()] == [200, 200, 401, 404, 404, 400, 200]
    for kind, answer in answers.items():
        assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, kind
        assert answer.headers["X-Content-Type-Options"] == "nosniff", kind
        assert answer.headers["X-Frame-Options"] == "DENY", kind
        assert answer.headers["Referrer-Policy"] == "same-origin", kind
        assert "Strict-Transport-Security" not in answer.headers, kind
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY


def test_session_cookie_httponly_lax_not_secure_over_http(door: LivePortal) -> None:
    cookie = call(door.base_url, "GET", "/login").headers["Set-Cookie"]
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert "httponly" in flags and "samesite=lax" in flags
    assert "secure" not in flags


def test_session_cookie_secure_behind_tls(door: LivePortal) -> None:
    sandbox = Sandbox(dataclasses.replace(door.sandbox.settings, tls=True))
    server = make_server("127.0.0.1", 0, create_app({"SANDBOX": sandbox}), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        answer = call(f"http://127.0.0.1:{server.server_port}", "GET", "/login")
        flags = {part.strip().lower() for part in answer.headers["Set-Cookie"].split(";")}
        assert {"secure", "httponly", "samesite=lax"} <= flags
        assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"
    finally:
        server.shutdown()
