"""The leaderboards: the public one while the contest runs, the signed final one at its close.

The public board shows each team's Ladder score (:mod:`policies.leaderboard`) with
its 95 % bootstrap interval; ties go to the earlier submission. In the final phase
the organizer starts the private scoring: each team's picks (at most two; with
none picked, the submission that set its public score) are run once on the
private part. Once all are done the organizer publishes the final board: per
track, each team's best private score, ranked, signed with the release key,
kept and written to the audit chain. The contest is then closed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from policies.leaderboard import Entry, rank
from policies.permissions import Person
from sandbox.actions import transaction
from sandbox.contest.metrics import metric_named
from sandbox.contest.teams import check_organizes, contest_named
from sandbox.context import Sandbox
from sandbox.errors import Conflict, NotFound
from sandbox.integrity import audit
from sandbox.integrity.signing import sha256_json
from sandbox.models import (
    Contest,
    ContestPhase,
    FinalBoard,
    LeaderboardEntry,
    Submission,
    SubmissionStatus,
    Team,
    Track,
    aware,
    iso,
    utcnow,
)

FINAL_TYPE = "sandbox.contest-final/v1"
ACTIVE = (SubmissionStatus.QUEUED.value, SubmissionStatus.RUNNING.value)


def leaderboard(sandbox: Sandbox, *, contest: str, track: str) -> dict[str, Any]:
    """A track's public board and, once published, its final board (anyone may read)."""
    with sandbox.tx() as session:
        found = contest_named(session, contest)
        lane = _track(session, found, track)
        metric = metric_named(lane.metric)
        rows = session.execute(
            select(LeaderboardEntry, Team, Submission)
            .join(Team, Team.id == LeaderboardEntry.team_id)
            .join(Submission, Submission.id == LeaderboardEntry.submission_id)
            .where(LeaderboardEntry.track_id == lane.id, Team.merged_into.is_(None))
        ).all()
        by_team = {team.name: (entry, team, sub) for entry, team, sub in rows}
        places = rank(
            [
                Entry(team.name, entry.shown_score, aware(sub.created_at))
                for entry, team, sub in rows
                if team.disqualified_at is None
            ],
            higher_is_better=metric.higher_is_better,
        )
        lines = []
        for place in places:
            entry, team, sub = by_team[place.entry.team]
            lines.append(
                {
                    "place": place.place,
                    "team": team.name,
                    "baseline": team.is_baseline,
                    "score": entry.shown_score,
                    "low": entry.shown_low,
                    "high": entry.shown_high,
                    "submitted_at": iso(sub.created_at),
                    "submissions": _scored_count(session, team.id, lane.id),
                }
            )
        board = session.scalars(select(FinalBoard).where(FinalBoard.track_id == lane.id)).first()
        return {
            "contest": found.slug,
            "track": lane.slug,
            "title": lane.title,
            "title_en": lane.title_en,
            "metric": lane.metric,
            "higher_is_better": metric.higher_is_better,
            "phase": found.phase,
            "rule": "ladder",
            "public": lines,
            "final": None
            if board is None
            else {
                "lines": board.document["lines"],
                "certificate": board.certificate,
                "published_at": iso(board.published_at),
            },
        }


def start_final_scoring(
    sandbox: Sandbox, *, by: Person, contest: str, enqueue: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Queue each team's picks on every track for the private part (final phase only)."""
    with transaction(sandbox, by=by, action="contest.final_scoring", subject=contest) as session:
        found = _organized(session, by, contest)
        if found.phase != ContestPhase.FINAL.value:
            raise Conflict(
                "The private scoring starts in the final phase.", rule="contest.not_final"
            )
        queued: list[str] = []
        for lane in session.scalars(select(Track).where(Track.contest_id == found.id)):
            for team in _competing(session, found):
                for pick in _picks(session, team, lane):
                    if pick.final_status is None:
                        pick.final_status = SubmissionStatus.QUEUED.value
                        queued.append(pick.id)
        audit.append(
            session,
            actor=by.username,
            action="contest.final_scoring_started",
            subject=found.slug,
            details={"submissions": len(queued)},
        )
    for submission_id in queued:
        if enqueue is not None:
            enqueue(submission_id)
    return {"queued": len(queued), "submissions": queued}


def publish_final(sandbox: Sandbox, *, by: Person, contest: str) -> dict[str, Any]:
    """Sign and keep each track's final board, audit it, and close the contest."""
    with transaction(sandbox, by=by, action="contest.publish_final", subject=contest) as session:
        found = _organized(session, by, contest)
        if found.phase != ContestPhase.FINAL.value:
            raise Conflict(
                "The final board is published in the final phase.", rule="contest.not_final"
            )
        tracks = list(session.scalars(select(Track).where(Track.contest_id == found.id)))
        picks = {
            lane.id: [p for team in _competing(session, found) for p in _picks(session, team, lane)]
            for lane in tracks
        }
        waiting = [p for ps in picks.values() for p in ps if p.final_status in (None, *ACTIVE)]
        if waiting:
            raise Conflict(
                f"{len(waiting)} picked submissions are not scored on the private part yet; "
                "start the private scoring and wait for it.",
                rule="contest.final_pending",
            )
        key = sandbox.release_key
        published: list[dict[str, Any]] = []
        for lane in tracks:
            document = _final_document(session, found, lane, picks[lane.id])
            certificate = key.sign(document)
            session.add(
                FinalBoard(
                    track_id=lane.id,
                    document=document,
                    certificate=certificate,
                    published_by=by.username,
                )
            )
            audit.append(
                session,
                actor=by.username,
                action="contest.final_published",
                subject=found.slug,
                details={
                    "track": lane.slug,
                    "board_sha256": sha256_json(document),
                    "key_id": key.key_id,
                    "lines": len(document["lines"]),
                },
            )
            published.append({"track": lane.slug, "lines": document["lines"]})
        found.phase = ContestPhase.CLOSED.value
        audit.append(
            session,
            actor=by.username,
            action="contest.phase_set",
            subject=found.slug,
            details={"phase": found.phase},
        )
        return {"contest": found.slug, "phase": found.phase, "tracks": published}


def _final_document(
    session: Session, contest: Contest, lane: Track, picks: list[Submission]
) -> dict[str, Any]:
    metric = metric_named(lane.metric)
    best: dict[str, Submission] = {}
    sign = 1.0 if metric.higher_is_better else -1.0
    for pick in picks:
        if pick.final_status != SubmissionStatus.SCORED.value or pick.final_score is None:
            continue
        held = best.get(pick.team_id)
        if (
            held is None
            or sign * pick.final_score > sign * (held.final_score or 0.0)
            or (pick.final_score == held.final_score and pick.created_at < held.created_at)
        ):
            best[pick.team_id] = pick
    teams = {t.id: t for t in session.scalars(select(Team).where(Team.id.in_(list(best))))}
    places = rank(
        [Entry(teams[t].name, s.final_score or 0.0, aware(s.created_at)) for t, s in best.items()],
        higher_is_better=metric.higher_is_better,
    )
    by_name = {teams[t].name: s for t, s in best.items()}
    lines = [
        {
            "place": place.place,
            "team": place.entry.team,
            "score": by_name[place.entry.team].final_score,
            "low": by_name[place.entry.team].final_low,
            "high": by_name[place.entry.team].final_high,
            "submission": by_name[place.entry.team].id,
            "code_sha256": by_name[place.entry.team].code_sha256,
        }
        for place in places
    ]
    failed = sorted(
        {
            session.get_one(Team, p.team_id).name
            for p in picks
            if p.final_status == SubmissionStatus.FAILED.value
        }
        - set(by_name)
    )
    return {
        "type": FINAL_TYPE,
        "contest": contest.slug,
        "track": lane.slug,
        "dataset": lane.dataset,
        "dataset_version": lane.dataset_version,
        "part": "private",
        "metric": lane.metric,
        "higher_is_better": metric.higher_is_better,
        "lines": lines,
        "not_scored": failed,
        "published_at": iso(utcnow()),
    }


def _picks(session: Session, team: Team, lane: Track) -> list[Submission]:
    """The team's picks on the track, or the submission that set its public score."""
    picked = list(
        session.scalars(
            select(Submission).where(
                Submission.team_id == team.id,
                Submission.track_id == lane.id,
                Submission.selected.is_(True),
                Submission.status == SubmissionStatus.SCORED.value,
            )
        )
    )
    if picked:
        return picked
    entry = session.scalars(
        select(LeaderboardEntry).where(
            LeaderboardEntry.track_id == lane.id, LeaderboardEntry.team_id == team.id
        )
    ).first()
    return [] if entry is None else [session.get_one(Submission, entry.submission_id)]


def _competing(session: Session, contest: Contest) -> list[Team]:
    return list(
        session.scalars(
            select(Team).where(
                Team.contest_id == contest.id,
                Team.disqualified_at.is_(None),
                Team.merged_into.is_(None),
            )
        )
    )


def _scored_count(session: Session, team_id: str, track_id: str) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Submission)
            .where(
                Submission.team_id == team_id,
                Submission.track_id == track_id,
                Submission.status == SubmissionStatus.SCORED.value,
            )
        )
        or 0
    )


def _organized(session: Session, by: Person, contest: str) -> Contest:
    found = contest_named(session, contest)
    check_organizes(by, found)
    return found


def _track(session: Session, contest: Contest, slug: str) -> Track:
    lane = session.scalars(
        select(Track).where(Track.contest_id == contest.id, Track.slug == slug)
    ).one_or_none()
    if lane is None:
        raise NotFound(f"The contest {contest.slug} has no track {slug}.")
    return lane
