"""Logging in to the portal through Flask's test client, as a browser or an API client does.

The conftest fixtures `login`, `token` and `bearer` call these; the aliases name their types."""

from __future__ import annotations

import re
from collections.abc import Callable

from flask.testing import FlaskClient

CSRF_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')

Login = Callable[[str], FlaskClient]
"""`login(username)`: a client of its own holding that user's page session."""
Token = Callable[[str], str]
"""`token(username)`: a bearer token issued to that user by the API."""
Bearer = Callable[[str], dict[str, str]]
"""`bearer(username)`: the Authorization header of a fresh token of that user's."""


def csrf_of(client: FlaskClient, path: str) -> str:
    """The CSRF token of the form on the page at `path`, for this client's session."""
    page = client.get(path)
    found = CSRF_TOKEN.search(page.get_data(as_text=True))
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def log_in(client: FlaskClient, username: str, password: str) -> None:
    """Log in through the login form, so the client holds the page session."""
    token = csrf_of(client, "/login")
    answer = client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}
    )
    assert answer.status_code == 303, answer.get_data(as_text=True)


def request_token(client: FlaskClient, username: str, password: str) -> str:
    """Ask the API for a bearer token, as an API client does (audited as a login)."""
    answer = client.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.get_json()
    return str(answer.get_json()["token"])
