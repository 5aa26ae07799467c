"""Who is in a contest, as the web pages show it: a person's own standing (their
registration, their team, the teams inviting them, and for a captain the teams theirs
may merge with), and for the contest's organizer every registration and every team.

Reads only; the changes are :mod:`sandbox.contest.teams`' actions. Real names and
institutions are shown to the person themselves and the contest's own organizer.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from policies.permissions import Person
from sandbox.actions import transaction
from sandbox.contest.teams import (
    INVITED,
    check_organizes,
    contest_named,
    organizes,
    registration_view,
    team_of,
    team_view,
)
from sandbox.context import Sandbox
from sandbox.models import Membership, Registration, Team, User


def my_standing(sandbox: Sandbox, *, by: Person, contest: str) -> dict[str, Any]:
    """The person's registration, team and invitations in ``contest``, and whether they
    run it."""
    with sandbox.tx() as session:
        found = contest_named(session, contest)
        registration = session.scalar(
            select(Registration).where(
                Registration.contest_id == found.id, Registration.user_id == by.id
            )
        )
        team = team_of(session, found.id, by.id)
        inviting = session.scalars(
            select(Team)
            .join(Membership, Membership.team_id == Team.id)
            .where(
                Membership.contest_id == found.id,
                Membership.user_id == by.id,
                Membership.status == INVITED,
                Team.merged_into.is_(None),
            )
            .order_by(Team.name)
        )
        return {
            "registration": None if registration is None else registration_view(registration),
            "team": None if team is None else team_view(session, team),
            "invitations": [team_view(session, t) for t in inviting],
            "merge": _merge(session, team) if team and team.captain_id == by.id else None,
            "organizes": organizes(by, found),
        }


def _merge(session: Session, team: Team) -> dict[str, Any]:
    """For a captain: the teams theirs might merge into (by name), the one it asked, and
    the teams asking to merge into it. Names only: merge_teams checks the rules."""

    def named(team_id: str) -> dict[str, str]:
        found = session.get_one(Team, team_id)
        return {"id": found.id, "name": found.name, "captain": _captain(session, found)}

    others = session.scalars(
        select(Team)
        .where(
            Team.contest_id == team.contest_id,
            Team.id != team.id,
            Team.merged_into.is_(None),
            Team.disqualified_at.is_(None),
            Team.is_baseline.is_(False),
        )
        .order_by(Team.name)
    )
    view = team_view(session, team)
    asked = view["merge_requested_into"]
    return {
        "partners": [{"id": t.id, "name": t.name} for t in others],
        "asked": None if asked is None else named(asked),
        "asking": [named(t) for t in view["merge_requests_from"]],
    }


def _captain(session: Session, team: Team) -> str:
    return session.get_one(User, team.captain_id).username


def registrations(sandbox: Sandbox, *, by: Person, contest: str) -> list[dict[str, Any]]:
    """Every registration of the contest, oldest first, for its own organizer."""
    with transaction(
        sandbox, by=by, action="contest.registrations", subject=str(contest)
    ) as session:
        found = contest_named(session, contest)
        check_organizes(by, found)
        rows = session.scalars(
            select(Registration)
            .where(Registration.contest_id == found.id)
            .order_by(Registration.created_at, Registration.id)
        )
        return [registration_view(r) for r in rows]


def contest_teams(sandbox: Sandbox, *, by: Person, contest: str) -> list[dict[str, Any]]:
    """Every team of the contest not merged into another, for its own organizer."""
    with transaction(sandbox, by=by, action="contest.teams", subject=str(contest)) as session:
        found = contest_named(session, contest)
        check_organizes(by, found)
        rows = session.scalars(
            select(Team)
            .where(Team.contest_id == found.id, Team.merged_into.is_(None))
            .order_by(Team.created_at, Team.name)
        )
        return [{**team_view(session, t), "baseline": t.is_baseline} for t in rows]
