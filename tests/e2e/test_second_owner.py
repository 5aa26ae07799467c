"""A second data owner cannot act on the first owner's dataset, through the HTTP API.

Every owner action on ``health`` (owned by the demo user ``owner``) is answered 403
for ``owner2`` and kept in the audit log as a refusal; nothing changes. Reads that
list owner data (grants, access requests) show ``owner2`` none of it.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from policies.permissions import Role
from sandbox.access.users import add_user
from sandbox.context import Sandbox
from sandbox.models import AccessRequest, AuditEntry, ConsentRecord, DatasetRecord, Grant
from tests.clients import Bearer

SECOND_OWNER = "owner2"


@pytest.fixture
def second_owner(sandbox_instance: Sandbox) -> str:
    password = "pw-second-owner-0"
    add_user(sandbox_instance, by="test", username=SECOND_OWNER, password=password, role=Role.OWNER)
    sandbox_instance.credentials[SECOND_OWNER] = password  # type: ignore[attr-defined]
    return SECOND_OWNER


def _pending_request(client: FlaskClient, bearer: Bearer) -> str:
    answer = client.post(
        "/api/v1/access-requests",
        headers=bearer("analyst"),
        json={"dataset": "health", "purpose": "cost-study", "modes": ["masked"], "days": 30},
    )
    assert answer.status_code == 201, answer.get_json()
    return str(answer.get_json()["id"])


def _state(sandbox: Sandbox) -> dict[str, Any]:
    """Everything an owner action could change."""
    with sandbox.tx() as session:
        return {
            "grants": sorted(
                (g.id, g.revoked_at is None, g.epsilon_total)
                for g in session.scalars(select(Grant))
            ),
            "requests": sorted((r.id, r.status) for r in session.scalars(select(AccessRequest))),
            "consent": sorted(
                (c.person_id, c.purpose, c.withdrawn_at is None)
                for c in session.scalars(select(ConsentRecord))
            ),
            "reviewers": [r.reviewers_required for r in session.scalars(select(DatasetRecord))],
        }


def _refusals(sandbox: Sandbox) -> list[tuple[str, str]]:
    with sandbox.tx() as session:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.actor == SECOND_OWNER).order_by(AuditEntry.seq)
        )
        return [(e.action, e.subject) for e in rows if e.action.endswith(".refused")]


def test_second_owner_every_owner_action_on_anothers_dataset_is_403_and_audited(
    sandbox_instance: Sandbox, client: FlaskClient, bearer: Bearer, second_owner: str
) -> None:
    request_id = _pending_request(client, bearer)
    with sandbox_instance.tx() as session:
        grant_id = session.scalars(select(Grant.id)).first()
        person = session.scalars(select(ConsentRecord.person_id)).first()
    assert grant_id is not None and person is not None
    before = _state(sandbox_instance)
    them = bearer(second_owner)

    actions = [
        (
            "grant.create",
            "health",
            "POST",
            "/api/v1/grants",
            {"dataset": "health", "analyst": "analyst", "modes": ["masked"]},
        ),
        ("grant.revoke", grant_id, "DELETE", f"/api/v1/grants/{grant_id}", None),
        ("access.approve", request_id, "POST", f"/api/v1/access-requests/{request_id}/approve", {}),
        (
            "access.deny",
            request_id,
            "POST",
            f"/api/v1/access-requests/{request_id}/deny",
            {"comment": "no"},
        ),
        (
            "consent.withdraw",
            "health",
            "POST",
            "/api/v1/datasets/health/consents/withdraw",
            {"person_id": person, "purpose": "research"},
        ),
        (
            "consent.give",
            "health",
            "POST",
            "/api/v1/datasets/health/consents/give",
            {"person_id": "P-not-yet", "purpose": "teaching"},
        ),
        (
            "dataset.settings",
            "health",
            "PATCH",
            "/api/v1/datasets/health",
            {"reviewers_required": 2},
        ),
    ]
    for _, _, method, path, body in actions:
        answer = client.open(path, method=method, headers=them, json=body)
        assert answer.status_code == 403, (path, answer.get_json())
        assert answer.get_json()["error"]["code"] == "forbidden"

    assert _state(sandbox_instance) == before  # nothing changed, nothing half-stored
    assert _refusals(sandbox_instance) == [
        (f"{action}.refused", subject) for action, subject, *_ in actions
    ]
    # What lists owner data shows the second owner nothing of the first owner's.
    grants = client.get("/api/v1/grants", headers=them).get_json()["grants"]
    assert grants == []
    requests = client.get("/api/v1/access-requests", headers=them).get_json()["access_requests"]
    assert requests == []
    # The first owner still can.
    mine = client.get("/api/v1/grants", headers=bearer("owner")).get_json()["grants"]
    assert {g["id"] for g in mine} >= {grant_id}
    approved = client.post(
        f"/api/v1/access-requests/{request_id}/approve", headers=bearer("owner"), json={}
    )
    assert approved.status_code == 200, approved.get_json()
