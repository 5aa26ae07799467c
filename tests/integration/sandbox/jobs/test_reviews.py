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
from sandbox.models import Grant, Job, ReviewEvent, User
from tests.clients import Bearer
from tests.factories import actor, actor_with_id

MASKED_SQL = (
    "SELECT p.district, COUNT(*) AS n FROM visits v "
    "JOIN patients p ON v.person_id = p.person_id GROUP BY p.district"
)


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
            session, username="auditor2", password="pw-auditor2", role=Role.AUDITOR, by="test"
        )


def require_reviewers(sandbox: Sandbox, count: int, by: str = "owner") -> None:
    reviews.set_reviewers_required(sandbox, by=actor(sandbox, by), dataset="health", count=count)


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
        create_user(session, username="owner2", password="pw", role=Role.OWNER, by="test")
    with pytest.raises(Forbidden):
        require_reviewers(sandbox_instance, 2, by="owner2")
    for bad in (0, 3, True, "2", 2.0):
        with pytest.raises(InvalidRequest):
            require_reviewers(sandbox_instance, bad)  # type: ignore[arg-type]
    require_reviewers(sandbox_instance, 2, by="admin")
    require_reviewers(sandbox_instance, 1)
    with sandbox_instance.tx() as session:
        changes = audit.browse(
            session, audit.AuditFilter.from_args({"action": "dataset.reviewers_required"})
        ).entries
    assert [(e["actor"], e["details"]) for e in changes] == [
        ("admin", {"from": 1, "to": 2}),
        ("owner", {"from": 2, "to": 1}),
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
    for body, expected in (({"reviewers_required": 3}, 400), ({}, 400)):
        assert client.patch("/api/v1/datasets/health", headers=owner, json=body).status_code == (
            expected
        )
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
        refused = CliRunner().invoke(
            main, ["datasets", "reviewers", "health", "1", "--as", "analyst"]
        )
        assert refused.exit_code == 1 and "owner" in refused.output
        assert CliRunner().invoke(main, ["datasets", "reviewers", "health", "3"]).exit_code == 2
    finally:
        context.set_current(None)
    with sandbox_instance.tx() as session:
        assert reviews.reviewers_required(session, "health") == 2
