"""Auditors browse the audit log: the JSON API and the web page through Flask's test
client; analysts may not. Refusals, rejections and reviews are in it."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from sandbox.jobs.pipeline import run_job
from sandbox.models import Grant
from tests.clients import Bearer, Login

MASKED_SQL = (
    "SELECT p.district, COUNT(*) AS n FROM visits v "
    "JOIN patients p ON v.person_id = p.person_id GROUP BY p.district"
)


def entries(client: FlaskClient, auditor: dict[str, str], **args: str) -> list[dict[str, Any]]:
    answer = client.get("/api/v1/audit", query_string=args, headers=auditor)
    assert answer.status_code == 200, answer.get_json()
    return list(answer.get_json()["entries"])


def test_api_audit_is_for_auditors_and_admins_only(client: FlaskClient, bearer: Bearer) -> None:
    assert client.get("/api/v1/audit").status_code == 401
    for username in ("analyst", "owner"):
        answer = client.get("/api/v1/audit", headers=bearer(username))
        assert answer.status_code == 403
        assert answer.get_json()["error"]["code"] == "forbidden"
    for username in ("auditor", "admin"):
        answer = client.get("/api/v1/audit", headers=bearer(username))
        assert answer.status_code == 200


def test_api_audit_filters_and_pages(client: FlaskClient, bearer: Bearer) -> None:
    for _ in range(3):
        bearer("analyst")
    client.post("/api/v1/auth/token", json={"username": "analyst", "password": "wrong"})
    auditor = bearer("auditor")
    logins = entries(client, auditor, action="auth.login", actor="analyst")
    assert len(logins) == 3
    assert {(e["actor"], e["action"], e["subject"]) for e in logins} == {
        ("analyst", "auth.login", "analyst")
    }
    failed = entries(client, auditor, action="auth.*", subject="analyst")
    assert [e["action"] for e in failed].count("auth.failed") == 1
    first = client.get(
        "/api/v1/audit",
        query_string={"action": "auth.login", "actor": "analyst", "limit": 2},
        headers=auditor,
    ).get_json()
    assert [e["seq"] for e in first["entries"]] == [e["seq"] for e in logins[:2]]
    rest = entries(
        client,
        auditor,
        action="auth.login",
        actor="analyst",
        after_seq=str(first["next_after_seq"]),
    )
    assert rest == logins[2:]
    bad = client.get("/api/v1/audit", query_string={"limit": "all"}, headers=auditor)
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "limit"
    report = client.get("/api/v1/audit/verify", headers=auditor).get_json()
    assert report["ok"] and report["checkpoints"] == 0


def test_api_rejected_and_refused_jobs_are_audited_without_values(
    app: Flask, client: FlaskClient, bearer: Bearer
) -> None:
    analyst = bearer("analyst")
    phone = "13800138000"
    code = f"SELECT name, COUNT(*) AS n FROM patients WHERE phone = '{phone}' GROUP BY name"
    body = {"dataset": "health", "language": "sql", "mode": "masked", "code": code}
    rejected = client.post("/api/v1/jobs", json=body, headers=analyst)
    assert rejected.status_code == 422
    job_id = rejected.get_json()["error"]["job_id"]

    owner = bearer("owner")
    for grant in client.get("/api/v1/grants", headers=owner).get_json()["grants"]:
        if grant["analyst"] == "analyst":
            assert client.delete(f"/api/v1/grants/{grant['id']}", headers=owner).status_code == 200
    refused = client.post("/api/v1/jobs", json=body | {"code": MASKED_SQL}, headers=analyst)
    assert refused.status_code == 403
    assert app.config["QUEUED"] == []

    auditor = bearer("auditor")
    (entry,) = entries(client, auditor, action="job.rejected", subject=job_id)
    assert entry["actor"] == "policy"
    assert "column.forbidden" in entry["details"]["rules"]
    assert entry["details"]["error"] == "policy_violation"
    everything = entries(client, auditor, limit="500")
    assert phone not in json.dumps(everything, ensure_ascii=False)
    (refusal,) = entries(client, auditor, action="job.refused")
    assert (refusal["actor"], refusal["subject"]) == ("analyst", "health")
    assert refusal["details"] == {"error": "no_active_grant", "mode": "masked"}
    assert [e["action"] for e in entries(client, auditor, action="grant.revoked")]


def test_api_review_decision_is_audited(
    app: Flask, client: FlaskClient, sandbox_instance: Any, bearer: Bearer
) -> None:
    with sandbox_instance.tx() as db:
        db.execute(update(Grant).values(requires_review=True))
    analyst = bearer("analyst")
    body = {"dataset": "health", "language": "sql", "mode": "masked", "code": MASKED_SQL}
    job_id = client.post("/api/v1/jobs", json=body, headers=analyst).get_json()["id"]
    assert run_job(sandbox_instance, job_id) == "pending_review"
    auditor = bearer("auditor")
    answer = client.post(
        f"/api/v1/reviews/{job_id}",
        headers=auditor,
        json={"decision": "approve", "comment": "aggregates only"},
    )
    assert answer.status_code == 200, answer.get_json()
    trail = entries(client, auditor, subject=job_id)
    assert [e["action"] for e in trail] == [
        "job.submitted",
        "job.queued",
        "job.running",
        "job.checking",
        "job.pending_review",
        "job.reviewed",
        "job.released",
    ]
    reviewed = trail[-2]
    assert reviewed["actor"] == "auditor"
    assert reviewed["details"] == {"decision": "approve", "comment": "aggregates only"}
    client.get(f"/api/v1/jobs/{job_id}/result", headers=analyst)
    (download,) = entries(client, auditor, action="result.downloaded", subject=job_id)
    assert download["actor"] == "analyst"


def test_web_audit_page_filters_and_pages(login: Login) -> None:
    analyst = login("analyst")
    assert analyst.get("/audit").status_code == 403
    assert "/audit" not in analyst.get("/").get_data(as_text=True)

    auditor = login("auditor")
    home = auditor.get("/").get_data(as_text=True)
    assert 'href="/audit"' in home and "审计日志" in home
    page = auditor.get("/audit", query_string={"action": "auth.login", "limit": "1"})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert html.count('<tr id="entry-') == 1
    assert "auth.login" in html and 'name="csrf_token"' not in html.split("<main")[1]
    next_link = re.search(r'id="next-page" rel="next"', html)
    assert next_link
    href = re.search(r'<a href="([^"]+)" id="next-page"', html)
    assert href and "after_seq=" in href.group(1) and "action=auth.login" in href.group(1)
    following = auditor.get(href.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert following.count('<tr id="entry-') == 1 and 'id="first-page"' in following
    auditor.get("/lang/en")
    english = auditor.get("/audit", query_string={"since": "not a time"})
    assert english.status_code == 400
    text = english.get_data(as_text=True)
    assert "Audit log" in text and "since must be an ISO 8601" in text
    assert 'value="not a time"' in text  # the form keeps what was typed
