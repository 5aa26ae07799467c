"""Contest teams: real-name registration approved by the organizer, teams of at most
``max_team_size`` (5), invitations, one team per person per contest.

A person registers with their real name and institution; only an approved
registrant founds a team, is invited or accepts. Each step is audited.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from policies.permissions import Person, user_may_compete, user_may_organize_contests
from sandbox.access.users import user_named
from sandbox.actions import transaction
from sandbox.context import Sandbox
from sandbox.errors import Conflict, Forbidden, InvalidRequest, NotFound
from sandbox.integrity import audit
from sandbox.models import (
    Contest,
    ContestPhase,
    Membership,
    Registration,
    RegistrationStatus,
    Team,
    iso,
)

MEMBER = "member"
INVITED = "invited"
MAX_NAME_CHARS = 64
MAX_INSTITUTION_CHARS = 200


def register(
    sandbox: Sandbox, *, by: Person, contest: str, real_name: str, institution: str
) -> dict[str, Any]:
    """Register for ``contest`` under one's real name; the organizer decides."""
    with transaction(sandbox, by=by, action="contest.register", subject=contest) as session:
        if not user_may_compete(by):
            raise Forbidden("Only researchers' accounts register for contests.")
        found = contest_named(session, contest)
        if found.phase == ContestPhase.CLOSED.value:
            raise Conflict(f"The contest {contest} is closed.", rule="contest.closed")
        name = _text(real_name, "real_name", MAX_NAME_CHARS)
        where = _text(institution, "institution", MAX_INSTITUTION_CHARS)
        if _registration(session, found.id, by.id) is not None:
            raise Conflict(f"You are registered for {contest} already.", rule="contest.registered")
        registration = Registration(
            contest_id=found.id, user_id=by.id, real_name=name, institution=where
        )
        session.add(registration)
        session.flush()
        audit.append(
            session,
            actor=by.username,
            action="contest.registered",
            subject=found.slug,
            details={"registration": registration.id},
        )
        return registration_view(registration)


def decide_registration(
    sandbox: Sandbox, *, by: Person, contest: str, username: str, approve: bool
) -> dict[str, Any]:
    """The organizer approves (or rejects) a person's registration."""
    with transaction(sandbox, by=by, action="contest.decide", subject=contest) as session:
        found = _organized(session, by=by, contest=contest)
        person = user_named(session, username)
        registration = _registration(session, found.id, person.id)
        if registration is None:
            raise NotFound(f"{username} has not registered for {contest}.")
        if registration.status != RegistrationStatus.PENDING.value:
            raise Conflict(f"The registration was {registration.status} already.")
        registration.status = (
            RegistrationStatus.APPROVED.value if approve else RegistrationStatus.REJECTED.value
        )
        registration.decided_by = by.username
        audit.append(
            session,
            actor=by.username,
            action=f"contest.registration_{registration.status}",
            subject=found.slug,
            details={"user": username},
        )
        return registration_view(registration)


def create_team(sandbox: Sandbox, *, by: Person, contest: str, name: str) -> dict[str, Any]:
    """An approved registrant founds a team and is its captain."""
    with transaction(sandbox, by=by, action="team.create", subject=contest) as session:
        found = contest_named(session, contest)
        _check_approved(session, found, by)
        team_name = _text(name, "name", MAX_NAME_CHARS)
        if _team_of(session, found.id, by.id) is not None:
            raise Conflict("You are in a team of this contest already.", rule="team.one_per_person")
        if session.scalar(
            select(Team.id).where(Team.contest_id == found.id, Team.name == team_name)
        ):
            raise Conflict(f"A team named {team_name} exists already.", rule="team.name_taken")
        team = Team(contest_id=found.id, name=team_name, captain_id=by.id)
        session.add(team)
        session.flush()
        session.add(Membership(team_id=team.id, contest_id=found.id, user_id=by.id, status=MEMBER))
        session.flush()
        audit.append(
            session,
            actor=by.username,
            action="team.created",
            subject=team.id,
            details={"name": team_name},
        )
        return team_view(session, team)


def invite(sandbox: Sandbox, *, by: Person, team_id: str, username: str) -> dict[str, Any]:
    """The captain invites an approved registrant who is in no team yet."""
    with transaction(sandbox, by=by, action="team.invite", subject=team_id) as session:
        team = _team(session, team_id)
        if team.captain_id != by.id:
            raise Forbidden("Only the team's captain invites.", rule="team.captain")
        contest = session.get_one(Contest, team.contest_id)
        person = user_named(session, username)
        _check_approved(session, contest, person)
        if _team_of(session, contest.id, person.id) is not None:
            raise Conflict(
                f"{username} is in a team of this contest already.", rule="team.one_per_person"
            )
        _check_room(session, team, contest)
        if session.scalar(
            select(Membership.id).where(
                Membership.team_id == team.id, Membership.user_id == person.id
            )
        ):
            raise Conflict(f"{username} is invited already.")
        session.add(
            Membership(team_id=team.id, contest_id=contest.id, user_id=person.id, status=INVITED)
        )
        session.flush()
        audit.append(
            session,
            actor=by.username,
            action="team.invited",
            subject=team.id,
            details={"user": username},
        )
        return team_view(session, team)


def accept_invitation(sandbox: Sandbox, *, by: Person, team_id: str) -> dict[str, Any]:
    """Join the team that invited one; other invitations to the contest lapse."""
    with transaction(sandbox, by=by, action="team.accept", subject=team_id) as session:
        team = _team(session, team_id)
        contest = session.get_one(Contest, team.contest_id)
        mine = session.scalar(
            select(Membership).where(
                Membership.team_id == team.id,
                Membership.user_id == by.id,
                Membership.status == INVITED,
            )
        )
        if mine is None:
            raise NotFound("You have no invitation to this team.")
        if _team_of(session, contest.id, by.id) is not None:
            raise Conflict("You are in a team of this contest already.", rule="team.one_per_person")
        _check_room(session, team, contest)
        mine.status = MEMBER
        for other in session.scalars(
            select(Membership).where(
                Membership.contest_id == contest.id,
                Membership.user_id == by.id,
                Membership.status == INVITED,
            )
        ):
            session.delete(other)
        session.flush()
        audit.append(session, actor=by.username, action="team.joined", subject=team.id)
        return team_view(session, team)


def my_team(sandbox: Sandbox, *, by: Person, contest: str) -> dict[str, Any] | None:
    with sandbox.tx() as session:
        found = contest_named(session, contest)
        team = _team_of(session, found.id, by.id)
        return None if team is None else team_view(session, team)


# --- views and building blocks --------------------------------------------------------------


def registration_view(registration: Registration) -> dict[str, Any]:
    return {
        "id": registration.id,
        "user": registration.user.username,
        "real_name": registration.real_name,
        "institution": registration.institution,
        "status": registration.status,
        "decided_by": registration.decided_by,
        "created_at": iso(registration.created_at),
    }


def team_view(session: Session, team: Team) -> dict[str, Any]:
    members = session.scalars(select(Membership).where(Membership.team_id == team.id))
    return {
        "id": team.id,
        "name": team.name,
        "captain": _username(session, team.captain_id),
        "members": [{"user": m.user.username, "status": m.status} for m in members],
        "created_at": iso(team.created_at),
    }


def contest_named(session: Session, slug: str) -> Contest:
    found = (
        session.scalar(select(Contest).where(Contest.slug == slug))
        if isinstance(slug, str)
        else None
    )
    if found is None:
        raise NotFound(f"There is no contest {slug}.")
    return found


def team_of(session: Session, contest_id: str, user_id: int) -> Team | None:
    """The team a person is a member of in a contest (an invitation is not membership)."""
    return _team_of(session, contest_id, user_id)


def _organized(session: Session, *, by: Person, contest: str) -> Contest:
    found = contest_named(session, contest)
    if not user_may_organize_contests(by):
        raise Forbidden("Only the contest's organizers decide this.", rule="permission.organizer")
    return found


def _registration(session: Session, contest_id: str, user_id: int) -> Registration | None:
    return session.scalar(
        select(Registration).where(
            Registration.contest_id == contest_id, Registration.user_id == user_id
        )
    )


def _check_approved(session: Session, contest: Contest, person: Person) -> None:
    registration = _registration(session, contest.id, person.id)
    if registration is None or registration.status != RegistrationStatus.APPROVED.value:
        raise Forbidden(
            f"{person.username} has no approved registration for {contest.slug}: register "
            "with your real name and wait for the organizer's approval.",
            rule="contest.not_approved",
        )


def _team_of(session: Session, contest_id: str, user_id: int) -> Team | None:
    return session.scalar(
        select(Team)
        .join(Membership, Membership.team_id == Team.id)
        .where(
            Membership.contest_id == contest_id,
            Membership.user_id == user_id,
            Membership.status == MEMBER,
        )
    )


def _team(session: Session, team_id: str) -> Team:
    team = session.get(Team, team_id) if isinstance(team_id, str) else None
    if team is None:
        raise NotFound(f"There is no team {team_id}.")
    return team


def _check_room(session: Session, team: Team, contest: Contest) -> None:
    members = session.scalar(
        select(func.count(Membership.id)).where(
            Membership.team_id == team.id, Membership.status == MEMBER
        )
    )
    if (members or 0) >= contest.max_team_size:
        raise Conflict(
            f"The team has {contest.max_team_size} members: a team has at most that many.",
            rule="team.full",
        )


def _username(session: Session, user_id: int) -> str:
    from sandbox.models import User

    return session.get_one(User, user_id).username


def _text(value: object, field: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > limit:
        raise InvalidRequest(f"{field} must be 1 to {limit} characters.", field=field)
    return value.strip()
