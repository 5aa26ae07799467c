"""The live portal against its own OpenAPI description (portal/openapi.py), fuzzed by
schemathesis as five roles: no 5xx, and every answer's status, content type and body as
described. Seeded and with few examples per operation, so a run is reproducible and short.

Seeded like the demo: users of every role, the health dataset with its grants, and the
demo contest (open, two approved teams), plus a released job, an access request, a
submission and an import. Path parameters are random or the description's examples
(health, health-2026, …); each role's run puts the seeded ids of its own in some
(``seed_ids``), so those calls reach the view's work. Bodies and query strings are valid
and invalid ones (schemathesis's positive and negative modes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from portal.openapi import openapi_document
from sandbox.access.users import token_for
from sandbox.demo import DEMO_CONTEST, ensure_demo_contest
from tests.live import LivePortal, start_live_portal

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SEED = 20261203
EXAMPLES = 3  # per operation and role, beside schemathesis's own boundary cases
JOB = {
    "dataset": "health",
    "language": "sql",
    "mode": "masked",
    "code": "SELECT district, COUNT(*) AS n FROM patients GROUP BY district",
}
ACCESS_ASK = {
    "dataset": "health",
    "purpose": "research",
    "modes": ["dp"],
    "epsilon": 1.0,
    "days": 30,
}
SUBMISSION = (
    "def fit(train):\n    return 0.5\n\n\n"
    "def predict(model, features):\n    return [model] * len(features['visits'])\n"
)
CASES: Counter[str] = Counter()  # what ran, printed at the end (pytest -s)
STATUSES: Counter[int] = Counter()

pytestmark = pytest.mark.slow


class Callers:
    """Who calls: a bearer token per role, issued again after any DELETE /tokens/{id}
    (which may have revoked one of them: an admin may revoke anyone's), and per role the
    real ids its calls use for some path parameters, so those reach the view's own work."""

    def __init__(self, live: LivePortal, ids: dict[str, dict[str, str]]) -> None:
        self.live = live
        self.ids = ids
        self.issued: dict[str, str] = {}

    def header(self, role: str) -> dict[str, str]:
        if role not in self.issued:
            self.issued[role] = token_for(self.live.sandbox, username=role, label="schemathesis")
        return {"Authorization": f"Bearer {self.issued[role]}"}

    def forget(self) -> None:
        self.issued.clear()


def seed_ids(live: LivePortal) -> dict[str, dict[str, str]]:
    """Things to call about: the analyst's released job, access request, contest
    submission (queued: no contest worker runs) and team, an owner's import, and a
    contest of the organizer's in registration."""
    analyst, owner = live.token("analyst"), live.token("owner")
    status, job = live.request("POST", "/api/v1/jobs", JOB, analyst)
    assert status == 202, job
    assert live.wait_for(job["id"], analyst)["status"] == "released"
    status, ask = live.request("POST", "/api/v1/access-requests", ACCESS_ASK, analyst)
    assert status == 201, ask
    track = f"/api/v1/contests/{DEMO_CONTEST}/tracks/readmission-30d/submissions"
    status, submission = live.request("POST", track, {"code": SUBMISSION}, analyst)
    assert status == 202, submission
    status, team = live.request("GET", f"/api/v1/contests/{DEMO_CONTEST}/team", token=analyst)
    assert status == 200, team
    status, started = live.request("POST", "/api/v1/imports", {"dataset": "fuzzed"}, owner)
    assert status == 201, started
    # A contest of the organizer's still in registration, so tracks may yet be added to it.
    cup = {"slug": "fuzz-cup", "title": "模糊测试杯"}
    status, created = live.request("POST", "/api/v1/contests", cup, live.token("organizer"))
    assert status == 201, created
    return {
        "analyst": {
            "job_id": job["id"],
            "request_id": ask["id"],
            "submission_id": submission["id"],
            "team_id": team["team"]["id"],
        },
        "owner": {"import_id": started["id"], "request_id": ask["id"]},
        "auditor": {"job_id": job["id"]},
        # The organizer's run comes last: it may disqualify the analyst's team.
        "organizer": {
            "contest": "fuzz-cup",
            "submission_id": submission["id"],
            "team_id": team["team"]["id"],
        },
    }


@pytest.fixture(scope="module")
def callers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callers]:
    live = start_live_portal(tmp_path_factory.mktemp("openapi") / "instance", runner="local")
    try:
        ensure_demo_contest(live.sandbox)
        status, served = live.request("GET", "/api/v1/openapi.json")
        assert status == 200 and served == openapi_document()
        yield Callers(live, seed_ids(live))
    finally:
        live.stop()
    print(f"\nschemathesis: {sum(CASES.values())} cases over {len(CASES)} operation×role runs")
    print(f"statuses: {dict(sorted(STATUSES.items()))}")


# The description is plain data (portal.openapi), so the operations are known when the
# tests are collected; the portal they are checked against starts with the first test.
def load_schema(*phases: str) -> Any:
    loaded = schemathesis.openapi.from_dict(openapi_document())
    loaded.config.seed = SEED
    loaded.config.generation.update(max_examples=EXAMPLES)
    loaded.config.phases.update(phases=list(phases))
    # Not the methods a path does not have: Flask answers those (405) before any view.
    loaded.config.phases.coverage.unexpected_methods = set()
    return loaded


# The runs of the analyst, the owner and the organizer (who reach most views' own work)
# add the coverage phase: every boundary and invalid value of each field, the bodies a
# view must refuse with 400. The auditor's and the admin's runs fuzz only.
schema = load_schema("examples", "coverage", "fuzzing")
quick = load_schema("examples", "fuzzing")
# Few examples, derandomized: the same cases every run (with the seed above).
fuzzing = settings(
    max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
)


def call_as(role: str, case: Any, callers: Callers) -> None:
    CASES[f"{case.operation.label} as {role}"] += 1
    for name, value in callers.ids.get(role, {}).items():
        if name in (case.path_parameters or {}):
            case.path_parameters[name] = value
    try:
        response = case.call_and_validate(
            base_url=callers.live.base_url, headers=callers.header(role), checks=CHECKS, timeout=30
        )
        STATUSES[response.status_code] += 1
    finally:
        if case.method.upper() == "DELETE" and case.path.startswith("/api/v1/tokens/"):
            callers.forget()


# One test per role: schemathesis's parametrized tests take no parametrized fixture.
@schema.parametrize()
@fuzzing
def test_api_conforms_as_analyst(case: Any, callers: Callers) -> None:
    call_as("analyst", case, callers)


@schema.parametrize()
@fuzzing
def test_api_conforms_as_owner(case: Any, callers: Callers) -> None:
    call_as("owner", case, callers)


@quick.parametrize()
@fuzzing
def test_api_conforms_as_auditor(case: Any, callers: Callers) -> None:
    call_as("auditor", case, callers)


@quick.parametrize()
@fuzzing
def test_api_conforms_as_admin(case: Any, callers: Callers) -> None:
    call_as("admin", case, callers)


@schema.parametrize()
@fuzzing
def test_api_conforms_as_organizer(case: Any, callers: Callers) -> None:
    call_as("organizer", case, callers)
