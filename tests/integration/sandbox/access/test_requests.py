"""Grants with a lifecycle: request, approve (narrowed) or deny, expire, revoke at once."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from policies.permissions import Role
from sandbox import context
from sandbox.access import grants
from sandbox.access import requests as access
from sandbox.access.users import create_user, user_by_name
from sandbox.context import Sandbox
from sandbox.errors import Conflict, Forbidden, InvalidRequest, NoActiveGrant, NotFound
from sandbox.integrity import audit
from sandbox.jobs import submit as submission
from sandbox.jobs.pipeline import run_job
from sandbox.jobs.planning import JobRequest
from sandbox.models import AccessRequest, AuditEntry, Grant, Job, User, utcnow
from tests.factories import actor

DP_SQL = "SELECT sex, COUNT(*) AS n FROM patients GROUP BY sex"
ASKED = ["patients.person_id", "patients.sex", "patients.district", "visits.cost"]


def user(session: Any, name: str) -> User:
    found = user_by_name(session, name)
    assert found is not None
    return found


@pytest.fixture
def researcher(sandbox_instance: Sandbox) -> str:
    """An analyst with no grant yet, so only an approved request can open the data."""
    with sandbox_instance.tx() as session:
        create_user(
            session,
            username="researcher",
            password="pw-analyst-one-1",
            role=Role.ANALYST,
            by="test",
        )
    return "researcher"


def file_request(sandbox: Sandbox, who: str = "researcher", **fields: Any) -> str:
    values: dict[str, Any] = {
        "dataset": "health",
        "purpose": "diabetes-cost-study",
        "columns": ASKED,
        "modes": ["dp", "masked"],
        "epsilon": 4.0,
        "days": 60,
        "justification": "Costs of care by district for the 2024 report.",
    } | fields
    return str(
        access.request_access(sandbox, by=actor(sandbox, who), ask=access.AccessAsk(**values))["id"]
    )


def approve(sandbox: Sandbox, request_id: str, who: str = "owner", **narrowing: Any) -> str:
    approved = access.approve_request(
        sandbox,
        by=actor(sandbox, who),
        request_id=request_id,
        approval=access.Approval(**narrowing),
    )
    return str(approved["grant"]["id"])


def submit(sandbox: Sandbox, mode: str = "dp", *, epsilon: float | None = 1.0) -> Job:
    request = JobRequest(
        dataset="health",
        language="sql",
        mode=mode,
        code=DP_SQL,
        epsilon=epsilon if mode == "dp" else None,
    )
    return submission.submit_job(
        sandbox, by=actor(sandbox, "researcher"), request=request, enqueue=lambda _id: None
    )


def audit_details(sandbox: Sandbox, action: str, subject: str) -> dict[str, Any]:
    with sandbox.tx() as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == action, AuditEntry.subject == subject)
        ).one()
        assert audit.verify(session).ok
        return dict(entry.details)


def test_access_request_filed_pending_and_audited(
    sandbox_instance: Sandbox, researcher: str
) -> None:
    request_id = file_request(sandbox_instance, columns=[" Patients.Sex ", "patients.sex"])
    with sandbox_instance.tx() as session:
        request = session.get_one(AccessRequest, request_id)
        assert request.status == "pending" and request.grant_id is None
        assert request.columns == ["patients.sex"]  # normalised, each once
        assert request.modes == "dp,masked"
    details = audit_details(sandbox_instance, "access.requested", request_id)
    assert details["purpose"] == "diabetes-cost-study" and details["days"] == 60


def test_access_approval_narrows_the_grant(sandbox_instance: Sandbox, researcher: str) -> None:
    request_id = file_request(sandbox_instance)
    rules = {"patients.sex": {"rule": ["dimension"], "aggregates": ["COUNT"]}}
    grant_id = approve(
        sandbox_instance,
        request_id,
        comment="Cost stays closed; dp only.",
        columns=["patients.person_id", "patients.sex"],
        modes=["dp"],
        epsilon=1.5,
        days=30,
        k_threshold=15,
        column_rules=rules,
    )
    with sandbox_instance.tx() as session:
        grant = session.get_one(Grant, grant_id)
        assert grant.columns == ["patients.person_id", "patients.sex"]
        assert grant.column_rules == rules
        assert grant.mode_list == ["dp"]
        assert grant.epsilon_total == 1.5 and grant.max_epsilon_per_job == 1.5
        assert grant.k_threshold == 15 and grant.purpose == "diabetes-cost-study"
        expires = grant.expires_at.replace(tzinfo=dt.UTC)
        assert dt.timedelta(days=29) < expires - utcnow() <= dt.timedelta(days=30)
        request = session.get_one(AccessRequest, request_id)
        assert request.status == "approved" and request.grant_id == grant_id
        assert request.decided_by == user(session, "owner").id and request.decided_at
        assert request.decision_comment == "Cost stays closed; dp only."
    narrowed = audit_details(sandbox_instance, "access.approved", request_id)["narrowed"]
    assert set(narrowed) == {"columns", "modes", "epsilon", "days", "k_threshold", "column_rules"}
    assert narrowed["modes"] == {"requested": ["dp", "masked"], "approved": ["dp"]}

    job = submit(sandbox_instance, "dp", epsilon=1.0)
    assert job.grant_id == grant_id
    assert run_job(sandbox_instance, job.id) == "released"
    with pytest.raises(NoActiveGrant) as caught:
        submit(sandbox_instance, "masked")  # narrowed away
    assert caught.value.status == 403 and caught.value.code == "no_active_grant"


def test_access_approval_as_filed_keeps_the_request(
    sandbox_instance: Sandbox, researcher: str
) -> None:
    grant_id = approve(sandbox_instance, file_request(sandbox_instance, columns=[]))
    with sandbox_instance.tx() as session:
        grant = session.get_one(Grant, grant_id)
        assert grant.columns == [] and grant.mode_list == ["dp", "masked"]
        assert grant.epsilon_total == 4.0 and grant.max_epsilon_per_job == 2.0


@pytest.mark.parametrize(
    "narrowing",
    [
        {"columns": ["patients.sex", "labs.value"]},  # not requested
        {"columns": []},  # would open every column
        {"epsilon": 5.0},
        {"days": 61},
        {"k_threshold": 5},  # below the policy's k
        {"column_rules": {"patients.nope": {"rule": ["dimension"]}}},
        {"column_rules": {"patients.sex": {"rule": ["everything"]}}},
    ],
)
def test_access_approval_cannot_widen(
    sandbox_instance: Sandbox, researcher: str, narrowing: dict[str, Any]
) -> None:
    request_id = file_request(sandbox_instance)
    with pytest.raises(InvalidRequest):
        approve(sandbox_instance, request_id, **narrowing)
    with sandbox_instance.tx() as session:
        assert session.get_one(AccessRequest, request_id).status == "pending"
        assert (
            session.scalar(select(Grant).where(Grant.analyst_id == user(session, "researcher").id))
            is None
        )


def test_access_approval_mode_not_requested_refused(
    sandbox_instance: Sandbox, researcher: str
) -> None:
    request_id = file_request(sandbox_instance, modes=["masked"], epsilon=0)
    with pytest.raises(InvalidRequest, match="dp was not requested"):
        approve(sandbox_instance, request_id, modes=["dp"])


def test_access_deny_records_the_comment(sandbox_instance: Sandbox, researcher: str) -> None:
    request_id = file_request(sandbox_instance)
    owner = actor(sandbox_instance, "owner")
    with pytest.raises(InvalidRequest, match="comment"):
        access.deny_request(sandbox_instance, by=owner, request_id=request_id, comment="  ")
    denied = access.deny_request(
        sandbox_instance, by=owner, request_id=request_id, comment="Use the public tables first."
    )
    assert denied["status"] == "denied" and denied["grant"] is None
    assert denied["comment"] == "Use the public tables first."
    details = audit_details(sandbox_instance, "access.denied", request_id)
    assert details["comment"] == "Use the public tables first."


def test_access_deciding_twice_conflict(sandbox_instance: Sandbox, researcher: str) -> None:
    request_id = file_request(sandbox_instance)
    approve(sandbox_instance, request_id)
    with pytest.raises(Conflict) as caught:
        approve(sandbox_instance, request_id)
    assert caught.value.status == 409
    with pytest.raises(Conflict):
        access.deny_request(
            sandbox_instance,
            by=actor(sandbox_instance, "owner"),
            request_id=request_id,
            comment="too late",
        )
    with sandbox_instance.tx() as session:
        assert (
            len(session.scalars(select(Grant).where(Grant.purpose == "diabetes-cost-study")).all())
            == 1
        )


def test_access_analyst_cannot_decide(sandbox_instance: Sandbox, researcher: str) -> None:
    request_id = file_request(sandbox_instance)
    with pytest.raises(Forbidden) as caught:
        approve(sandbox_instance, request_id, who="researcher")
    assert caught.value.status == 403
    with pytest.raises(Forbidden):
        access.deny_request(
            sandbox_instance,
            by=actor(sandbox_instance, "analyst"),
            request_id=request_id,
            comment="no",
        )
    with pytest.raises(Forbidden):
        access.request_access(
            sandbox_instance,
            by=actor(sandbox_instance, "owner"),
            ask=access.AccessAsk(
                dataset="health", purpose="x", columns=[], modes=["masked"], epsilon=0, days=1
            ),
        )


def test_access_unknown_request_not_found(sandbox_instance: Sandbox) -> None:
    with pytest.raises(NotFound):
        approve(sandbox_instance, "0" * 32)


def test_access_request_forbidden_column_named(sandbox_instance: Sandbox, researcher: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        file_request(sandbox_instance, columns=["patients.sex", "patients.id_card"])
    assert caught.value.status == 400
    assert "patients.id_card" in caught.value.message
    assert "negative list" in caught.value.message
    assert caught.value.to_dict()["columns"] == ["patients.id_card"]
    with pytest.raises(InvalidRequest, match="patients.consent_research"):
        file_request(sandbox_instance, columns=["patients.consent_research"])
    with pytest.raises(InvalidRequest, match="the view has patients.birth_year"):
        file_request(sandbox_instance, columns=["patients.birth_date"])


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"purpose": " "}, InvalidRequest),
        ({"purpose": "p" * 65}, InvalidRequest),
        ({"days": 0}, InvalidRequest),
        ({"days": 366}, InvalidRequest),
        ({"days": True}, InvalidRequest),
        ({"modes": []}, InvalidRequest),
        ({"modes": ["raw"]}, InvalidRequest),
        ({"epsilon": -1}, InvalidRequest),
        ({"epsilon": 0}, InvalidRequest),  # dp asks for some budget
        ({"columns": "patients.sex"}, InvalidRequest),
        ({"dataset": "nope"}, NotFound),
    ],
)
def test_access_request_invalid_refused(
    sandbox_instance: Sandbox, researcher: str, fields: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        file_request(sandbox_instance, **fields)


def test_access_request_one_pending_per_purpose(sandbox_instance: Sandbox, researcher: str) -> None:
    first = file_request(sandbox_instance)
    with pytest.raises(Conflict):
        file_request(sandbox_instance)
    file_request(sandbox_instance, purpose="another-study")  # a different purpose is fine
    approve(sandbox_instance, first)
    file_request(sandbox_instance)  # once decided, the same purpose may be asked again


def test_access_list_owner_sees_all_analyst_own(sandbox_instance: Sandbox, researcher: str) -> None:
    mine = file_request(sandbox_instance)
    theirs = file_request(sandbox_instance, who="analyst")
    sandbox = sandbox_instance
    seen = {r["id"] for r in access.list_requests(sandbox, by=actor(sandbox, "owner"))}
    assert seen == {mine, theirs}
    own = access.list_requests(sandbox, by=actor(sandbox, "researcher"))
    assert [r["id"] for r in own] == [mine]
    pending = access.list_requests(sandbox, by=actor(sandbox, "admin"), status="pending")
    assert len(pending) == 2
    with pytest.raises(Forbidden):
        access.list_requests(sandbox, by=actor(sandbox, "auditor"))
    with pytest.raises(InvalidRequest):
        access.list_requests(sandbox, by=actor(sandbox, "owner"), status="maybe")


def test_access_expired_grant_not_active(sandbox_instance: Sandbox, researcher: str) -> None:
    grant_id = approve(sandbox_instance, file_request(sandbox_instance))
    submit(sandbox_instance, "dp")  # active until now
    with sandbox_instance.tx() as session:
        session.get_one(Grant, grant_id).expires_at = utcnow() - dt.timedelta(minutes=1)
    with sandbox_instance.tx() as session:
        assert not session.get_one(Grant, grant_id).is_active()
        with pytest.raises(NoActiveGrant):
            grants.active_grant(
                session, analyst=user(session, "researcher"), dataset="health", mode="dp"
            )
    with pytest.raises(NoActiveGrant):
        submit(sandbox_instance, "dp")


def test_access_revoke_stops_queued_job(sandbox_instance: Sandbox, researcher: str) -> None:
    grant_id = approve(sandbox_instance, file_request(sandbox_instance))
    job = submit(sandbox_instance, "dp", epsilon=1.0)
    assert job.status == "queued"
    grants.revoke_grant(sandbox_instance, by=actor(sandbox_instance, "owner"), grant_id=grant_id)
    assert run_job(sandbox_instance, job.id) == "failed"
    with sandbox_instance.tx() as session:
        found = session.get_one(Job, job.id)
        assert found.error_code == "grant_inactive" and found.result is None
        assert session.get_one(Grant, grant_id).epsilon_spent == pytest.approx(0.0)


class _RevokingRunner:
    """The development runner, but the owner revokes the job's grant while it runs."""

    name = "revoking"

    def __init__(self, sandbox: Sandbox) -> None:
        from runners.local import LocalProcessRunner

        self.sandbox = sandbox
        self.real = LocalProcessRunner()

    def run(self, spec: Any) -> Any:
        with self.sandbox.tx() as session:
            grant_id = session.get_one(Job, spec.job_id).grant_id
        # Its own transaction, as an owner's request would be.
        grants.revoke_grant(self.sandbox, by=actor(self.sandbox, "owner"), grant_id=grant_id)
        return self.real.run(spec)

    def cleanup_orphans(self) -> int:
        return 0


def test_access_revoke_between_run_and_release_withholds(
    sandbox_instance: Sandbox, researcher: str
) -> None:
    approve(sandbox_instance, file_request(sandbox_instance))
    job = submit(sandbox_instance, "dp", epsilon=1.0)
    sandbox_instance.runner = _RevokingRunner(sandbox_instance)  # type: ignore[misc]
    assert run_job(sandbox_instance, job.id) == "withheld"
    with sandbox_instance.tx() as session:
        found = session.get_one(Job, job.id)
        assert found.error_code == "grant_inactive"
        assert found.result is None and found.certificate is None
        actions = [
            e.action
            for e in session.scalars(select(AuditEntry).where(AuditEntry.subject == job.id))
        ]
        assert actions[-1] == "job.withheld" and "job.released" not in actions


def test_access_cli_lists_approves_and_denies(sandbox_instance: Sandbox, researcher: str) -> None:
    first = file_request(sandbox_instance)
    second = file_request(sandbox_instance, purpose="second-study")
    context.set_current(sandbox_instance)
    try:
        from sandbox.cli import main

        listed = CliRunner().invoke(main, ["access", "list", "--status", "pending"])
        assert listed.exit_code == 0, listed.output
        assert {json.loads(line)["id"] for line in listed.output.splitlines()} == {first, second}
        approved = CliRunner().invoke(
            main, ["access", "approve", first, "--mode", "dp", "--epsilon", "1", "--days", "7"]
        )
        assert approved.exit_code == 0, approved.output
        denied = CliRunner().invoke(main, ["access", "deny", second, "--comment", "no"])
        assert denied.exit_code == 0, denied.output
        again = CliRunner().invoke(main, ["access", "deny", first, "--comment", "no"])
        assert again.exit_code != 0 and "approved already" in again.output
    finally:
        context.set_current(None)
    with sandbox_instance.tx() as session:
        grant_id = session.get_one(AccessRequest, first).grant_id
        assert grant_id is not None
        assert session.get_one(Grant, grant_id).mode_list == ["dp"]
        assert session.get_one(AccessRequest, second).status == "denied"


def test_access_http_request_approve_submit(live_portal: Any) -> None:
    with live_portal.sandbox.tx() as session:
        create_user(
            session,
            username="http_researcher",
            password="pw-http-analyst-1",
            role=Role.ANALYST,
            by="test",
        )
    status, body = live_portal.request(
        "POST",
        "/api/v1/auth/token",
        {"username": "http_researcher", "password": "pw-http-analyst-1"},
    )
    assert status == 200, body
    analyst, owner = body["token"], live_portal.token("owner")
    path = "/api/v1/access-requests"

    status, body = live_portal.request(
        "POST",
        path,
        {
            "dataset": "health",
            "purpose": "http-study",
            "columns": ["patients.id_card"],
            "modes": ["dp"],
            "epsilon": 2.0,
            "days": 30,
        },
        token=analyst,
    )
    assert status == 400 and "patients.id_card" in body["error"]["message"], body

    status, filed = live_portal.request(
        "POST",
        path,
        {
            "dataset": "health",
            "purpose": "http-study",
            "columns": ASKED,
            "modes": ["dp", "masked"],
            "epsilon": 3.0,
            "days": 30,
            "justification": "why",
        },
        token=analyst,
    )
    assert status == 201, filed
    assert filed["status"] == "pending" and filed["analyst"] == "http_researcher"
    assert filed["grant"] is None and filed["modes"] == ["dp", "masked"]

    status, listed = live_portal.request("GET", path + "?status=pending", token=owner)
    assert status == 200 and filed["id"] in [r["id"] for r in listed["access_requests"]]

    approve_path = f"{path}/{filed['id']}/approve"
    status, body = live_portal.request("POST", approve_path, {}, token=analyst)
    assert status == 403, body
    status, approved = live_portal.request(
        "POST",
        approve_path,
        {
            "comment": "dp only",
            "modes": ["dp"],
            "epsilon": 2.0,
            "days": 7,
            "columns": ["patients.person_id", "patients.sex"],
        },
        token=owner,
    )
    assert status == 200, approved
    assert approved["status"] == "approved" and approved["decided_by"] == "owner"
    assert approved["comment"] == "dp only"
    grant = approved["grant"]
    assert grant["modes"] == ["dp"] and grant["epsilon_total"] == 2.0 and grant["active"]
    assert grant["columns"] == ["patients.person_id", "patients.sex"]
    status, body = live_portal.request("POST", approve_path, {}, token=owner)
    assert status == 409 and body["error"]["code"] == "conflict", body

    status, mine = live_portal.request("GET", path, token=analyst)
    assert status == 200 and [r["id"] for r in mine["access_requests"]] == [filed["id"]]

    job = {"dataset": "health", "language": "sql", "code": DP_SQL}
    status, body = live_portal.request(
        "POST", "/api/v1/jobs", job | {"mode": "masked"}, token=analyst
    )
    assert status == 403 and body["error"]["code"] == "no_active_grant", body
    status, body = live_portal.request(
        "POST", "/api/v1/jobs", job | {"mode": "dp", "epsilon": 1.0}, token=analyst
    )
    assert status == 202, body
    assert live_portal.wait_for(body["id"], analyst)["status"] == "released"

    status, other = live_portal.request(
        "POST",
        path,
        {
            "dataset": "health",
            "purpose": "second",
            "modes": ["masked"],
            "days": 10,
        },
        token=analyst,
    )
    assert status == 201, other
    deny_path = f"{path}/{other['id']}/deny"
    status, body = live_portal.request("POST", deny_path, {}, token=owner)
    assert status == 400 and body["error"]["field"] == "comment", body
    status, denied = live_portal.request("POST", deny_path, {"comment": "Not now."}, token=owner)
    assert status == 200 and denied["status"] == "denied" and denied["comment"] == "Not now."
