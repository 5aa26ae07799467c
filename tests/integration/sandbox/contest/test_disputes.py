"""Disputes (异议): a team member objects to one of the team's scores or to its
disqualification; only the contest's organizer decides, once, with a comment; every
step is in the audit log, and none of the free text is."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from policies.permissions import Role
from sandbox.access.users import create_user
from sandbox.contest import contests, disputes, teams
from sandbox.context import Sandbox
from sandbox.errors import Conflict, Forbidden, InvalidRequest, NotFound
from sandbox.models import AuditEntry, Submission
from tests.factories import actor, insert_track

CONTEST = "health-2026"
OBJECTION = "我们的分数计算有误 the score looks wrong"


@pytest.fixture
def contest(sandbox_instance: Sandbox) -> dict[str, Any]:
    """Team 龙城 (t0 captain, t1) with a submission, team 运河 (t2), t3 approved but in
    no team, and a second organizer org2 who does not run this contest."""
    with sandbox_instance.tx() as session:
        for i in range(4):
            create_user(
                session,
                username=f"t{i}",
                password=f"team-pw-{i}-2026",
                role=Role.ANALYST,
                by="setup",
            )
        create_user(
            session, username="org2", password="organizer2-pw-2026", role=Role.ORGANIZER, by="setup"
        )
    organizer = actor(sandbox_instance, "organizer")
    contests.create_contest(sandbox_instance, by=organizer, slug=CONTEST, title="健康医疗大赛")
    track_id = insert_track(sandbox_instance, CONTEST)
    for i in range(4):
        teams.register(
            sandbox_instance,
            by=actor(sandbox_instance, f"t{i}"),
            contest=CONTEST,
            real_name="张伟",
            institution="常州大学",
        )
        teams.decide_registration(
            sandbox_instance, by=organizer, contest=CONTEST, username=f"t{i}", approve=True
        )
    dragon = teams.create_team(
        sandbox_instance, by=actor(sandbox_instance, "t0"), contest=CONTEST, name="龙城"
    )
    teams.invite(
        sandbox_instance, by=actor(sandbox_instance, "t0"), team_id=dragon["id"], username="t1"
    )
    teams.accept_invitation(
        sandbox_instance, by=actor(sandbox_instance, "t1"), team_id=dragon["id"]
    )
    canal = teams.create_team(
        sandbox_instance, by=actor(sandbox_instance, "t2"), contest=CONTEST, name="运河"
    )
    return {
        "dragon": dragon["id"],
        "canal": canal["id"],
        "dragon_submission": submission(sandbox_instance, track_id, dragon["id"], "t0"),
        "canal_submission": submission(sandbox_instance, track_id, canal["id"], "t2"),
    }


def submission(sandbox: Sandbox, track_id: str, team_id: str, who: str) -> str:
    """A scored submission, inserted directly (the pipeline is not what is tested here)."""
    submitted_by = actor(sandbox, who).id
    with sandbox.tx() as session:
        row = Submission(
            track_id=track_id,
            team_id=team_id,
            submitted_by=submitted_by,
            code="def fit(data): ...",
            code_sha256="0" * 64,
            status="scored",
            failed_in=None,
        )
        session.add(row)
        session.flush()
        return row.id


def audited(sandbox: Sandbox, prefix: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    with sandbox.tx() as session:
        rows = session.execute(
            select(AuditEntry.actor, AuditEntry.action, AuditEntry.subject, AuditEntry.details)
            .where(AuditEntry.action.startswith(prefix))
            .order_by(AuditEntry.seq)
        )
        return [(a, b, c, dict(d)) for a, b, c, d in rows]


def test_dispute_on_a_score_is_raised_seen_by_its_team_and_decided_once(
    sandbox_instance: Sandbox, contest: dict[str, Any]
) -> None:
    raised = disputes.raise_dispute(
        sandbox_instance,
        by=actor(sandbox_instance, "t1"),
        contest=CONTEST,
        kind="score",
        text=OBJECTION,
        submission_id=contest["dragon_submission"],
    )
    assert raised["status"] == "open" and raised["team"] == "龙城" and raised["raised_by"] == "t1"
    assert raised["submission"] == contest["dragon_submission"] and raised["decided_at"] is None
    # The whole team and the organizer see it; the other team does not.
    mine = disputes.list_disputes(
        sandbox_instance, by=actor(sandbox_instance, "t0"), contest=CONTEST
    )
    assert [d["id"] for d in mine] == [raised["id"]] and mine[0]["text"] == OBJECTION
    assert (
        disputes.list_disputes(sandbox_instance, by=actor(sandbox_instance, "t2"), contest=CONTEST)
        == []
    )
    organizer = actor(sandbox_instance, "organizer")
    assert len(disputes.list_disputes(sandbox_instance, by=organizer, contest=CONTEST)) == 1
    decided = disputes.decide_dispute(
        sandbox_instance, by=organizer, dispute_id=raised["id"], uphold=False, comment="复核无误"
    )
    assert decided["status"] == "rejected" and decided["decision"] == "复核无误"
    assert decided["decided_by"] == "organizer" and decided["decided_at"] is not None
    with pytest.raises(Conflict) as twice:
        disputes.decide_dispute(
            sandbox_instance, by=organizer, dispute_id=raised["id"], uphold=True, comment="again"
        )
    assert twice.value.details["rule"] == "dispute.decided"
    entries = audited(sandbox_instance, "dispute.")
    assert [(e[0], e[1], e[2]) for e in entries] == [
        ("t1", "dispute.raised", CONTEST),
        ("organizer", "dispute.decided", CONTEST),
    ]
    assert entries[0][3] == {
        "dispute": raised["id"],
        "kind": "score",
        "team": contest["dragon"],
        "submission": contest["dragon_submission"],
    }
    assert entries[1][3]["decision"] == "rejected" and entries[1][3]["reinstated"] is False
    assert OBJECTION not in str(entries) and "复核无误" not in str(entries)


def test_dispute_raised_only_by_a_member_about_their_own_team(
    sandbox_instance: Sandbox, contest: dict[str, Any]
) -> None:
    def raise_as(who: str, **terms: Any) -> dict[str, Any]:
        return disputes.raise_dispute(
            sandbox_instance,
            by=actor(sandbox_instance, who),
            contest=CONTEST,
            **{"kind": "score", "text": OBJECTION, **terms},
        )

    for outsider in ("t3", "owner", "organizer"):
        with pytest.raises(Forbidden) as refused:
            raise_as(outsider, submission_id=contest["dragon_submission"])
        assert refused.value.details["rule"] == "dispute.team_member"
    with pytest.raises(Forbidden) as other_team:
        raise_as("t0", submission_id=contest["canal_submission"])
    assert other_team.value.details["rule"] == "dispute.own_submission"
    with pytest.raises(Forbidden) as unknown:
        raise_as("t0", submission_id="0" * 32)
    assert unknown.value.message == other_team.value.message
    for bad, field in (
        ({"submission_id": None}, "submission"),
        ({"kind": "rank", "submission_id": contest["dragon_submission"]}, "kind"),
        ({"text": " ", "submission_id": contest["dragon_submission"]}, "text"),
        ({"text": "x" * 2001, "submission_id": contest["dragon_submission"]}, "text"),
        ({"kind": "disqualification", "submission_id": contest["dragon_submission"]}, "submission"),
    ):
        with pytest.raises(InvalidRequest) as invalid:
            raise_as("t0", **bad)
        assert invalid.value.details["field"] == field
    with pytest.raises(Conflict) as not_disqualified:
        raise_as("t0", kind="disqualification")
    assert not_disqualified.value.details["rule"] == "dispute.not_disqualified"
    with pytest.raises(NotFound):
        disputes.raise_dispute(
            sandbox_instance,
            by=actor(sandbox_instance, "t0"),
            contest="nope",
            kind="score",
            text="x",
        )
    with pytest.raises(Forbidden):
        disputes.list_disputes(sandbox_instance, by=actor(sandbox_instance, "t3"), contest=CONTEST)
    refusals = audited(sandbox_instance, "dispute.")
    assert [e[1] for e in refusals] == ["dispute.raise.refused"] * 5 + ["dispute.list.refused"]
    assert {e[3]["rule"] for e in refusals} == {"dispute.team_member", "dispute.own_submission"}


def test_dispute_decided_only_by_the_contest_organizer_with_a_comment(
    sandbox_instance: Sandbox, contest: dict[str, Any]
) -> None:
    raised = disputes.raise_dispute(
        sandbox_instance,
        by=actor(sandbox_instance, "t0"),
        contest=CONTEST,
        kind="score",
        text=OBJECTION,
        submission_id=contest["dragon_submission"],
    )
    for who in ("t0", "t2", "org2", "auditor"):
        with pytest.raises(Forbidden) as refused:
            disputes.decide_dispute(
                sandbox_instance,
                by=actor(sandbox_instance, who),
                dispute_id=raised["id"],
                uphold=True,
                comment="ok",
            )
        assert refused.value.details["rule"] == "permission.organizer"
    organizer = actor(sandbox_instance, "organizer")
    for comment in ("", "  ", "x" * 2001):
        with pytest.raises(InvalidRequest) as invalid:
            disputes.decide_dispute(
                sandbox_instance,
                by=organizer,
                dispute_id=raised["id"],
                uphold=True,
                comment=comment,
            )
        assert invalid.value.details["field"] == "comment"
    with pytest.raises(NotFound):
        disputes.decide_dispute(
            sandbox_instance, by=organizer, dispute_id=raised["id"] + 1, uphold=True, comment="ok"
        )
    # org2 organizes contests, but not this one: it sees only what a stranger sees.
    with pytest.raises(Forbidden):
        disputes.list_disputes(
            sandbox_instance, by=actor(sandbox_instance, "org2"), contest=CONTEST
        )
    upheld = disputes.decide_dispute(
        sandbox_instance, by=organizer, dispute_id=raised["id"], uphold=True, comment="重新评分"
    )
    assert upheld["status"] == "upheld"
    assert [e[1] for e in audited(sandbox_instance, "dispute.decide")] == [
        "dispute.decide.refused"
    ] * 4 + ["dispute.decided"]


def test_disqualification_is_disputed_and_upholding_it_reinstates_the_team(
    sandbox_instance: Sandbox, contest: dict[str, Any]
) -> None:
    organizer = actor(sandbox_instance, "organizer")
    reason = "提交了外部数据 used outside data"
    shown = teams.disqualify(
        sandbox_instance, by=organizer, team_id=contest["dragon"], reason=reason
    )
    assert shown["disqualified_at"] is not None and shown["disqualified_reason"] == reason
    raised = disputes.raise_dispute(
        sandbox_instance,
        by=actor(sandbox_instance, "t1"),
        contest=CONTEST,
        kind="disqualification",
        text=OBJECTION,
    )
    assert raised["kind"] == "disqualification" and raised["submission"] is None
    disputes.decide_dispute(
        sandbox_instance, by=organizer, dispute_id=raised["id"], uphold=True, comment="证据不足"
    )
    mine = teams.my_team(sandbox_instance, by=actor(sandbox_instance, "t0"), contest=CONTEST)
    assert mine is not None
    assert mine["disqualified_at"] is None and mine["disqualified_reason"] == ""
    # Reinstated, the team may be disqualified again.
    teams.disqualify(sandbox_instance, by=organizer, team_id=contest["dragon"], reason="again")
    steps = [(e[1], e[3]) for e in audited(sandbox_instance, "team.disq")]
    steps += [(e[1], e[3]) for e in audited(sandbox_instance, "dispute.")]
    assert [s[0] for s in steps] == [
        "team.disqualified",
        "team.disqualified",
        "dispute.raised",
        "dispute.decided",
    ]
    assert steps[3][1]["reinstated"] is True and steps[3][1]["decision"] == "upheld"
    assert reason not in str(steps) and OBJECTION not in str(steps)


def test_disqualify_refused_to_others_twice_and_without_a_reason(
    sandbox_instance: Sandbox, contest: dict[str, Any]
) -> None:
    for who in ("t0", "org2", "owner"):
        with pytest.raises(Forbidden) as refused:
            teams.disqualify(
                sandbox_instance,
                by=actor(sandbox_instance, who),
                team_id=contest["canal"],
                reason="x",
            )
        assert refused.value.details["rule"] == "permission.organizer"
    organizer = actor(sandbox_instance, "organizer")
    with pytest.raises(InvalidRequest) as no_reason:
        teams.disqualify(sandbox_instance, by=organizer, team_id=contest["canal"], reason=" ")
    assert no_reason.value.details["field"] == "reason"
    with pytest.raises(NotFound):
        teams.disqualify(sandbox_instance, by=organizer, team_id="nope", reason="x")
    teams.disqualify(sandbox_instance, by=organizer, team_id=contest["canal"], reason="作弊")
    with pytest.raises(Conflict) as again:
        teams.disqualify(sandbox_instance, by=organizer, team_id=contest["canal"], reason="作弊")
    assert again.value.details["rule"] == "team.disqualified"
    assert [e[1] for e in audited(sandbox_instance, "team.disq")] == [
        "team.disqualify.refused"
    ] * 3 + ["team.disqualified"]
