"""Input that crashed views (500) before schemathesis and its follow-up probes found it:
each is now a 400 or 404 naming the rule, never a 500 and never the value sent."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pytest
from flask.testing import FlaskClient

from sandbox.access import grants
from sandbox.context import Sandbox
from sandbox.errors import InvalidRequest
from tests.factories import actor

if TYPE_CHECKING:
    from tests.clients import Bearer

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    "number", ["NaN", "Infinity", "-Infinity", "1e999", "99999999999999999999"]
)
def test_api_refuses_numbers_no_column_holds(
    client: FlaskClient, bearer: Bearer, number: str
) -> None:
    body = '{"dataset": "health", "analyst": "analyst2", "k_threshold": ' + number + "}"

    answer = client.post("/api/v1/grants", data=body, headers=bearer("owner") | JSON)

    assert answer.status_code == 400
    assert answer.get_json()["error"]["rule"] == "body.number"


def test_api_refuses_nul_in_body_text(client: FlaskClient, bearer: Bearer) -> None:
    body = '{"dataset": "health", "purpose": "research", "person_id": "1\\u0000"}'

    answer = client.post(
        "/api/v1/datasets/health/consents/give", data=body, headers=bearer("owner") | JSON
    )

    assert answer.status_code == 400
    assert answer.get_json()["error"]["rule"] == "body.nul"


@pytest.mark.parametrize("path", ["/api/v1/datasets/a%00b", "/api/v1/audit?actor=%00"])
def test_api_refuses_nul_in_address(client: FlaskClient, bearer: Bearer, path: str) -> None:
    answer = client.get(path, headers=bearer("auditor"))

    assert answer.status_code == 400
    assert answer.get_json()["error"]["rule"] == "request.nul"


def test_api_deeply_nested_body_is_refused(client: FlaskClient, bearer: Bearer) -> None:
    body = '{"a": ' + "[" * 900 + "]" * 900 + "}"

    answer = client.post("/api/v1/grants", data=body, headers=bearer("owner") | JSON)

    assert answer.status_code == 400


@pytest.mark.parametrize(
    "path", ["/api/v1/tokens/99999999999999999999", "/api/v1/disputes/2147483648/decision"]
)
def test_api_row_id_beyond_any_row_is_not_found(
    client: FlaskClient, bearer: Bearer, path: str
) -> None:
    method = client.delete if "tokens" in path else client.post
    answer = method(path, json={"decision": "reject", "comment": "c"}, headers=bearer("admin"))

    assert answer.status_code == 404
    assert answer.is_json


@pytest.mark.parametrize(
    "field, value", [("k_threshold", 10**9), ("days", 10**7), ("epsilon_total", math.inf)]
)
def test_grant_terms_beyond_what_is_stored_refused(
    sandbox_instance: Sandbox, field: str, value: float
) -> None:
    # Not over the API (its JSON has no such numbers) but from a web form or the CLI.
    terms = grants.GrantTerms(**{field: value})  # type: ignore[arg-type]

    with pytest.raises(InvalidRequest):
        grants.grant_access(
            sandbox_instance,
            by=actor(sandbox_instance, "owner"),
            dataset="health",
            analyst="analyst2",
            terms=terms,
        )


def test_track_quota_beyond_what_is_stored_refused(client: FlaskClient, bearer: Bearer) -> None:
    organizer = bearer("organizer")
    created = client.post(
        "/api/v1/contests", json={"slug": "cup", "title": "杯"}, headers=organizer
    )
    assert created.status_code == 201
    track = {
        "slug": "t",
        "title": "t",
        "dataset": "health",
        "task": "binary",
        "target": "visits.readmitted_30d",
        "metric": "roc_auc",
        "max_running": 2**40,
    }

    answer = client.post("/api/v1/contests/cup/tracks", json=track, headers=organizer)

    assert answer.status_code == 400
    assert answer.get_json()["error"]["field"] == "quotas"
