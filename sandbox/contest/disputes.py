"""Disputes (异议): a team objects to a score or to its disqualification, and the
contest's organizer decides, with a comment the team reads.

The objection's text and the decision's comment are kept in the dispute's row and
shown to the team and the organizer; the audit log records who raised or decided
which dispute, of what kind, and how, but no free text.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from policies.permissions import Person
from sandbox.actions import transaction
from sandbox.contest.teams import (
    bounded_text,
    check_organizes,
    contest_named,
    organizes,
    team_of,
)
from sandbox.context import Sandbox
from sandbox.errors import Conflict, Forbidden, InvalidRequest, NotFound
from sandbox.integrity import audit
from sandbox.models import (
    Contest,
    Dispute,
    DisputeStatus,
    Submission,
    Team,
    Track,
    iso,
    utcnow,
)

MAX_TEXT_CHARS = 2000


class DisputeKind(StrEnum):
    SCORE = "score"  # names a submission of the team's own
    DISQUALIFICATION = "disqualification"  # of the team, while it is disqualified


KINDS = tuple(k.value for k in DisputeKind)


def raise_dispute(
    sandbox: Sandbox,
    *,
    by: Person,
    contest: str,
    kind: str,
    text: str,
    submission_id: str | None = None,
) -> dict[str, Any]:
    """A member of a team in ``contest`` objects to one of the team's scores or to its
    disqualification."""
    with transaction(sandbox, by=by, action="dispute.raise", subject=str(contest)) as session:
        found = contest_named(session, contest)
        team = team_of(session, found.id, by.id)
        if team is None:
            raise Forbidden(
                f"Only a member of a team in {found.slug} raises a dispute there.",
                rule="dispute.team_member",
            )
        what = _kind(kind)
        body = bounded_text(text, "text", MAX_TEXT_CHARS)
        submission = _disputed_submission(session, found, team, what, submission_id)
        if what == DisputeKind.DISQUALIFICATION and team.disqualified_at is None:
            raise Conflict(
                f"The team {team.name} is not disqualified.", rule="dispute.not_disqualified"
            )
        dispute = Dispute(
            contest_id=found.id,
            team_id=team.id,
            submission_id=submission,
            kind=what.value,
            text=body,
            raised_by=by.username,
        )
        session.add(dispute)
        session.flush()
        audit.append(
            session,
            actor=by.username,
            action="dispute.raised",
            subject=found.slug,
            details={
                "dispute": dispute.id,
                "kind": what.value,
                "team": team.id,
                "submission": submission,
            },
        )
        return dispute_view(session, dispute)


def decide_dispute(
    sandbox: Sandbox, *, by: Person, dispute_id: int, uphold: bool, comment: str
) -> dict[str, Any]:
    """The contest's organizer upholds or rejects an open dispute, saying why.

    Upholding a disqualification dispute lifts the disqualification. Upholding a
    score dispute changes no score here: the organizer re-scores through the board.
    """
    with transaction(sandbox, by=by, action="dispute.decide", subject=str(dispute_id)) as session:
        dispute = _locked_dispute(session, dispute_id)
        contest = session.get_one(Contest, dispute.contest_id)
        check_organizes(by, contest)
        why = bounded_text(comment, "comment", MAX_TEXT_CHARS)
        if dispute.status != DisputeStatus.OPEN.value:
            raise Conflict(f"The dispute was {dispute.status} already.", rule="dispute.decided")
        dispute.status = (DisputeStatus.UPHELD if uphold else DisputeStatus.REJECTED).value
        dispute.decision = why
        dispute.decided_by = by.username
        dispute.decided_at = utcnow()
        reinstated = False
        if uphold and dispute.kind == DisputeKind.DISQUALIFICATION:
            reinstated = _reinstate(session, dispute.team_id)
        audit.append(
            session,
            actor=by.username,
            action="dispute.decided",
            subject=contest.slug,
            details={
                "dispute": dispute.id,
                "kind": dispute.kind,
                "decision": dispute.status,
                "team": dispute.team_id,
                "reinstated": reinstated,
            },
        )
        return dispute_view(session, dispute)


def list_disputes(sandbox: Sandbox, *, by: Person, contest: str) -> list[dict[str, Any]]:
    """The organizer sees every dispute of the contest; a team member their team's."""
    with transaction(sandbox, by=by, action="dispute.list", subject=str(contest)) as session:
        found = contest_named(session, contest)
        query = select(Dispute).where(Dispute.contest_id == found.id).order_by(Dispute.id)
        if not organizes(by, found):
            team = team_of(session, found.id, by.id)
            if team is None:
                raise Forbidden(
                    f"Only the organizer and the teams of {found.slug} see its disputes.",
                    rule="dispute.team_member",
                )
            query = query.where(Dispute.team_id == team.id)
        return [dispute_view(session, d) for d in session.scalars(query)]


def dispute_view(session: Session, dispute: Dispute) -> dict[str, Any]:
    return {
        "id": dispute.id,
        "kind": dispute.kind,
        "status": dispute.status,
        "text": dispute.text,
        "submission": dispute.submission_id,
        "team": session.get_one(Team, dispute.team_id).name,
        "raised_by": dispute.raised_by,
        "decision": dispute.decision,
        "decided_by": dispute.decided_by,
        "created_at": iso(dispute.created_at),
        "decided_at": iso(dispute.decided_at),
    }


def _kind(value: object) -> DisputeKind:
    if not isinstance(value, str) or value not in KINDS:
        raise InvalidRequest(f"kind must be one of {', '.join(KINDS)}.", field="kind")
    return DisputeKind(value)


def _disputed_submission(
    session: Session, contest: Contest, team: Team, kind: DisputeKind, submission_id: object
) -> str | None:
    """The submission a score dispute names: one of the team's own in this contest."""
    if kind != DisputeKind.SCORE:
        if submission_id is not None:
            raise InvalidRequest("Only a score dispute names a submission.", field="submission")
        return None
    if not isinstance(submission_id, str) or not submission_id:
        raise InvalidRequest("A score dispute names the submission.", field="submission")
    own = session.scalar(
        select(Submission.id)
        .join(Track, Track.id == Submission.track_id)
        .where(
            Submission.id == submission_id,
            Submission.team_id == team.id,
            Track.contest_id == contest.id,
        )
    )
    if own is None:
        # The same answer whether it exists or not: another team's submissions stay unseen.
        raise Forbidden(
            "That submission is not one of your team's.",
            rule="dispute.own_submission",
        )
    return own


def _locked_dispute(session: Session, dispute_id: object) -> Dispute:
    # Locked before the audit entry, so two decisions at once cannot both find it open.
    dispute = (
        session.scalar(
            select(Dispute).where(Dispute.id == dispute_id).with_for_update(key_share=True)
        )
        if isinstance(dispute_id, int) and not isinstance(dispute_id, bool)
        else None
    )
    if dispute is None:
        raise NotFound(f"There is no dispute {dispute_id}.")
    return dispute


def _reinstate(session: Session, team_id: str) -> bool:
    team = session.scalar(select(Team).where(Team.id == team_id).with_for_update(key_share=True))
    if team is None or team.disqualified_at is None:
        return False
    team.disqualified_at = None
    team.disqualified_reason = ""
    return True
