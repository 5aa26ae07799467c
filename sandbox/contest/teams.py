"""Contest teams: real-name registration approved by the organizer, teams of at most
``max_team_size`` (5), invitations, one team per person per contest; disqualification
by the organizer, and merging two teams when both captains agree.

A person registers with their real name and institution; only an approved
registrant founds a team, is invited or accepts. Each step is audited.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from policies.permissions import (
    Person,
    user_may_compete,
    user_runs_contest,
)
from sandbox.access.users import user_named
from sandbox.actions import transaction
from sandbox.contest.submissions import counted as counted_submissions
from sandbox.contest.submissions import day_start
from sandbox.context import Sandbox
from sandbox.errors import Conflict, Forbidden, InvalidRequest, NotFound
from sandbox.integrity import audit
from sandbox.models import (
    Contest,
    ContestPhase,
    Dispute,
    Membership,
    Registration,
    RegistrationStatus,
    Submission,
    Team,
    Track,
    iso,
    utcnow,
)

MEMBER = "member"
INVITED = "invited"
# A pending merge: the requesting team's captain, marked in the team they asked to join.
MERGE_REQUESTED = "merge_requested"
MAX_NAME_CHARS = 64
MAX_INSTITUTION_CHARS = 200
MAX_REASON_CHARS = 2000
# A submission that failed its smoke run (on mock data) never saw hidden data: it is free.
SMOKE_RUN = "smoke"
MERGEABLE_PHASES = (ContestPhase.REGISTRATION.value, ContestPhase.OPEN.value)


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
        name = bounded_text(real_name, "real_name", MAX_NAME_CHARS)
        where = bounded_text(institution, "institution", MAX_INSTITUTION_CHARS)
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
        team_name = bounded_text(name, "name", MAX_NAME_CHARS)
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
        _check_not_merged(team)
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


def disqualify(sandbox: Sandbox, *, by: Person, team_id: str, reason: str) -> dict[str, Any]:
    """The contest's organizer disqualifies a team, with a reason the team reads.

    The reason stays in the team's row, out of the audit log: it is free text.
    """
    with transaction(sandbox, by=by, action="team.disqualify", subject=str(team_id)) as session:
        team = _locked_team(session, team_id)
        contest = session.get_one(Contest, team.contest_id)
        check_organizes(by, contest)
        why = bounded_text(reason, "reason", MAX_REASON_CHARS)
        _check_not_merged(team)
        if team.disqualified_at is not None:
            raise Conflict(
                f"The team {team.name} is disqualified already.", rule="team.disqualified"
            )
        team.disqualified_at = utcnow()
        team.disqualified_reason = why
        audit.append(
            session,
            actor=by.username,
            action="team.disqualified",
            subject=team.id,
            details={"contest": contest.slug},
        )
        return team_view(session, team)


def merge_teams(sandbox: Sandbox, *, by: Person, team_id: str, into_team_id: str) -> dict[str, Any]:
    """Merge the team ``team_id`` into ``into_team_id`` once both captains have agreed.

    Both captains call this with the same pair. The first call, by the captain of
    ``team_id``, is the request: it is kept as a ``merge_requested`` row of
    ``team_members`` (that captain, in the team asked) and audited. The call by the
    captain of ``into_team_id`` accepts it, and the merge takes effect then. The rules
    (:func:`_check_mergeable`) are checked at both calls, since members and
    submissions change in between. A team has one pending request: asking another
    team replaces it. Answers ``{"merge": "requested" | "merged", "team": view}``.
    """
    with transaction(sandbox, by=by, action="team.merge", subject=str(team_id)) as session:
        if team_id == into_team_id:
            raise InvalidRequest("A team merges into another team.", field="into")
        merging, into = _locked_pair(session, team_id, into_team_id)
        today = day_start(sandbox)
        if by.id == merging.captain_id:
            return {
                "merge": "requested",
                "team": _request_merge(session, by, merging, into, today=today),
            }
        if by.id == into.captain_id:
            return {
                "merge": "merged",
                "team": _accept_merge(session, by, merging, into, today=today),
            }
        raise Forbidden("Only the two teams' captains merge them.", rule="team.captain")


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
    members = session.scalars(
        select(Membership).where(
            Membership.team_id == team.id, Membership.status.in_((MEMBER, INVITED))
        )
    )
    asked = _merge_request_of(session, team)
    return {
        "id": team.id,
        "name": team.name,
        "captain": _username(session, team.captain_id),
        "members": [{"user": m.user.username, "status": m.status} for m in members],
        "disqualified_at": iso(team.disqualified_at),
        "disqualified_reason": team.disqualified_reason,
        "merged_into": team.merged_into,
        "merge_requested_into": None if asked is None else asked.team_id,
        "merge_requests_from": [t.id for t in _teams_asking(session, team)],
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


def organizes(by: Person, contest: Contest) -> bool:
    """The contest's own organizer (or an admin): another contest's organizer decides
    nothing here."""
    return user_runs_contest(by, contest.organizer_id)


def check_organizes(by: Person, contest: Contest) -> None:
    if not organizes(by, contest):
        raise Forbidden("Only the contest's organizer decides this.", rule="permission.organizer")


def _organized(session: Session, *, by: Person, contest: str) -> Contest:
    found = contest_named(session, contest)
    check_organizes(by, found)
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
    if _member_count(session, team) >= contest.max_team_size:
        raise Conflict(
            f"The team has {contest.max_team_size} members: a team has at most that many.",
            rule="team.full",
        )


# --- merging ------------------------------------------------------------------------------


def _request_merge(
    session: Session, by: Person, merging: Team, into: Team, *, today: dt.datetime
) -> dict[str, Any]:
    _check_mergeable(session, merging, into, today=today)
    earlier = _merge_request_of(session, merging)
    if earlier is not None and earlier.team_id == into.id:
        raise Conflict(
            f"You have asked to merge into {into.name} already: its captain accepts by "
            "merging too.",
            rule="team.merge_requested",
        )
    details: dict[str, object] = {"into": into.id}
    if earlier is not None:
        details["replaces"] = earlier.team_id
        session.delete(earlier)
        session.flush()
    session.add(
        Membership(
            team_id=into.id, contest_id=into.contest_id, user_id=by.id, status=MERGE_REQUESTED
        )
    )
    session.flush()
    audit.append(
        session,
        actor=by.username,
        action="team.merge_requested",
        subject=merging.id,
        details=details,
    )
    return team_view(session, merging)


def _accept_merge(
    session: Session, by: Person, merging: Team, into: Team, *, today: dt.datetime
) -> dict[str, Any]:
    request = _merge_request_of(session, merging)
    if request is None or request.team_id != into.id:
        raise Conflict(
            f"The captain of {merging.name} has not asked to merge into {into.name}: "
            "they ask first.",
            rule="team.merge_not_requested",
        )
    _check_mergeable(session, merging, into, today=today)
    moving = list(
        session.scalars(
            select(Membership).where(Membership.team_id == merging.id, Membership.status == MEMBER)
        )
    )
    moving_users = [m.user_id for m in moving]
    # What lapses: the merged team's invitations and the requests to merge into it;
    # in the team joined, this request and any invitation of the members moving in.
    lapsed = select(Membership).where(
        Membership.status != MEMBER,
        or_(
            Membership.team_id == merging.id,
            (Membership.team_id == into.id) & Membership.user_id.in_(moving_users),
        ),
    )
    for marker in session.scalars(lapsed):
        session.delete(marker)
    session.flush()
    for member in moving:
        member.team_id = into.id
    submissions = session.scalar(
        select(func.count(Submission.id)).where(Submission.team_id == merging.id)
    )
    session.execute(
        update(Submission).where(Submission.team_id == merging.id).values(team_id=into.id)
    )
    session.execute(update(Dispute).where(Dispute.team_id == merging.id).values(team_id=into.id))
    merging.merged_into = into.id
    session.flush()
    audit.append(
        session,
        actor=by.username,
        action="team.merged",
        subject=merging.id,
        details={"into": into.id, "members": len(moving), "submissions": submissions or 0},
    )
    return team_view(session, into)


def _check_mergeable(session: Session, merging: Team, into: Team, *, today: dt.datetime) -> None:
    """The merge rules, each refusal naming its rule and its numbers."""
    if merging.contest_id != into.contest_id:
        raise Conflict("Only teams of the same contest merge.", rule="team.merge_contest")
    contest = session.get_one(Contest, into.contest_id)
    if contest.phase not in MERGEABLE_PHASES:
        raise Conflict(
            f"The contest is in its {contest.phase} phase: teams merge only in "
            f"{' or '.join(MERGEABLE_PHASES)}.",
            rule="team.merge_phase",
        )
    for team in (merging, into):
        _check_not_merged(team)
        if team.is_baseline:
            raise Conflict(
                "The organizer's baseline team merges with none.", rule="team.merge_baseline"
            )
        if team.disqualified_at is not None:
            raise Conflict(
                f"The team {team.name} is disqualified: it merges with none.",
                rule="team.merge_disqualified",
            )
    members = _member_count(session, merging) + _member_count(session, into)
    if members > contest.max_team_size:
        raise Conflict(
            f"Merged, the team would have {members} members: a team has at most "
            f"{contest.max_team_size}.",
            rule="team.merge_size",
            members=members,
            limit=contest.max_team_size,
        )
    _check_merge_quota(session, contest, (merging.id, into.id), today=today)


def _check_merge_quota(
    session: Session, contest: Contest, team_ids: tuple[str, ...], *, today: dt.datetime
) -> None:
    """The merged team keeps both teams' submissions: together they must fit every
    track's total quota, and today's its daily quota (the day of the sandbox's time
    zone, as the quotas count it)."""
    tracks = session.scalars(
        select(Track).where(Track.contest_id == contest.id).order_by(Track.slug)
    )
    for track in tracks:
        for quota, limit, since in (
            ("total", track.total_quota, None),
            ("daily", track.daily_quota, today),
        ):
            counted = counted_submissions(session, list(team_ids), track.id, since=since)
            if counted > limit:
                when = "in all" if since is None else "today"
                raise Conflict(
                    f"Together the teams have {counted} counted submissions on the track "
                    f"{track.slug} {when}: over its {quota} quota of {limit}.",
                    rule="team.merge_quota",
                    track=track.slug,
                    quota=quota,
                    counted=counted,
                    limit=limit,
                )


def _merge_request_of(session: Session, team: Team) -> Membership | None:
    """The team's pending request to merge into another (its captain's marker there)."""
    return session.scalar(
        select(Membership).where(
            Membership.contest_id == team.contest_id,
            Membership.user_id == team.captain_id,
            Membership.status == MERGE_REQUESTED,
            Membership.team_id != team.id,
        )
    )


def _teams_asking(session: Session, team: Team) -> list[Team]:
    """The teams whose captains asked to merge into this one."""
    markers = select(Membership.user_id).where(
        Membership.team_id == team.id, Membership.status == MERGE_REQUESTED
    )
    return list(
        session.scalars(
            select(Team)
            .where(
                Team.contest_id == team.contest_id,
                Team.captain_id.in_(markers),
                Team.merged_into.is_(None),
                Team.id != team.id,
            )
            .order_by(Team.name)
        )
    )


def _locked_pair(session: Session, team_id: str, into_team_id: str) -> tuple[Team, Team]:
    # Always in the same order, so two captains merging at once wait, not deadlock.
    first, second = sorted((team_id, into_team_id))
    locked = {first: _locked_team(session, first), second: _locked_team(session, second)}
    return locked[team_id], locked[into_team_id]


def _locked_team(session: Session, team_id: str) -> Team:
    """The team, locked FOR NO KEY UPDATE before the first audit entry (CONTRIBUTING.md)."""
    team = (
        session.scalar(select(Team).where(Team.id == team_id).with_for_update(key_share=True))
        if isinstance(team_id, str)
        else None
    )
    if team is None:
        raise NotFound(f"There is no team {team_id}.")
    return team


def _check_not_merged(team: Team) -> None:
    if team.merged_into is not None:
        raise Conflict(f"The team {team.name} was merged into another.", rule="team.merged")


def _member_count(session: Session, team: Team) -> int:
    return (
        session.scalar(
            select(func.count(Membership.id)).where(
                Membership.team_id == team.id, Membership.status == MEMBER
            )
        )
        or 0
    )


def _username(session: Session, user_id: int) -> str:
    from sandbox.models import User

    return session.get_one(User, user_id).username


def bounded_text(value: object, field: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > limit:
        raise InvalidRequest(f"{field} must be 1 to {limit} characters.", field=field)
    return value.strip()
