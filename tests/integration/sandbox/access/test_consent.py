"""Consent (个人授权) and central authorization (集中授权) through the whole job flow."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from datasets.health_manifest import HEALTH
from policies.permissions import Role
from sandbox import context
from sandbox.access import consent, grants
from sandbox.access.users import create_user, user_by_name
from sandbox.cli import main
from sandbox.context import Sandbox
from sandbox.errors import Conflict, Forbidden, NotFound
from sandbox.integrity import audit
from sandbox.jobs import submit
from sandbox.jobs.pipeline import run_job
from sandbox.jobs.planning import JobRequest
from sandbox.models import AuditEntry, ConsentRecord, Job, User
from tests.clients import Bearer
from tests.factories import actor, actor_with_id, health_tables

COUNT_PATIENTS = "SELECT COUNT(*) AS n FROM patients"


def patients() -> pd.DataFrame:
    return health_tables()["patients"]


def flagged() -> list[int]:
    frame = patients()
    return sorted(int(p) for p in frame.loc[frame["consent_research"], "person_id"])


def named(session: Session, name: str) -> User:
    found = user_by_name(session, name)
    assert found is not None
    return found


def count_patients(sandbox: Sandbox, *, who: str = "analyst", status: str = "released") -> Job:
    """Run a masked COUNT(*) of patients to its end; the demo grant's k is 10."""
    with sandbox.tx() as session:
        analyst_id = named(session, who).id
    job = submit.submit_job(
        sandbox,
        by=actor_with_id(sandbox, analyst_id),
        request=JobRequest(
            dataset="health", language="sql", mode="masked", code=COUNT_PATIENTS, epsilon=None
        ),
        enqueue=lambda _: None,
    )
    run_job(sandbox, job.id)
    with sandbox.tx() as session:
        found = session.get_one(Job, job.id)
        session.expunge(found)
    assert found.status == status, (found.error_code, found.error_message, found.findings)
    return found


def rows_of(job: Job) -> list[list[Any]]:
    assert job.result is not None
    rows: list[list[Any]] = job.result["tables"][0]["rows"]
    return rows


def change(
    sandbox: Sandbox, action: str, person: int, *, by: str = "owner", purpose: str = "research"
) -> int:
    do = consent.withdraw_consent if action == "withdraw" else consent.give_consent
    return do(
        sandbox, by=actor(sandbox, by), dataset="health", person_id=str(person), purpose=purpose
    )


def grant_for(
    sandbox: Sandbox, analyst: str, *, purpose: str, requires_consent: bool = True
) -> None:
    """A newer grant than the demo one, so the analyst's next jobs run under it."""
    grants.grant_access(
        sandbox,
        by=actor(sandbox, "owner"),
        dataset="health",
        analyst=analyst,
        terms=grants.GrantTerms(
            modes=("masked",), purpose=purpose, requires_consent=requires_consent
        ),
    )


# --- seeding --------------------------------------------------------------------------


def test_consent_seeded_from_the_flag(sandbox_instance: Sandbox) -> None:
    with sandbox_instance.tx() as session:
        persons = consent.consenting_persons(session, dataset="health", purpose="research")
        entry = session.scalars(select(AuditEntry).filter_by(action="consent.seeded")).one()
    assert persons == {str(p) for p in flagged()}
    assert 0 < len(persons) < len(patients())
    assert entry.details["consenting"] == len(persons)
    assert entry.details["persons"] == len(patients())


def test_consent_seeding_is_idempotent_and_keeps_withdrawals(sandbox_instance: Sandbox) -> None:
    withdrawn = flagged()[3]
    change(sandbox_instance, "withdraw", withdrawn)
    for _ in range(2):
        with sandbox_instance.tx() as session:
            consent.seed_consent(session, manifest=HEALTH, patients=patients(), by="owner")
    with sandbox_instance.tx() as session:
        persons = consent.consenting_persons(session, dataset="health", purpose="research")
        records = session.scalar(select(func.count()).select_from(ConsentRecord))
    # Storing the data again cannot bring back a consent its person withdrew.
    assert persons == {str(p) for p in flagged()} - {str(withdrawn)}
    assert records == len(flagged())  # the active ones and the one withdrawn record


def test_consent_seeding_100k_persons_is_fast(sandbox_instance: Sandbox) -> None:
    import time

    many = pd.DataFrame({"person_id": range(1, 100_001), "consent_research": [True] * 100_000})
    started = time.monotonic()
    with sandbox_instance.tx() as session:
        seeded = consent.seed_consent(session, manifest=HEALTH, patients=many, by="owner")
    elapsed = time.monotonic() - started
    assert seeded == 100_000
    assert elapsed < 15, f"seeding 100,000 persons took {elapsed:.1f} s"


# --- the view of a job ----------------------------------------------------------------


def test_consent_view_counts_only_persons_with_active_consent(sandbox_instance: Sandbox) -> None:
    job = count_patients(sandbox_instance)
    assert rows_of(job) == [[len(flagged())]]


def test_consent_withdrawal_changes_every_later_job(sandbox_instance: Sandbox) -> None:
    person = flagged()[len(flagged()) // 2]
    before = count_patients(sandbox_instance)
    assert change(sandbox_instance, "withdraw", person) == 1
    # The view leaves the person out; the count, less the one already released, would
    # isolate them, so the differencing check holds it for an auditor.
    after = count_patients(sandbox_instance, status="pending_review")
    again = count_patients(sandbox_instance, status="pending_review")
    assert rows_of(after) == rows_of(again) == [[len(flagged()) - 1]]
    assert [f["rule"] for f in after.findings] == ["masked.differencing"]
    with sandbox_instance.tx() as session:
        # What was released earlier stays as it was.
        assert session.get_one(Job, before.id).result == before.result
    assert rows_of(before) == [[len(flagged())]]
    assert change(sandbox_instance, "give", person) == 1
    assert rows_of(count_patients(sandbox_instance)) == [[len(flagged())]]


def test_consent_withdraw_twice_or_give_twice_is_refused(sandbox_instance: Sandbox) -> None:
    person = flagged()[0]
    change(sandbox_instance, "withdraw", person)
    with pytest.raises(NotFound):
        change(sandbox_instance, "withdraw", person)
    change(sandbox_instance, "give", person)
    with pytest.raises(Conflict):
        change(sandbox_instance, "give", person)


def test_consent_central_authorization_sees_every_person(sandbox_instance: Sandbox) -> None:
    grant_for(sandbox_instance, "analyst2", purpose="public_health_statistics")
    job = count_patients(sandbox_instance, who="analyst2")
    assert rows_of(job) == [[len(patients())]]
    with sandbox_instance.tx() as session:
        applied = session.scalars(select(AuditEntry).filter_by(action="consent.applied")).all()
    assert [e.details["basis"] for e in applied if e.details["job"] == job.id] == [
        "central_authorization"
    ]


def test_consent_purpose_without_records_sees_nobody(sandbox_instance: Sandbox) -> None:
    grant_for(sandbox_instance, "analyst2", purpose="marketing")
    job = count_patients(sandbox_instance, who="analyst2")
    assert job.result is not None
    assert rows_of(job) == []  # a count of 0 persons is below k: suppressed
    assert job.result["disclosure"]["suppressed_rows"] == 1


def test_consent_grant_without_consent_requirement_sees_every_person(
    sandbox_instance: Sandbox,
) -> None:
    grant_for(sandbox_instance, "analyst2", purpose="research", requires_consent=False)
    assert rows_of(count_patients(sandbox_instance, who="analyst2")) == [[len(patients())]]


def test_consent_audit_holds_no_person_id(sandbox_instance: Sandbox) -> None:
    person = next(p for p in flagged() if p > 100)
    change(sandbox_instance, "withdraw", person)
    change(sandbox_instance, "give", person)
    count_patients(sandbox_instance)
    digest = hashlib.sha256(str(person).encode()).hexdigest()
    with sandbox_instance.tx() as session:
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
        assert audit.verify(session).ok
    actions = [e.action for e in entries]
    assert {"consent.seeded", "consent.withdrawn", "consent.given", "consent.applied"} <= set(
        actions
    )
    for entry in entries:
        values = set(_leaves(entry.details))
        assert person not in values and str(person) not in values, entry.action
        assert digest not in json.dumps(entry.details), entry.action


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def test_consent_only_the_datasets_owner_or_an_admin_changes_it(sandbox_instance: Sandbox) -> None:
    with sandbox_instance.tx() as session:
        create_user(
            session, username="owner2", password="pw-second-owner-2", role=Role.OWNER, by="test"
        )
    person = flagged()[0]
    for who in ("analyst", "auditor", "owner2"):
        with pytest.raises(Forbidden):
            change(sandbox_instance, "withdraw", person, by=who)
    assert change(sandbox_instance, "withdraw", person, by="admin") == 1


# --- API and CLI ----------------------------------------------------------------------


def test_consent_api_withdraw_and_give(client: FlaskClient, bearer: Bearer) -> None:
    person = next(p for p in flagged() if p > 100)
    owner = bearer("owner")
    body = {"person_id": str(person), "purpose": "research"}
    answer = client.post("/api/v1/datasets/health/consents/withdraw", json=body, headers=owner)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == {"dataset": "health", "purpose": "research", "records": 1}
    assert str(person) not in answer.get_data(as_text=True)  # not echoed back
    again = client.post("/api/v1/datasets/health/consents/withdraw", json=body, headers=owner)
    assert again.status_code == 404
    assert again.get_json()["error"]["code"] == "not_found"
    as_number = {"person_id": person, "purpose": "research"}
    given = client.post("/api/v1/datasets/health/consents/give", json=as_number, headers=owner)
    assert given.status_code == 200, given.get_json()
    missing = client.post("/api/v1/datasets/nothing/consents/give", json=body, headers=owner)
    assert missing.status_code == 404
    bad = client.post(
        "/api/v1/datasets/health/consents/give", json={"purpose": "research"}, headers=owner
    )
    assert bad.status_code == 400


def test_consent_api_non_owner_is_403(
    client: FlaskClient, bearer: Bearer, sandbox_instance: Sandbox
) -> None:
    body = {"person_id": str(flagged()[0]), "purpose": "research"}
    for name in ("analyst", "auditor"):
        answer = client.post(
            "/api/v1/datasets/health/consents/withdraw",
            json=body,
            headers=bearer(name),
        )
        assert answer.status_code == 403, name
    with sandbox_instance.tx() as session:
        assert str(flagged()[0]) in consent.consenting_persons(
            session, dataset="health", purpose="research"
        )


@pytest.fixture
def current(sandbox_instance: Sandbox) -> Iterator[Sandbox]:
    context.set_current(sandbox_instance)
    yield sandbox_instance
    context.set_current(None)


def test_consent_cli_withdraw_and_give(current: Sandbox) -> None:
    person = str(next(p for p in flagged() if p > 100))
    args = ["--dataset", "health", "--person", person, "--purpose", "research"]
    withdrawn = CliRunner().invoke(main, ["consent", "withdraw", *args])
    assert withdrawn.exit_code == 0, withdrawn.output
    assert "withdrawn" in withdrawn.output and person not in withdrawn.output
    with current.tx() as session:
        assert person not in consent.consenting_persons(
            session, dataset="health", purpose="research"
        )
    again = CliRunner().invoke(main, ["consent", "withdraw", *args])
    assert again.exit_code != 0 and "no active consent" in again.output
    refused = CliRunner().invoke(main, ["consent", "give", *args, "--as", "analyst"])
    assert refused.exit_code != 0 and "data owner" in refused.output
    given = CliRunner().invoke(main, ["consent", "give", *args])
    assert given.exit_code == 0, given.output
