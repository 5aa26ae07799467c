"""The web pages through Flask's test client (no browser): CSRF, access, form answers."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from sandbox.models import AuditEntry
from tests.clients import Login, csrf_of

MASKED_SQL = (
    "SELECT p.district, COUNT(*) AS n FROM visits v "
    "JOIN patients p ON v.person_id = p.person_id GROUP BY p.district"
)


@pytest.fixture
def credentials(sandbox_instance: Any) -> dict[str, str]:
    return dict(sandbox_instance.credentials)


def submit(client: FlaskClient, code: str, **fields: str) -> Any:
    token = csrf_of(client, "/jobs/new")
    form = {"dataset": "health", "mode": "masked", "language": "sql", "code": code}
    return client.post("/jobs/new", data=form | fields | {"csrf_token": token})


def test_web_login_without_csrf_token_is_400(
    client: FlaskClient, credentials: dict[str, str]
) -> None:
    client.get("/login")
    answer = client.post("/login", data={"username": "analyst", "password": credentials["analyst"]})
    assert answer.status_code == 400
    assert "user_id" not in _session(client)


def test_web_job_submit_without_csrf_token_is_400(app: Flask, login: Login) -> None:
    client = login("analyst")
    form = {"dataset": "health", "mode": "masked", "language": "sql", "code": MASKED_SQL}
    assert client.post("/jobs/new", data=form).status_code == 400
    wrong = form | {"csrf_token": "not-the-token"}
    assert client.post("/jobs/new", data=wrong).status_code == 400
    assert app.config["QUEUED"] == []


def test_web_logout_without_csrf_token_is_400(login: Login) -> None:
    client = login("analyst")
    assert client.post("/logout").status_code == 400
    assert client.get("/").status_code == 200  # still logged in


def test_web_job_page_of_another_analyst_is_404(login: Login) -> None:
    other = login("analyst2")
    answer = submit(other, MASKED_SQL)
    assert answer.status_code == 303
    job_path = answer.headers["Location"]
    assert other.get(job_path).status_code == 200

    client = login("analyst")
    page = client.get(job_path)
    assert page.status_code == 404
    assert MASKED_SQL not in page.get_data(as_text=True)


def test_web_home_without_login_redirects_to_login(client: FlaskClient) -> None:
    answer = client.get("/")
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/login")


def test_web_login_wrong_password_is_401_with_message_and_audited(
    client: FlaskClient, sandbox_instance: Any
) -> None:
    token = csrf_of(client, "/login")
    answer = client.post(
        "/login", data={"username": "analyst", "password": "wrong", "csrf_token": token}
    )
    assert answer.status_code == 401
    assert "用户名或密码错误" in answer.get_data(as_text=True)
    with sandbox_instance.tx() as db:
        failed = db.scalars(select(AuditEntry).where(AuditEntry.action == "auth.failed")).all()
        assert [entry.subject for entry in failed] == ["analyst"]


def test_web_job_rejected_shows_findings_and_keeps_code(app: Flask, login: Login) -> None:
    client = login("analyst")
    code = "SELECT name, COUNT(*) AS n FROM patients GROUP BY name"
    answer = submit(client, code)
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert "column.forbidden" in html
    assert "SELECT name, COUNT(*) AS n FROM patients GROUP BY name</textarea>" in html
    assert app.config["QUEUED"] == []


def test_web_job_submitted_redirects_to_its_page(app: Flask, login: Login) -> None:
    client = login("analyst")
    answer = submit(client, MASKED_SQL)
    assert answer.status_code == 303
    (job_id,) = app.config["QUEUED"]
    assert answer.headers["Location"] == f"/jobs/{job_id}"
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert 'http-equiv="refresh" content="2"' in page  # queued: the page polls itself
    assert job_id in client.get("/jobs").get_data(as_text=True)


def test_web_language_switch_refuses_offsite_redirect(client: FlaskClient) -> None:
    for offsite in ("//example.com/x", "/\t/example.com", "/\\example.com", "https://example.com"):
        answer = client.get("/lang/en", query_string={"next": offsite})
        assert answer.headers["Location"] == "/", offsite
    assert client.get("/lang/en?next=/jobs").headers["Location"] == "/jobs"
    assert "Log in" in client.get("/login").get_data(as_text=True)
    assert client.get("/lang/fr").status_code == 404


def _session(client: FlaskClient) -> dict[str, Any]:
    with client.session_transaction() as session:
        return dict(session)


def test_web_session_cookie_reads_but_cannot_write_the_api(app: Flask, login: Login) -> None:
    client = login("analyst")
    assert client.get("/api/v1/budget").status_code == 200
    answer = client.post(
        "/api/v1/jobs",
        json={"dataset": "health", "language": "sql", "mode": "masked", "code": MASKED_SQL},
    )
    assert answer.status_code == 401
    assert app.config["QUEUED"] == []


def test_web_dp_job_takes_a_rows_per_person_bound(
    app: Flask, login: Login, sandbox_instance: Any
) -> None:
    from sandbox.models import Job

    client = login("analyst")
    form = client.get("/jobs/new").get_data(as_text=True)
    assert 'name="rows_per_person"' in form
    code = "SELECT department, COUNT(*) AS n FROM visits GROUP BY department"
    answer = submit(client, code, mode="dp", epsilon="0.5", rows_per_person="3")
    assert answer.status_code == 303, answer.get_data(as_text=True)
    (job_id,) = app.config["QUEUED"]
    with sandbox_instance.tx() as session:
        assert session.get_one(Job, job_id).rows_per_person == 3
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "Rows per person" in page or "每人计入行数" in page

    bad = submit(client, code, mode="dp", epsilon="0.5", rows_per_person="three")
    assert bad.status_code == 400
    html = bad.get_data(as_text=True)
    assert "three" in html  # the form comes back with what was typed
    assert ("whole number" in html) or ("整数" in html)

    too_many = submit(client, code, mode="dp", epsilon="0.5", rows_per_person="100000")
    assert too_many.status_code in (400, 422), too_many.status_code
    assert app.config["QUEUED"] == [job_id]  # neither was queued
