"""Disputes, disqualification and merging over HTTP: each route answers 201/200 when it
acts, and 400, 403, 404 or 409 as JSON, never a 500, when it does not."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from sandbox.contest import contests, teams
from sandbox.context import Sandbox
from sandbox.models import AuditEntry, Submission, Track
from tests.clients import Bearer
from tests.factories import actor, insert_track

CONTEST = "health-2026"


@pytest.fixture
def contest(sandbox_instance: Sandbox) -> dict[str, str]:
    """Team 龙城 (analyst) and team 运河 (analyst2), each with a submission on one track."""
    organizer = actor(sandbox_instance, "organizer")
    contests.create_contest(sandbox_instance, by=organizer, slug=CONTEST, title="健康医疗大赛")
    insert_track(sandbox_instance, CONTEST)
    ids: dict[str, str] = {}
    for who, name in (("analyst", "龙城"), ("analyst2", "运河")):
        person = actor(sandbox_instance, who)
        teams.register(
            sandbox_instance, by=person, contest=CONTEST, real_name="张伟", institution="常州大学"
        )
        teams.decide_registration(
            sandbox_instance, by=organizer, contest=CONTEST, username=who, approve=True
        )
        team_id = teams.create_team(sandbox_instance, by=person, contest=CONTEST, name=name)["id"]
        with sandbox_instance.tx() as session:
            row = Submission(
                track_id=session.scalars(select(Track.id)).one(),
                team_id=team_id,
                submitted_by=person.id,
                code="def fit(data): ...",
                code_sha256="0" * 64,
                status="scored",
                failed_in=None,
            )
            session.add(row)
            session.flush()
            ids[f"{who}_submission"] = row.id
        ids[who] = team_id
    return ids


def error_of(answer: Any) -> dict[str, Any]:
    body = answer.get_json()
    assert body is not None and "error" in body, answer.get_data(as_text=True)
    return dict(body["error"])


def test_dispute_raised_listed_and_decided_over_http(
    client: FlaskClient, bearer: Bearer, contest: dict[str, str]
) -> None:
    analyst, analyst2, organizer = bearer("analyst"), bearer("analyst2"), bearer("organizer")
    url = f"/api/v1/contests/{CONTEST}/disputes"
    raised = client.post(
        url,
        json={"kind": "score", "text": "分数有误", "submission": contest["analyst_submission"]},
        headers=analyst,
    )
    assert raised.status_code == 201, raised.get_json()
    dispute = raised.get_json()
    assert dispute["status"] == "open" and dispute["team"] == "龙城"
    for body, status, field in (
        ({"kind": "rank", "text": "x", "submission": contest["analyst_submission"]}, 400, "kind"),
        ({"kind": "score", "text": "x", "submission": 7}, 400, "submission"),
        ({"kind": "score", "text": None}, 400, "text"),
        ({"kind": "score", "text": "x"}, 400, "submission"),
        ({"kind": "disqualification", "text": "x"}, 409, None),
        ({"kind": "score", "text": "x", "submission": contest["analyst2_submission"]}, 403, None),
    ):
        answer = client.post(url, json=body, headers=analyst)
        assert answer.status_code == status, (body, answer.get_json())
        assert error_of(answer).get("field") == field
    assert client.post(url, data="not json", headers=analyst).status_code == 400
    assert (
        client.post(url, json={"kind": "score", "text": "x"}, headers=bearer("owner")).status_code
        == 403
    )
    assert (
        client.post("/api/v1/contests/nope/disputes", json={}, headers=analyst).status_code == 400
    )
    # Each sees what they may: the team its own, the organizer all, a stranger nothing.
    assert len(client.get(url, headers=analyst).get_json()["disputes"]) == 1
    assert client.get(url, headers=analyst2).get_json()["disputes"] == []
    assert len(client.get(url, headers=organizer).get_json()["disputes"]) == 1
    assert client.get(url, headers=bearer("owner")).status_code == 403
    decision = f"/api/v1/disputes/{dispute['id']}/decision"
    for body, who, status in (
        ({"decision": "reject", "comment": "ok"}, analyst, 403),
        ({"decision": "maybe", "comment": "ok"}, organizer, 400),
        ({"decision": "reject"}, organizer, 400),
        ({"decision": "reject", "comment": ""}, organizer, 400),
    ):
        answer = client.post(decision, json=body, headers=who)
        assert answer.status_code == status, (body, answer.get_json())
        error_of(answer)
    decided = client.post(
        decision, json={"decision": "reject", "comment": "复核无误"}, headers=organizer
    )
    assert decided.status_code == 200 and decided.get_json()["status"] == "rejected"
    again = client.post(decision, json={"decision": "uphold", "comment": "x"}, headers=organizer)
    assert again.status_code == 409 and error_of(again)["rule"] == "dispute.decided"
    for missing in ("/api/v1/disputes/999/decision", "/api/v1/disputes/abc/decision"):
        answer = client.post(
            missing, json={"decision": "reject", "comment": "x"}, headers=organizer
        )
        assert answer.status_code == 404
        error_of(answer)


def test_disqualification_disputed_and_lifted_over_http(
    client: FlaskClient, bearer: Bearer, contest: dict[str, str], sandbox_instance: Sandbox
) -> None:
    analyst2, organizer = bearer("analyst2"), bearer("organizer")
    url = f"/api/v1/teams/{contest['analyst2']}/disqualify"
    assert client.post(url, json={"reason": "作弊"}, headers=analyst2).status_code == 403
    assert error_of(client.post(url, json={}, headers=organizer))["field"] == "reason"
    assert (
        client.post(
            "/api/v1/teams/nope/disqualify", json={"reason": "x"}, headers=organizer
        ).status_code
        == 404
    )
    done = client.post(url, json={"reason": "作弊"}, headers=organizer)
    assert done.status_code == 200 and done.get_json()["disqualified_reason"] == "作弊"
    again = client.post(url, json={"reason": "作弊"}, headers=organizer)
    assert again.status_code == 409 and error_of(again)["rule"] == "team.disqualified"
    raised = client.post(
        f"/api/v1/contests/{CONTEST}/disputes",
        json={"kind": "disqualification", "text": "我们没有作弊"},
        headers=analyst2,
    )
    assert raised.status_code == 201, raised.get_json()
    upheld = client.post(
        f"/api/v1/disputes/{raised.get_json()['id']}/decision",
        json={"decision": "uphold", "comment": "证据不足"},
        headers=organizer,
    )
    assert upheld.status_code == 200 and upheld.get_json()["status"] == "upheld"
    mine = client.get(f"/api/v1/contests/{CONTEST}/team", headers=analyst2).get_json()["team"]
    assert mine["disqualified_at"] is None
    with sandbox_instance.tx() as session:
        actions = list(
            session.scalars(
                select(AuditEntry.action)
                .where(
                    AuditEntry.action.in_(
                        ("team.disqualified", "dispute.raised", "dispute.decided")
                    )
                )
                .order_by(AuditEntry.seq)
            )
        )
    assert actions == ["team.disqualified", "dispute.raised", "dispute.decided"]


def test_teams_merge_when_both_captains_post_the_pair(
    client: FlaskClient, bearer: Bearer, contest: dict[str, str]
) -> None:
    analyst, analyst2 = bearer("analyst"), bearer("analyst2")
    url = f"/api/v1/teams/{contest['analyst2']}/merge"
    into = {"into": contest["analyst"]}
    early = client.post(url, json=into, headers=analyst)
    assert early.status_code == 409 and error_of(early)["rule"] == "team.merge_not_requested"
    for body, status in (
        ({}, 400),
        ({"into": 3}, 400),
        ({"into": contest["analyst2"]}, 400),
        ({"into": "nope"}, 404),
    ):
        answer = client.post(url, json=body, headers=analyst2)
        assert answer.status_code == status, (body, answer.get_json())
        error_of(answer)
    assert client.post(url, json=into, headers=bearer("organizer")).status_code == 403
    asked = client.post(url, json=into, headers=analyst2)
    assert asked.status_code == 200 and asked.get_json()["merge"] == "requested"
    merged = client.post(url, json=into, headers=analyst)
    assert merged.status_code == 200, merged.get_json()
    assert merged.get_json()["merge"] == "merged"
    assert sorted(m["user"] for m in merged.get_json()["team"]["members"]) == [
        "analyst",
        "analyst2",
    ]
    mine = client.get(f"/api/v1/contests/{CONTEST}/team", headers=analyst2).get_json()["team"]
    assert mine["id"] == contest["analyst"]
    # Both submissions are the merged team's now: 运河's member disputes 运河's old score.
    raised = client.post(
        f"/api/v1/contests/{CONTEST}/disputes",
        json={"kind": "score", "text": "x", "submission": contest["analyst2_submission"]},
        headers=analyst2,
    )
    assert raised.status_code == 201 and raised.get_json()["team"] == "龙城"
