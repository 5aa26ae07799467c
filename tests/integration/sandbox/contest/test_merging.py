"""Merging two teams: the captain of one asks, the captain of the other accepts by
merging too; the rules (same contest, registration or open phase, neither disqualified
nor the baseline, at most max_team_size members, both teams' counted submissions
within every track's quotas) are checked at both calls; every step is audited."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from policies.permissions import Role
from sandbox.access.users import create_user
from sandbox.contest import contests, teams
from sandbox.contest.submissions import counted
from sandbox.context import Sandbox
from sandbox.errors import Conflict, Forbidden, InvalidRequest, NotFound
from sandbox.models import AuditEntry, Submission, Team, Track, utcnow
from tests.factories import actor, insert_track

CONTEST = "health-2026"
DAILY, TOTAL = 3, 5


@pytest.fixture
def contest(sandbox_instance: Sandbox) -> str:
    """A contest in registration with one track (daily quota 3, total 5) and nine
    approved registrants t0..t8, in no team yet."""
    with sandbox_instance.tx() as session:
        for i in range(9):
            create_user(
                session,
                username=f"t{i}",
                password=f"team-pw-{i}-2026",
                role=Role.ANALYST,
                by="setup",
            )
    organizer = actor(sandbox_instance, "organizer")
    contests.create_contest(sandbox_instance, by=organizer, slug=CONTEST, title="健康医疗大赛")
    insert_track(sandbox_instance, CONTEST, daily_quota=DAILY, total_quota=TOTAL)
    for i in range(9):
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
    return CONTEST


def team(sandbox: Sandbox, name: str, captain: str, *members: str) -> str:
    founded = teams.create_team(sandbox, by=actor(sandbox, captain), contest=CONTEST, name=name)
    for member in members:
        teams.invite(sandbox, by=actor(sandbox, captain), team_id=founded["id"], username=member)
        teams.accept_invitation(sandbox, by=actor(sandbox, member), team_id=founded["id"])
    return str(founded["id"])


def submissions(
    sandbox: Sandbox, team_id: str, n: int, *, days_ago: int = 0, failed_in: str | None = None
) -> None:
    """``n`` submissions of the team on the track, inserted directly (not the pipeline)."""
    with sandbox.tx() as session:
        track = session.scalars(select(Track)).one()
        captain = session.get_one(Team, team_id).captain_id
        for _ in range(n):
            session.add(
                Submission(
                    track_id=track.id,
                    team_id=team_id,
                    submitted_by=captain,
                    code="def fit(data): ...",
                    code_sha256="0" * 64,
                    status="failed" if failed_in else "scored",
                    failed_in=failed_in,
                    created_at=utcnow() - dt.timedelta(days=days_ago),
                )
            )


def merge(sandbox: Sandbox, who: str, team_id: str, into: str) -> dict[str, Any]:
    return teams.merge_teams(sandbox, by=actor(sandbox, who), team_id=team_id, into_team_id=into)


def audited(sandbox: Sandbox, prefix: str) -> list[tuple[str, str, dict[str, Any]]]:
    with sandbox.tx() as session:
        rows = session.execute(
            select(AuditEntry.action, AuditEntry.subject, AuditEntry.details)
            .where(AuditEntry.action.startswith(prefix))
            .order_by(AuditEntry.seq)
        )
        return [(a, s, dict(d)) for a, s, d in rows]


def test_merge_takes_effect_when_both_captains_agree(
    sandbox_instance: Sandbox, contest: str
) -> None:
    dragon = team(sandbox_instance, "龙城", "t0", "t1")
    canal = team(sandbox_instance, "运河", "t2", "t3")
    submissions(sandbox_instance, canal, 2, days_ago=1)
    asked = merge(sandbox_instance, "t2", canal, dragon)
    assert asked["merge"] == "requested" and asked["team"]["merge_requested_into"] == dragon
    into = teams.my_team(sandbox_instance, by=actor(sandbox_instance, "t0"), contest=contest)
    assert into is not None and into["merge_requests_from"] == [canal]
    assert len(into["members"]) == 2  # the request is not a member
    with pytest.raises(Conflict) as twice:
        merge(sandbox_instance, "t2", canal, dragon)
    assert twice.value.details["rule"] == "team.merge_requested"
    merged = merge(sandbox_instance, "t0", canal, dragon)
    assert merged["merge"] == "merged" and merged["team"]["id"] == dragon
    assert sorted(m["user"] for m in merged["team"]["members"]) == ["t0", "t1", "t2", "t3"]
    assert merged["team"]["merge_requests_from"] == []
    mine = teams.my_team(sandbox_instance, by=actor(sandbox_instance, "t3"), contest=contest)
    assert mine is not None and mine["id"] == dragon
    with sandbox_instance.tx() as session:
        assert session.get_one(Team, canal).merged_into == dragon
        assert set(session.scalars(select(Submission.team_id))) == {dragon}
    # The merged team takes no one in any more, even from its former captain.
    with pytest.raises(Conflict) as gone:
        teams.invite(
            sandbox_instance, by=actor(sandbox_instance, "t2"), team_id=canal, username="t4"
        )
    assert gone.value.details["rule"] == "team.merged"
    assert audited(sandbox_instance, "team.merge") == [
        ("team.merge_requested", canal, {"into": dragon}),
        ("team.merged", canal, {"into": dragon, "members": 2, "submissions": 2}),
    ]


def test_merge_refused_without_a_request_or_to_anyone_but_the_captains(
    sandbox_instance: Sandbox, contest: str
) -> None:
    dragon = team(sandbox_instance, "龙城", "t0", "t1")
    canal = team(sandbox_instance, "运河", "t2")
    with pytest.raises(Conflict) as unasked:
        merge(sandbox_instance, "t0", canal, dragon)
    assert unasked.value.details["rule"] == "team.merge_not_requested"
    for who in ("t1", "t4", "organizer"):
        with pytest.raises(Forbidden) as refused:
            merge(sandbox_instance, who, canal, dragon)
        assert refused.value.details["rule"] == "team.captain"
    with pytest.raises(InvalidRequest):
        merge(sandbox_instance, "t0", dragon, dragon)
    with pytest.raises(NotFound):
        merge(sandbox_instance, "t0", "nope", dragon)
    # Asking a third team replaces the first request: the first captain can no longer accept.
    third = team(sandbox_instance, "太湖", "t4")
    merge(sandbox_instance, "t2", canal, dragon)
    merge(sandbox_instance, "t2", canal, third)
    with pytest.raises(Conflict) as replaced:
        merge(sandbox_instance, "t0", canal, dragon)
    assert replaced.value.details["rule"] == "team.merge_not_requested"
    assert [(a, d) for a, _, d in audited(sandbox_instance, "team.merge")] == [
        ("team.merge.refused", {"error": "forbidden", "rule": "team.captain"}),
    ] * 3 + [
        ("team.merge_requested", {"into": dragon}),
        ("team.merge_requested", {"into": third, "replaces": dragon}),
    ]


def test_merge_over_the_team_size_is_refused_at_either_call(
    sandbox_instance: Sandbox, contest: str
) -> None:
    dragon = team(sandbox_instance, "龙城", "t0", "t1", "t2")
    canal = team(sandbox_instance, "运河", "t3", "t4", "t5")
    with pytest.raises(Conflict) as big:
        merge(sandbox_instance, "t3", canal, dragon)
    assert big.value.details["rule"] == "team.merge_size"
    assert "6 members" in big.value.message and "at most 5" in big.value.message
    # Fits when asked; no longer when accepted, after the team asked took one more in.
    small = team(sandbox_instance, "太湖", "t6", "t7")
    merge(sandbox_instance, "t6", small, canal)
    teams.invite(sandbox_instance, by=actor(sandbox_instance, "t3"), team_id=canal, username="t8")
    teams.accept_invitation(sandbox_instance, by=actor(sandbox_instance, "t8"), team_id=canal)
    with pytest.raises(Conflict) as grown:
        merge(sandbox_instance, "t3", small, canal)
    assert grown.value.details["rule"] == "team.merge_size"
    assert grown.value.details["members"] == 6


@pytest.mark.parametrize(
    ("dragon_rows", "canal_rows", "quota", "counted"),
    [
        # (count, days ago, failed in) per batch; TOTAL is 5, DAILY is 3. A failure in
        # the hidden run counts; one in the smoke run does not.
        ([(3, 1, None)], [(3, 2, "hidden"), (4, 0, "smoke")], "total", 6),
        ([(2, 0, None)], [(2, 0, None), (4, 0, "smoke")], "daily", 4),
    ],
)
def test_merge_over_a_quota_is_refused(
    sandbox_instance: Sandbox,
    contest: str,
    dragon_rows: list[tuple[int, int, str | None]],
    canal_rows: list[tuple[int, int, str | None]],
    quota: str,
    counted: int,
) -> None:
    dragon = team(sandbox_instance, "龙城", "t0")
    canal = team(sandbox_instance, "运河", "t1")
    for team_id, rows in ((dragon, dragon_rows), (canal, canal_rows)):
        for n, days_ago, failed_in in rows:
            submissions(sandbox_instance, team_id, n, days_ago=days_ago, failed_in=failed_in)
    with pytest.raises(Conflict) as over:
        merge(sandbox_instance, "t1", canal, dragon)
    assert over.value.details["rule"] == "team.merge_quota"
    assert over.value.details["quota"] == quota
    limit = TOTAL if quota == "total" else DAILY
    assert over.value.details["counted"] == counted and over.value.details["limit"] == limit
    assert f"{counted} counted submissions on the track readmission" in over.value.message
    assert f"{quota} quota of {limit}" in over.value.message


def test_merge_counts_no_submission_that_failed_its_smoke_run(
    sandbox_instance: Sandbox, contest: str
) -> None:
    dragon = team(sandbox_instance, "龙城", "t0")
    canal = team(sandbox_instance, "运河", "t1")
    submissions(sandbox_instance, dragon, 3, days_ago=1)
    submissions(sandbox_instance, canal, 2)
    submissions(sandbox_instance, canal, 10, failed_in="smoke")
    with sandbox_instance.tx() as session:
        track_id = session.scalars(select(Track.id)).one()
        today = dt.datetime.combine(utcnow().date(), dt.time(), tzinfo=dt.UTC)
        assert counted(session, [dragon, canal], track_id) == 5
        assert counted(session, [canal], track_id, since=today) == 2
        assert counted(session, [dragon], track_id, since=today) == 0
    merge(sandbox_instance, "t1", canal, dragon)
    assert merge(sandbox_instance, "t0", canal, dragon)["merge"] == "merged"


def test_merge_refused_after_the_open_phase_and_for_disqualified_or_baseline_teams(
    sandbox_instance: Sandbox, contest: str
) -> None:
    organizer = actor(sandbox_instance, "organizer")
    dragon = team(sandbox_instance, "龙城", "t0")
    canal = team(sandbox_instance, "运河", "t1")
    lake = team(sandbox_instance, "太湖", "t2")
    base = team(sandbox_instance, "基线", "t3")
    with sandbox_instance.tx() as session:
        session.get_one(Team, base).is_baseline = True
    with pytest.raises(Conflict) as baseline:
        merge(sandbox_instance, "t3", base, dragon)
    assert baseline.value.details["rule"] == "team.merge_baseline"
    teams.disqualify(sandbox_instance, by=organizer, team_id=lake, reason="作弊")
    with pytest.raises(Conflict) as disqualified:
        merge(sandbox_instance, "t1", canal, lake)
    assert disqualified.value.details["rule"] == "team.merge_disqualified"
    contests.set_phase(sandbox_instance, by=organizer, contest=contest, phase="open")
    merge(sandbox_instance, "t1", canal, dragon)  # asked while open
    contests.set_phase(sandbox_instance, by=organizer, contest=contest, phase="final")
    with pytest.raises(Conflict) as final:
        merge(sandbox_instance, "t0", canal, dragon)
    assert final.value.details["rule"] == "team.merge_phase"
    assert "final" in final.value.message
    with sandbox_instance.tx() as session:
        assert session.get_one(Team, canal).merged_into is None
