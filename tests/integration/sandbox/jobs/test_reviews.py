"""Auditor review through sandbox.jobs.reviews and the pipeline (development runner): holding,
withholding, objection (异议), approval by one or two auditors; and what the analyst can
and cannot see of a held output over the API."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from policies.permissions import Role
from sandbox.access.users import create_user, user_by_name
from sandbox.context import Sandbox
from sandbox.errors import Conflict, Forbidden, InvalidRequest, NotFound
from sandbox.integrity import audit
from sandbox.integrity.signing import verify_certificate
from sandbox.jobs import reviews, submit
from sandbox.jobs.pipeline import run_job
from sandbox.jobs.planning import JobRequest
from sandbox.models import DatasetRecord, Grant, Job, ReviewEvent, User
from tests.clients import Bearer, csrf_of, request_token
from tests.factories import actor, actor_with_id, submit_job

MASKED_SQL = (
    "SELECT p.district, COUNT(*) AS n FROM visits v "
    "JOIN patients p ON v.person_id = p.person_id GROUP BY p.district"
)


AUDITOR2_PASSWORD = "Second-review-2026"


def user(session: Any, name: str) -> User:
    found = user_by_name(session, name)
    assert found is not None
    return found


def held_job(sandbox: Sandbox, *, who: str = "analyst") -> str:
    """A masked job whose grant requires review, run by the development runner."""
    with sandbox.tx() as session:
        analyst = user(session, who)
        session.execute(
            update(Grant).where(Grant.analyst_id == analyst.id).values(requires_review=True)
        )
        analyst_id = analyst.id
    queued: list[str] = []
    job = submit.submit_job(
        sandbox,
        by=actor_with_id(sandbox, analyst_id),
        request=JobRequest(
            dataset="health", language="sql", mode="masked", code=MASKED_SQL, epsilon=None
        ),
        enqueue=queued.append,
    )
    assert run_job(sandbox, job.id) == "pending_review"
    return job.id


def decide(sandbox: Sandbox, job_id: str, by: str, decision: str, comment: str = "ok") -> Job:
    reviews.review_job(
        sandbox, by=actor(sandbox, by), job_id=job_id, decision=decision, comment=comment
    )
    return stored(sandbox, job_id)


def object_to(sandbox: Sandbox, job_id: str, reason: str, by: str = "analyst") -> Job:
    reviews.file_objection(sandbox, by=actor(sandbox, by), job_id=job_id, reason=reason)
    return stored(sandbox, job_id)


def second_auditor(sandbox: Sandbox) -> None:
    with sandbox.tx() as session:
        create_user(
            session,
            username="auditor2",
            password=AUDITOR2_PASSWORD,
            role=Role.AUDITOR,
            by="test",
        )


def require_reviewers(
    sandbox: Sandbox, count: int, by: str = "owner", *, setting: str = "reviewers_required"
) -> dict[str, Any]:
    return reviews.set_review_quorum(
        sandbox, by=actor(sandbox, by), dataset="health", settings={setting: count}
    )


def stored_version(sandbox: Sandbox) -> str:
    with sandbox.tx() as session:
        record = session.scalar(select(DatasetRecord).where(DatasetRecord.name == "health"))
        assert record is not None
        return record.version


def stored(sandbox: Sandbox, job_id: str) -> Job:
    with sandbox.tx() as session:
        return session.get_one(Job, job_id)


def trail(sandbox: Sandbox, job_id: str) -> list[str]:
    with sandbox.tx() as session:
        found = audit.browse(session, audit.AuditFilter.from_args({"subject": job_id}))
        return [e["action"] for e in found.to_dict()["entries"]]


def test_reviews_withhold_objection_approve_releases_with_reviewers(
    sandbox_instance: Sandbox,
) -> None:
    job_id = held_job(sandbox_instance)
    held = stored(sandbox_instance, job_id)
    assert held.result is not None and held.certificate is None

    withheld = decide(sandbox_instance, job_id, "auditor", "withhold", "district counts too fine")
    assert withheld.status == "withheld" and withheld.error_code == "withheld_by_review"
    reopened = object_to(sandbox_instance, job_id, "Every district has more than 10 persons.")
    assert reopened.status == "pending_review" and reopened.error_code is None
    detail = reviews.open_review(
        sandbox_instance, by=actor(sandbox_instance, "auditor"), job_id=job_id
    )
    assert detail["round"] == 2 and detail["approvals"] == []
    assert detail["objection"]["comment"] == "Every district has more than 10 persons."
    assert [e["kind"] for e in detail["history"]] == ["withhold", "objection"]
    assert detail["code"] == MASKED_SQL and detail["analyst"] == "analyst"
    assert detail["outputs"]["tables"][0]["columns"] == ["district", "n"]
    assert detail["grant"]["requires_review"] is True and detail["dataset_version"]

    released = decide(sandbox_instance, job_id, "auditor", "approve", "aggregates only")
    assert released.status == "released"
    assert released.certificate is not None
    verify_certificate(released.certificate, sandbox_instance.release_key.public_pem)
    document = released.certificate["document"]
    assert document["reviewers"] == ["auditor"]
    assert {"check": "review.approved", "reviewers": ["auditor"]} in document["checks"]

    with sandbox_instance.tx() as session:
        events = session.scalars(select(ReviewEvent).where(ReviewEvent.job_id == job_id)).all()
        assert [(e.round, e.kind, e.actor.username) for e in events] == [
            (1, "withhold", "auditor"),
            (2, "objection", "analyst"),
            (2, "approve", "auditor"),
        ]
        assert audit.verify(session).ok
    assert trail(sandbox_instance, job_id)[4:] == [
        "job.pending_review",
        "job.reviewed",
        "job.withheld",
        "job.objected",
        "job.pending_review",
        "review.opened",
        "job.reviewed",
        "job.released",
    ]


def test_reviews_two_auditors_both_approve_before_release(sandbox_instance: Sandbox) -> None:
    second_auditor(sandbox_instance)
    require_reviewers(sandbox_instance, 2)
    job_id = held_job(sandbox_instance)

    first = decide(sandbox_instance, job_id, "auditor", "approve", "fine")
    assert first.status == "pending_review" and first.certificate is None
    with pytest.raises(Conflict, match="another auditor"):
        decide(sandbox_instance, job_id, "auditor", "approve", "still fine")
    released = decide(sandbox_instance, job_id, "auditor2", "approve", "agreed")
    assert released.status == "released"
    assert released.certificate is not None
    assert released.certificate["document"]["reviewers"] == ["auditor", "auditor2"]
    with sandbox_instance.tx() as session:
        (first_entry,) = [
            e
            for e in audit.browse(
                session,
                audit.AuditFilter.from_args(
                    {"subject": job_id, "action": "job.reviewed", "actor": "auditor"}
                ),
            ).entries
        ]
    assert first_entry["details"]["approvals"] == 1 and first_entry["details"]["required"] == 2


def test_reviews_two_auditors_any_withholding_withholds(sandbox_instance: Sandbox) -> None:
    second_auditor(sandbox_instance)
    require_reviewers(sandbox_instance, 2)
    job_id = held_job(sandbox_instance)
    decide(sandbox_instance, job_id, "auditor", "approve")
    withheld = decide(sandbox_instance, job_id, "auditor2", "withhold", "small cells")
    assert withheld.status == "withheld" and withheld.certificate is None
    # The objection starts a new round: the earlier approval does not count in it.
    object_to(sandbox_instance, job_id, "please look again")
    assert decide(sandbox_instance, job_id, "auditor", "approve").status == "pending_review"
    released = decide(sandbox_instance, job_id, "auditor2", "approve")
    assert released.certificate is not None
    assert released.certificate["document"]["reviewers"] == ["auditor", "auditor2"]


def test_reviews_self_review_and_non_auditors_refused(sandbox_instance: Sandbox) -> None:
    job_id = held_job(sandbox_instance)
    with sandbox_instance.tx() as session:
        user(session, "analyst").role = Role.AUDITOR.value  # an analyst who became an auditor
    with pytest.raises(Forbidden, match="own job"):
        decide(sandbox_instance, job_id, "analyst", "approve")
    for who in ("analyst2", "owner", "admin"):
        with pytest.raises(Forbidden):
            decide(sandbox_instance, job_id, who, "approve")
    with pytest.raises(InvalidRequest):
        decide(sandbox_instance, job_id, "auditor", "approve", "   ")
    with pytest.raises(InvalidRequest):
        decide(sandbox_instance, job_id, "auditor", "maybe")
    assert stored(sandbox_instance, job_id).status == "pending_review"
    with sandbox_instance.tx() as session:
        assert session.scalars(select(ReviewEvent)).all() == []


def test_reviews_objection_rules(sandbox_instance: Sandbox) -> None:
    job_id = held_job(sandbox_instance)
    with pytest.raises(Conflict):  # not withheld yet
        object_to(sandbox_instance, job_id, "too early")
    decide(sandbox_instance, job_id, "auditor", "withhold", "no")
    with pytest.raises(NotFound):  # another analyst's job is not even confirmed
        object_to(sandbox_instance, job_id, "mine?", by="analyst2")
    with pytest.raises(InvalidRequest):
        object_to(sandbox_instance, job_id, "")
    with sandbox_instance.tx() as session:  # withheld by a disclosure check, not by an auditor
        session.execute(update(Job).where(Job.id == job_id).values(error_code="disclosure"))
    with pytest.raises(Conflict):
        object_to(sandbox_instance, job_id, "not the auditor's call")


def test_reviews_reviewers_setting_is_the_owners(sandbox_instance: Sandbox) -> None:
    for who in ("analyst", "auditor"):
        with pytest.raises(Forbidden):
            require_reviewers(sandbox_instance, 2, by=who)
    with sandbox_instance.tx() as session:
        create_user(
            session, username="owner2", password="Other-owner-2026", role=Role.OWNER, by="test"
        )
    with pytest.raises(Forbidden):
        require_reviewers(sandbox_instance, 2, by="owner2")
    for bad in (0, 3, True, "2", 2.0):
        with pytest.raises(InvalidRequest):
            require_reviewers(sandbox_instance, bad)  # type: ignore[arg-type]
    with pytest.raises(Forbidden, match="owner"):  # the owner's call, not an admin's
        require_reviewers(sandbox_instance, 2, by="admin")
    with pytest.raises(Forbidden):
        require_reviewers(sandbox_instance, 1, by="admin", setting="unverified_reviewers_required")
    require_reviewers(sandbox_instance, 2)
    require_reviewers(sandbox_instance, 1)
    require_reviewers(sandbox_instance, 2)  # no change, no entry
    settings = require_reviewers(sandbox_instance, 1, setting="unverified_reviewers_required")
    assert settings == {
        "name": "health",
        "version": stored_version(sandbox_instance),
        "reviewers_required": 2,
        "unverified_reviewers_required": 1,
    }
    with pytest.raises(InvalidRequest, match="unverified_reviewers_required must be 1 or 2"):
        require_reviewers(sandbox_instance, 3, setting="unverified_reviewers_required")
    with pytest.raises(InvalidRequest, match="Unknown setting"):
        require_reviewers(sandbox_instance, 1, setting="auditors")
    with sandbox_instance.tx() as session:
        changes = audit.browse(session, audit.AuditFilter.from_args({"subject": "health"})).entries
    assert [
        (e["actor"], e["action"], e["details"])
        for e in changes
        if e["action"].startswith("dataset.") and "reviewers" in e["action"]
    ] == [
        ("owner", "dataset.reviewers_required", {"from": 1, "to": 2}),
        ("owner", "dataset.reviewers_required", {"from": 2, "to": 1}),
        ("owner", "dataset.reviewers_required", {"from": 1, "to": 2}),
        ("owner", "dataset.unverified_reviewers_required", {"from": 2, "to": 1}),
    ]


# --- over the API --------------------------------------------------------------------------------


def test_reviews_analyst_cannot_see_held_outputs_via_api(
    client: FlaskClient, bearer: Bearer, sandbox_instance: Sandbox
) -> None:
    job_id = held_job(sandbox_instance)
    held = stored(sandbox_instance, job_id)
    assert held.result is not None
    counts = [str(row[1]) for row in held.result["tables"][0]["rows"]]
    analyst = bearer("analyst")
    auditor = bearer("auditor")

    status = client.get(f"/api/v1/jobs/{job_id}", headers=analyst).get_json()
    assert status["status"] == "pending_review"
    assert not {"result", "outputs", "log", "code"} & set(status)
    answer = client.get(f"/api/v1/jobs/{job_id}/result", headers=analyst)
    assert answer.status_code == 409
    assert "rows" not in json.dumps(answer.get_json())
    assert client.get("/api/v1/reviews", headers=analyst).status_code == 403
    assert client.get(f"/api/v1/reviews/{job_id}", headers=analyst).status_code == 403
    review = client.get(f"/api/v1/jobs/{job_id}/review", headers=analyst).get_json()
    assert review == {"id": job_id, "status": "pending_review", "review": None}

    (queued,) = client.get("/api/v1/reviews", headers=auditor).get_json()["reviews"]
    assert queued["id"] == job_id and queued["awaits_you"] is True
    assert "outputs" not in queued  # the queue lists; outputs are read one review at a time
    detail = client.get(f"/api/v1/reviews/{job_id}", headers=auditor).get_json()
    assert [str(r[1]) for r in detail["outputs"]["tables"][0]["rows"]] == counts

    answer = client.post(
        f"/api/v1/reviews/{job_id}", headers=auditor, json={"decision": "withhold"}
    )
    assert answer.status_code == 400 and answer.get_json()["error"]["field"] == "comment"
    answer = client.post(
        f"/api/v1/reviews/{job_id}",
        headers=auditor,
        json={"decision": "withhold", "comment": "cells too small"},
    )
    assert answer.get_json() == {
        "id": job_id,
        "status": "withheld",
        "round": 1,
        "approvals": [],
        "reviewers_required": 1,
        "quorum": {
            "required": 1,
            "given": 0,
            "because": "dataset_setting",
            "unverified_outputs": [],
        },
    }
    answer = client.get(f"/api/v1/jobs/{job_id}/review", headers=analyst).get_json()
    assert answer["review"]["can_object"] is True
    assert answer["review"]["history"][0]["comment"] == "cells too small"
    assert "by" not in answer["review"]["history"][0]  # the analyst is not told who
    assert client.get(f"/api/v1/jobs/{job_id}/result", headers=analyst).status_code == 409

    other = bearer("analyst2")
    refused = client.post(f"/api/v1/jobs/{job_id}/objection", headers=other, json={"reason": "x"})
    assert refused.status_code == 404
    answer = client.post(
        f"/api/v1/jobs/{job_id}/objection",
        headers=analyst,
        json={"reason": "each district has many persons"},
    )
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["status"] == "pending_review"
    assert answer.get_json()["review"]["can_object"] is False
    status = client.get(f"/api/v1/jobs/{job_id}", headers=analyst).get_json()
    assert not {"result", "outputs"} & set(status)


def test_reviews_dataset_patch_sets_reviewers(client: FlaskClient, bearer: Bearer) -> None:
    owner = bearer("owner")
    answer = client.patch("/api/v1/datasets/health", headers=owner, json={"reviewers_required": 2})
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["reviewers_required"] == 2
    assert answer.get_json()["unverified_reviewers_required"] == 2  # the default
    answer = client.patch(
        "/api/v1/datasets/health",
        headers=owner,
        json={"reviewers_required": 1, "unverified_reviewers_required": 1},
    )
    assert answer.status_code == 200, answer.get_json()
    settings = answer.get_json()
    assert (settings["reviewers_required"], settings["unverified_reviewers_required"]) == (1, 1)
    for body, field in (
        ({"reviewers_required": 3}, "reviewers_required"),
        ({"unverified_reviewers_required": 0}, "unverified_reviewers_required"),
        ({"unverified_reviewers_required": True}, "unverified_reviewers_required"),
        ({"unverified_reviewers_required": "2"}, "unverified_reviewers_required"),
        ({"auditors": 2}, "auditors"),
        ({}, "reviewers_required"),
    ):
        refused = client.patch("/api/v1/datasets/health", headers=owner, json=body)
        assert refused.status_code == 400, body
        assert refused.get_json()["error"]["field"] == field
    assert client.patch("/api/v1/datasets/health", headers=owner, data="[").status_code == 400
    admin = bearer("admin")
    answer = client.patch(
        "/api/v1/datasets/health", headers=admin, json={"unverified_reviewers_required": 2}
    )
    assert answer.status_code == 403
    assert answer.get_json()["error"]["rule"] == "permission.dataset_owner"
    analyst = bearer("analyst")
    answer = client.patch(
        "/api/v1/datasets/health", headers=analyst, json={"reviewers_required": 1}
    )
    assert answer.status_code == 403
    answer = client.patch("/api/v1/datasets/nope", headers=owner, json={"reviewers_required": 1})
    assert answer.status_code == 404


def test_reviews_cli_sets_reviewers(sandbox_instance: Sandbox) -> None:
    from click.testing import CliRunner

    from sandbox import context
    from sandbox.cli import main

    context.set_current(sandbox_instance)
    try:
        done = CliRunner().invoke(main, ["datasets", "reviewers", "health", "2"])
        assert done.exit_code == 0, done.output
        assert "2 auditor(s)" in done.output and "2 each one the sandbox" in done.output
        lowered = CliRunner().invoke(main, ["datasets", "reviewers", "health", "--unverified", "1"])
        assert lowered.exit_code == 0, lowered.output
        assert "1 each one the sandbox could not verify" in lowered.output
        assert CliRunner().invoke(main, ["datasets", "reviewers", "health"]).exit_code == 2
        assert (
            CliRunner()
            .invoke(main, ["datasets", "reviewers", "health", "--unverified", "3"])
            .exit_code
            == 2
        )
        refused = CliRunner().invoke(
            main, ["datasets", "reviewers", "health", "1", "--as", "analyst"]
        )
        assert refused.exit_code == 1 and "owner" in refused.output
        assert CliRunner().invoke(main, ["datasets", "reviewers", "health", "3"]).exit_code == 2
    finally:
        context.set_current(None)
    with sandbox_instance.tx() as session:
        record = session.scalar(select(DatasetRecord).where(DatasetRecord.name == "health"))
        assert record is not None and record.reviewers_required == 2
        assert record.unverified_reviewers_required == 1


# --- outputs the sandbox could not verify: two distinct auditors unless the owner lowers it ------

UNVERIFIED_PYTHON = (
    "import sandbox_job\nv = sandbox_job.table('visits')\n"
    "sandbox_job.frequency_table('costly', v[v.cost > 1000], by=['department'])\n"
)


def unverified_job(sandbox: Sandbox) -> str:
    """A Python job whose output the sandbox cannot compute again: held for review."""
    job = submit_job(sandbox, UNVERIFIED_PYTHON, language="python")
    assert run_job(sandbox, job.id) == "pending_review"
    return job.id


def test_reviews_unverified_output_needs_two_distinct_auditors_by_default(
    sandbox_instance: Sandbox,
) -> None:
    second_auditor(sandbox_instance)
    job_id = unverified_job(sandbox_instance)
    detail = reviews.open_review(
        sandbox_instance, by=actor(sandbox_instance, "auditor"), job_id=job_id
    )
    assert detail["quorum"] == {
        "required": 2,
        "given": 0,
        "because": "unverified_output",
        "unverified_outputs": ["costly"],
    }
    first = decide(sandbox_instance, job_id, "auditor", "approve", "department counts")
    assert first.status == "pending_review" and first.certificate is None
    with pytest.raises(Conflict, match="an auditor counts once: 1 of the 2") as twice:
        decide(sandbox_instance, job_id, "auditor", "approve", "again")
    assert twice.value.details["rule"] == "review.distinct_auditors"
    state = reviews.review_job(
        sandbox_instance,
        by=actor(sandbox_instance, "auditor2"),
        job_id=job_id,
        decision="approve",
        comment="agreed",
    )
    assert state["status"] == "released"
    assert state["quorum"]["given"] == 2 and state["approvals"] == ["auditor", "auditor2"]
    released = stored(sandbox_instance, job_id)
    assert released.certificate is not None
    assert released.certificate["document"]["reviewers"] == ["auditor", "auditor2"]
    with sandbox_instance.tx() as session:
        entries = audit.browse(
            session, audit.AuditFilter.from_args({"subject": job_id, "action": "job.reviewed"})
        ).entries
    assert [e["details"].get("because") for e in entries] == ["unverified_output"] * 2


def test_reviews_unverified_output_one_auditor_once_the_owner_lowers_it(
    sandbox_instance: Sandbox,
) -> None:
    job_id = unverified_job(sandbox_instance)
    require_reviewers(sandbox_instance, 1, setting="unverified_reviewers_required")
    state = reviews.review_job(
        sandbox_instance,
        by=actor(sandbox_instance, "auditor"),
        job_id=job_id,
        decision="approve",
        comment="fine",
    )
    assert state["status"] == "released"
    assert state["quorum"] == {
        "required": 1,
        "given": 1,
        "because": "dataset_setting",
        "unverified_outputs": ["costly"],
    }


def test_reviews_verified_sql_output_needs_the_datasets_number_only(
    sandbox_instance: Sandbox,
) -> None:
    job_id = held_job(sandbox_instance)  # SQL: the sandbox's own engine computed it
    detail = reviews.open_review(
        sandbox_instance, by=actor(sandbox_instance, "auditor"), job_id=job_id
    )
    assert detail["quorum"]["required"] == 1 and detail["quorum"]["unverified_outputs"] == []
    assert decide(sandbox_instance, job_id, "auditor", "approve").status == "released"


def test_reviews_api_two_distinct_auditors_for_unverified_output(
    client: FlaskClient, bearer: Bearer, sandbox_instance: Sandbox
) -> None:
    second_auditor(sandbox_instance)
    job_id = unverified_job(sandbox_instance)
    auditor = bearer("auditor")
    auditor2 = {"Authorization": f"Bearer {request_token(client, 'auditor2', AUDITOR2_PASSWORD)}"}
    (queued,) = client.get("/api/v1/reviews", headers=auditor).get_json()["reviews"]
    assert queued["quorum"]["because"] == "unverified_output" and queued["reviewers_required"] == 2
    approve = {"decision": "approve", "comment": "aggregates only"}
    answer = client.post(f"/api/v1/reviews/{job_id}", headers=auditor, json=approve)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["status"] == "pending_review"
    assert answer.get_json()["quorum"] == {
        "required": 2,
        "given": 1,
        "because": "unverified_output",
        "unverified_outputs": ["costly"],
    }
    twice = client.post(f"/api/v1/reviews/{job_id}", headers=auditor, json=approve)
    assert twice.status_code == 409
    error = twice.get_json()["error"]
    assert error["rule"] == "review.distinct_auditors" and "counts once" in error["message"]
    analyst = client.post(f"/api/v1/reviews/{job_id}", headers=bearer("analyst"), json=approve)
    assert analyst.status_code == 403  # the job's analyst never counts
    answer = client.post(f"/api/v1/reviews/{job_id}", headers=auditor2, json=approve)
    assert answer.get_json()["status"] == "released"
    assert answer.get_json()["quorum"]["given"] == 2


def test_reviews_api_one_auditor_for_unverified_output_when_lowered(
    client: FlaskClient, bearer: Bearer, sandbox_instance: Sandbox
) -> None:
    owner = bearer("owner")
    lowered = client.patch(
        "/api/v1/datasets/health", headers=owner, json={"unverified_reviewers_required": 1}
    )
    assert lowered.status_code == 200 and lowered.get_json()["unverified_reviewers_required"] == 1
    job_id = unverified_job(sandbox_instance)
    answer = client.post(
        f"/api/v1/reviews/{job_id}",
        headers=bearer("auditor"),
        json={"decision": "approve", "comment": "one is enough here"},
    )
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["status"] == "released"
    assert answer.get_json()["quorum"]["required"] == 1


def test_reviews_open_review_leads_with_risk_signals(sandbox_instance: Sandbox) -> None:
    job_id = unverified_job(sandbox_instance)
    detail = reviews.open_review(
        sandbox_instance, by=actor(sandbox_instance, "auditor"), job_id=job_id
    )
    signals = detail["signals"]
    assert signals[0]["kind"] == "verification" and signals[0]["severity"] == "high"
    assert signals[0]["reason"]["message_id"] == "output.unverified.source"
    persons = next(s for s in signals if s["kind"] == "persons")
    assert persons["output"] == "costly" and persons["declared"] is True
    assert persons["fewest"] >= 10 and persons["rows"] == len(
        detail["outputs"]["tables"][0]["rows"]
    )
    severities = [s["severity"] for s in signals]
    order = ("high", "unknown", "medium", "low")
    assert severities == sorted(severities, key=order.index)
    # Nothing but counts, keys the auditor reads beside them, and shares: no sketch.
    assert "sketch" not in json.dumps(signals)


def test_reviews_owner_page_shows_and_changes_the_review_settings(
    login: Any, sandbox_instance: Sandbox
) -> None:
    owner = login("owner")
    page = owner.get("/owner/datasets/health").get_data(as_text=True)
    assert 'id="reviewers-form"' in page
    assert 'id="unverified-reviewers-required">2<' in page
    answer = owner.post(
        "/owner/datasets/health/reviewers",
        data={
            "reviewers_required": "1",
            "unverified_reviewers_required": "1",
            "csrf_token": csrf_of(owner, "/owner/datasets/health"),
        },
    )
    assert answer.status_code == 303
    page = owner.get(answer.headers["Location"]).get_data(as_text=True)
    assert 'id="unverified-reviewers-required">1<' in page
    refused = owner.post(
        "/owner/datasets/health/reviewers",
        data={
            "unverified_reviewers_required": "3",
            "csrf_token": csrf_of(owner, "/owner/datasets/health"),
        },
    )
    assert refused.status_code == 400
    assert "unverified_reviewers_required must be 1 or 2" in refused.get_data(as_text=True)
    admin = login("admin")
    page = admin.get("/owner/datasets/health").get_data(as_text=True)
    assert 'id="reviewers-form"' not in page and 'id="unverified-reviewers-required">1<' in page
    refused = admin.post(
        "/owner/datasets/health/reviewers",
        data={
            "unverified_reviewers_required": "2",
            "csrf_token": csrf_of(admin, "/owner/datasets/health"),
        },
    )
    assert refused.status_code == 403
    with sandbox_instance.tx() as session:
        changes = audit.browse(
            session,
            audit.AuditFilter.from_args({"action": "dataset.unverified_reviewers_required"}),
        ).entries
    assert [(e["actor"], e["details"]) for e in changes] == [("owner", {"from": 2, "to": 1})]


def test_reviews_web_pages_say_why_two_approvals(login: Any, sandbox_instance: Sandbox) -> None:
    job_id = unverified_job(sandbox_instance)
    auditor = login("auditor")
    queue = auditor.get("/reviews").get_data(as_text=True)
    assert 'data-because="unverified_output"' in queue and "0 / 2" in queue
    page = auditor.get(f"/reviews/{job_id}").get_data(as_text=True)
    assert page.index('id="risk-signals"') < page.index('id="held-outputs"')
    assert 'data-severity="high"' in page and "style=" not in page.split('id="risk-signals"')[1]
    answer = auditor.post(
        f"/reviews/{job_id}",
        data={
            "decision": "approve",
            "comment": "ok",
            "csrf_token": csrf_of(auditor, f"/reviews/{job_id}"),
        },
    )
    assert answer.status_code == 303
    again = auditor.post(
        f"/reviews/{job_id}",
        data={
            "decision": "approve",
            "comment": "ok again",
            "csrf_token": csrf_of(auditor, f"/reviews/{job_id}"),
        },
    )
    assert again.status_code == 409
    assert "counts once" in again.get_data(as_text=True)


def test_reviews_lowered_after_one_approval_that_auditor_confirms_the_release(
    sandbox_instance: Sandbox,
) -> None:
    job_id = unverified_job(sandbox_instance)
    assert decide(sandbox_instance, job_id, "auditor", "approve").status == "pending_review"
    require_reviewers(sandbox_instance, 1, setting="unverified_reviewers_required")
    detail = reviews.open_review(
        sandbox_instance, by=actor(sandbox_instance, "auditor"), job_id=job_id
    )
    assert detail["may_decide"] is True and detail["quorum"]["given"] == 1
    released = decide(sandbox_instance, job_id, "auditor", "approve", "confirmed")
    assert released.status == "released"
    assert released.certificate is not None
    assert released.certificate["document"]["reviewers"] == ["auditor"]  # counted once
