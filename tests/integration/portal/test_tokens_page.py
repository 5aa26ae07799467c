"""The tokens page: each person's own tokens, an admin everyone's; issue shown once, revoke."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

from tests.clients import Login, Token, csrf_of

LABEL = re.compile(r'data-token="(\d+)" data-state="(\w+)"')


def issue(client: FlaskClient, **form: str) -> tuple[int, str]:
    answer = client.post("/tokens", data={"csrf_token": csrf_of(client, "/tokens"), **form})
    return answer.status_code, answer.get_data(as_text=True)


def test_tokens_page_issue_shows_token_once(login: Login) -> None:
    analyst = login("analyst")
    status, html = issue(analyst, label="laptop", lifetime_days="2")
    assert status == 201 and 'id="new-token"' in html and "laptop" in html
    again = analyst.get("/tokens").get_data(as_text=True)
    assert 'id="new-token"' not in again and "laptop" in again


def test_tokens_page_bad_lifetime_names_the_limit(login: Login) -> None:
    status, html = issue(login("analyst"), label="x", lifetime_days="99")
    assert status == 400 and "1 到 7" in html and 'id="new-token"' not in html


def test_tokens_page_admin_sees_everyone(login: Login, token: Token) -> None:
    token("analyst")
    html = login("admin").get("/tokens").get_data(as_text=True)
    assert "所有用户的令牌" in html and "<td>analyst</td>" in html
    mine = login("analyst2").get("/tokens").get_data(as_text=True)
    assert "<td>analyst</td>" not in mine and 'id="no-tokens"' in mine


def test_tokens_page_revoke_own_and_not_anothers(login: Login, token: Token) -> None:
    token("analyst")
    analyst = login("analyst")
    [(theirs, _)] = LABEL.findall(analyst.get("/tokens").get_data(as_text=True))
    other = login("analyst2")
    refused = other.post(f"/tokens/{theirs}/revoke", data={"csrf_token": csrf_of(other, "/tokens")})
    assert refused.status_code == 404
    revoked = analyst.post(
        f"/tokens/{theirs}/revoke", data={"csrf_token": csrf_of(analyst, "/tokens")}
    )
    assert revoked.status_code == 303
    assert LABEL.findall(analyst.get("/tokens").get_data(as_text=True)) == [(theirs, "revoked")]


def test_tokens_page_needs_login(client: FlaskClient) -> None:
    answer = client.get("/tokens")
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]
