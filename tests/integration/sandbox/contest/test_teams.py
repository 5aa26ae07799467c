"""Contest teams: real-name registration approved by the organizer, teams of at most 5,
invitations, one team per person per contest; every refusal clear, nothing half-done."""

from __future__ import annotations

import pytest

from policies.permissions import Role
from sandbox.access.users import create_user
from sandbox.contest import contests, teams
from sandbox.context import Sandbox
from sandbox.errors import Conflict, Forbidden
from tests.factories import actor


@pytest.fixture
def contest(sandbox_instance: Sandbox) -> str:
    with sandbox_instance.tx() as session:  # the demo users include the organizer
        for i in range(7):
            create_user(
                session,
                username=f"t{i}",
                password=f"team-pw-{i}-2026",
                role=Role.ANALYST,
                by="setup",
            )
    contests.create_contest(
        sandbox_instance,
        by=actor(sandbox_instance, "organizer"),
        slug="health-2026",
        title="健康医疗大数据创新应用大赛",
    )
    return "health-2026"


def approved(sandbox: Sandbox, contest: str, username: str) -> None:
    teams.register(
        sandbox,
        by=actor(sandbox, username),
        contest=contest,
        real_name="张伟",
        institution="常州大学",
    )
    teams.decide_registration(
        sandbox, by=actor(sandbox, "organizer"), contest=contest, username=username, approve=True
    )


def test_a_team_forms_from_approved_registrants_up_to_five(
    sandbox_instance: Sandbox, contest: str
) -> None:
    for i in range(7):
        approved(sandbox_instance, contest, f"t{i}")
    team = teams.create_team(
        sandbox_instance, by=actor(sandbox_instance, "t0"), contest=contest, name="龙城"
    )
    for i in range(1, 5):
        teams.invite(
            sandbox_instance, by=actor(sandbox_instance, "t0"), team_id=team["id"], username=f"t{i}"
        )
        teams.accept_invitation(
            sandbox_instance, by=actor(sandbox_instance, f"t{i}"), team_id=team["id"]
        )
    full = teams.my_team(sandbox_instance, by=actor(sandbox_instance, "t3"), contest=contest)
    assert full is not None and len(full["members"]) == 5 and full["captain"] == "t0"
    with pytest.raises(Conflict) as refused:
        teams.invite(
            sandbox_instance, by=actor(sandbox_instance, "t0"), team_id=team["id"], username="t5"
        )
    assert refused.value.details["rule"] == "team.full"
    # One team per person: a member founds no second team, nor is invited to one.
    with pytest.raises(Conflict):
        teams.create_team(
            sandbox_instance, by=actor(sandbox_instance, "t1"), contest=contest, name="other"
        )
    second = teams.create_team(
        sandbox_instance, by=actor(sandbox_instance, "t5"), contest=contest, name="运河"
    )
    with pytest.raises(Conflict) as again:
        teams.invite(
            sandbox_instance, by=actor(sandbox_instance, "t5"), team_id=second["id"], username="t2"
        )
    assert again.value.details["rule"] == "team.one_per_person"


def test_only_approved_registrants_compete_and_only_organizers_decide(
    sandbox_instance: Sandbox, contest: str
) -> None:
    teams.register(
        sandbox_instance,
        by=actor(sandbox_instance, "t0"),
        contest=contest,
        real_name="李娜",
        institution="市一院",
    )
    with pytest.raises(Forbidden) as waiting:
        teams.create_team(
            sandbox_instance, by=actor(sandbox_instance, "t0"), contest=contest, name="x"
        )
    assert waiting.value.details["rule"] == "contest.not_approved"
    with pytest.raises(Forbidden):
        teams.decide_registration(
            sandbox_instance,
            by=actor(sandbox_instance, "t1"),
            contest=contest,
            username="t0",
            approve=True,
        )
    with pytest.raises(Forbidden):
        teams.register(
            sandbox_instance,
            by=actor(sandbox_instance, "owner"),
            contest=contest,
            real_name="王",
            institution="x",
        )
    with pytest.raises(Conflict):
        teams.register(
            sandbox_instance,
            by=actor(sandbox_instance, "t0"),
            contest=contest,
            real_name="李娜",
            institution="市一院",
        )
    teams.decide_registration(
        sandbox_instance,
        by=actor(sandbox_instance, "organizer"),
        contest=contest,
        username="t0",
        approve=False,
    )
    with pytest.raises(Forbidden):
        teams.create_team(
            sandbox_instance, by=actor(sandbox_instance, "t0"), contest=contest, name="x"
        )


def test_phases_move_forward_only(sandbox_instance: Sandbox, contest: str) -> None:
    organizer = actor(sandbox_instance, "organizer")
    assert (
        contests.set_phase(sandbox_instance, by=organizer, contest=contest, phase="open")["phase"]
        == "open"
    )
    from sandbox.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        contests.set_phase(sandbox_instance, by=organizer, contest=contest, phase="registration")
    with pytest.raises(Forbidden):
        contests.set_phase(
            sandbox_instance, by=actor(sandbox_instance, "t0"), contest=contest, phase="final"
        )


def test_tracks_name_a_published_version_a_fitting_metric_and_keep_their_split_key_sealed(
    sandbox_instance: Sandbox, contest: str
) -> None:
    from sqlalchemy import select

    from sandbox.errors import InvalidRequest
    from sandbox.models import Track

    organizer = actor(sandbox_instance, "organizer")
    terms = contests.TrackTerms(
        slug="readmission",
        title="30天再入院预测",
        dataset="health",
        task="binary",
        target="visits.readmitted_30d",
        metric="roc_auc",
    )
    track = contests.add_track(sandbox_instance, by=organizer, contest=contest, terms=terms)
    assert track["dataset_version"] and "split_key" not in track
    with sandbox_instance.tx() as session:
        stored = session.scalars(select(Track)).one()
        key = sandbox_instance.store.open_key(f"split-{stored.id}", stored.split_key)
        assert len(key) == 32 and key.hex() not in str(stored.split_key)
    from dataclasses import replace

    with pytest.raises(InvalidRequest) as unfit:
        contests.add_track(
            sandbox_instance,
            by=organizer,
            contest=contest,
            terms=replace(terms, slug="x", metric="rmse"),
        )
    assert "does not score binary" in unfit.value.message
    with pytest.raises(InvalidRequest):
        contests.add_track(
            sandbox_instance,
            by=organizer,
            contest=contest,
            terms=replace(terms, slug="y", target="patients.name"),
        )
    with pytest.raises(Forbidden):
        contests.add_track(
            sandbox_instance, by=actor(sandbox_instance, "owner"), contest=contest, terms=terms
        )
