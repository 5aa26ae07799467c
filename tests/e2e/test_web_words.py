"""The pages in the reader's language through Flask's test client: findings from their
message id, error pages, dates in the configured time zone."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient

from tests.clients import Login, csrf_of

FORBIDDEN_SQL = "SELECT name, COUNT(*) AS n FROM patients GROUP BY name"
MASKED_SQL = (
    "SELECT p.district, COUNT(*) AS n FROM visits v "
    "JOIN patients p ON v.person_id = p.person_id GROUP BY p.district"
)


def _submit(client: FlaskClient, code: str) -> str:
    token = csrf_of(client, "/jobs/new")
    form = {"dataset": "health", "mode": "masked", "language": "sql", "code": code}
    return client.post("/jobs/new", data=form | {"csrf_token": token}).get_data(as_text=True)


def test_web_findings_follow_the_reader_language(login: Login) -> None:
    client = login("analyst")
    chinese = _submit(client, FORBIDDEN_SQL)
    assert "在负面清单上,不能出现在查询的任何位置" in chinese
    assert "is on the negative list" not in chinese
    client.get("/lang/en")
    english = _submit(client, FORBIDDEN_SQL)
    assert "The column name (姓名) is on the negative list" in english


def test_web_error_page_words_the_status(login: Login) -> None:
    client = login("analyst")
    missing = client.get("/jobs/no-such-job")
    assert missing.status_code == 404
    assert "出错了" in missing.get_data(as_text=True)
    unknown = client.get("/no/such/page").get_data(as_text=True)
    assert "找不到该页面或对象" in unknown
    client.get("/lang/en")
    english = client.get("/no/such/page").get_data(as_text=True)
    assert "Something went wrong" in english and "Not found." in english


def test_web_times_show_in_the_configured_zone(app: Flask, login: Login) -> None:
    client = login("analyst")
    token = csrf_of(client, "/jobs/new")
    form = {"dataset": "health", "mode": "masked", "language": "sql", "code": MASKED_SQL}
    job = client.post("/jobs/new", data=form | {"csrf_token": token}).headers["Location"]
    page = client.get(job).get_data(as_text=True)
    assert re.search(r"\d{4}年\d{1,2}月\d{1,2}日 \d{2}:\d{2}:\d{2} GMT\+08:00", page), page
    client.get("/lang/en")
    assert "GMT+08:00" in client.get(job).get_data(as_text=True)
