"""A team's submissions to a track: checked, counted against the quotas, queued, shown.

A submission is Python code with ``fit(train) -> model`` and ``predict(model,
features) -> predictions``, checked like a Python job before it is stored. Quotas
are per team and track: a day's submissions (the day of the sandbox's time zone),
submissions in all, and submissions waiting or running at once. A submission that
failed its smoke run on mock data does not count: the team's own error, caught
before any hidden data was read.

What a team sees of a submission: its status, the smoke run's full log and score
(mock data), and on the hidden data the shown score and its interval, or one of
a fixed set of failure reasons. Never a prediction, a model or a hidden run's log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from policies.permissions import Person, user_runs_contest
from policies.python_check import MAX_PYTHON_CHARS, check_submission
from sandbox.actions import transaction
from sandbox.catalog import published
from sandbox.contest.data import TrackShape, smoke_tables
from sandbox.context import Sandbox
from sandbox.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    PolicyRejected,
    SandboxError,
)
from sandbox.integrity import audit
from sandbox.jobs.planning import policy_for
from sandbox.models import (
    Contest,
    ContestPhase,
    Grant,
    Membership,
    Submission,
    SubmissionStatus,
    Team,
    Track,
    iso,
    utcnow,
)

MAX_FINDINGS = 20
ACTIVE = (SubmissionStatus.QUEUED.value, SubmissionStatus.RUNNING.value)
SMOKE = "smoke"
# A team's picks for the private scoring, per track (Kaggle's two).
MAX_PICKS = 2
# Mock rows of one table a team downloads.
MOCK_ROWS = 1000


class QuotaExceeded(SandboxError):
    """A team's quota on a track is used up; ``resets_at`` says when it has room again."""

    code = "quota_exceeded"
    status = 429


@dataclass(frozen=True)
class Quota:
    limit: int
    used: int
    resets_at: dt.datetime | None = None

    @property
    def left(self) -> int:
        return max(0, self.limit - self.used)

    def to_dict(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "used": self.used,
            "left": self.left,
            "resets_at": iso(self.resets_at) if self.resets_at else None,
        }


def submit(
    sandbox: Sandbox,
    *,
    by: Person,
    contest: str,
    track: str,
    code: str,
    enqueue: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Queue a team member's submission to a track; raises before anything is stored."""
    with transaction(
        sandbox, by=by, action="submission.create", subject=f"{contest}/{track}"
    ) as session:
        found, lane = _track(session, contest, track)
        if found.phase != ContestPhase.OPEN.value:
            rule = (
                "contest.closed"
                if found.phase in (ContestPhase.FINAL, ContestPhase.CLOSED)
                else "contest.not_open"
            )
            raise Conflict(
                f"The contest is in its {found.phase} phase: submissions are taken "
                "while it is open.",
                rule=rule,
            )
        team = _member_team(session, found, by)
        if not isinstance(code, str) or not code.strip():
            raise InvalidRequest("code must be the submission's Python source.", field="code")
        if len(code) > MAX_PYTHON_CHARS:
            raise InvalidRequest(
                f"The submission is {len(code)} characters long; the limit is {MAX_PYTHON_CHARS}.",
                field="code",
            )
        decision = check_submission(code)
        if not decision.allowed:
            first = decision.findings[0]
            raise PolicyRejected(
                f"{first.message} ({first.rule})",
                findings=[f.to_dict() for f in decision.findings[:MAX_FINDINGS]],
            )
        # One team's submissions one at a time: the quotas are counted and the new
        # submission stored under the team's lock, so two at once cannot both fit.
        session.execute(select(Team.id).where(Team.id == team.id).with_for_update())
        _check_quotas(session, sandbox, team, lane)
        submission = _new_submission(session, by, found, lane, team, code)
        view = submission_view(session, submission)
    if enqueue is not None:
        enqueue(view["id"])
    return view


BASELINE_TEAM = "基线 Baseline"


def queue_baselines(session: Session, contest: Contest, *, by: Person) -> list[str]:
    """Submit each track's baseline as the contest's baseline team (in the caller's
    transaction, as the contest opens); outside the quotas, scored like any other."""
    team = session.scalars(
        select(Team).where(Team.contest_id == contest.id, Team.is_baseline.is_(True))
    ).first()
    if team is None:
        team = Team(
            contest_id=contest.id,
            name=BASELINE_TEAM,
            captain_id=contest.organizer_id,
            is_baseline=True,
        )
        session.add(team)
        session.flush()
    queued = []
    tracks = session.scalars(
        select(Track).where(Track.contest_id == contest.id).order_by(Track.slug)
    )
    for track in tracks:
        if not track.baseline:
            continue
        submission = _new_submission(session, by, contest, track, team, track.baseline)
        queued.append(submission.id)
    return queued


def day_start(sandbox: Sandbox) -> dt.datetime:
    """When today began in the sandbox's time zone: the daily quotas count from it."""
    zone = ZoneInfo(sandbox.settings.time_zone)
    return dt.datetime.combine(utcnow().astimezone(zone).date(), dt.time(), tzinfo=zone)


def _new_submission(
    session: Session, by: Person, contest: Contest, track: Track, team: Team, code: str
) -> Submission:
    """Store a queued submission and audit it (``submission.created``)."""
    submission = Submission(
        track_id=track.id,
        team_id=team.id,
        submitted_by=by.id,
        code=code,
        code_sha256=hashlib.sha256(code.encode("utf-8")).hexdigest(),
    )
    session.add(submission)
    session.flush()
    details: dict[str, Any] = {
        "contest": contest.slug,
        "track": track.slug,
        "team": team.id,
        "code_sha256": submission.code_sha256,
    }
    if team.is_baseline:
        details["baseline"] = True
    audit.append(
        session,
        actor=by.username,
        action="submission.created",
        subject=submission.id,
        details=details,
    )
    return submission


def quotas(session: Session, sandbox: Sandbox, team: Team, track: Track) -> dict[str, Quota]:
    """What the team has used and has left on the track, and when each quota resets."""
    midnight = day_start(sandbox)
    today = counted(session, [team.id], track.id, since=midnight)
    total = counted(session, [team.id], track.id)
    running = (
        session.scalar(
            select(func.count())
            .select_from(Submission)
            .where(
                Submission.team_id == team.id,
                Submission.track_id == track.id,
                Submission.status.in_(ACTIVE),
            )
        )
        or 0
    )
    return {
        "daily": Quota(
            track.daily_quota, today, (midnight + dt.timedelta(days=1)).astimezone(dt.UTC)
        ),
        "total": Quota(track.total_quota, total),
        "running": Quota(track.max_running, running),
    }


def counted(
    session: Session, team_ids: list[str], track_id: str, *, since: dt.datetime | None = None
) -> int:
    """Submissions of ``team_ids`` to the track that count against its quotas: all but
    those that failed their smoke run."""
    query = (
        select(func.count())
        .select_from(Submission)
        .where(
            Submission.team_id.in_(team_ids),
            Submission.track_id == track_id,
            or_(Submission.failed_in.is_(None), Submission.failed_in != SMOKE),
        )
    )
    if since is not None:
        query = query.where(Submission.created_at >= since.astimezone(dt.UTC))
    return session.scalar(query) or 0


def _check_quotas(session: Session, sandbox: Sandbox, team: Team, track: Track) -> None:
    left = quotas(session, sandbox, team, track)
    if left["running"].left == 0:
        raise QuotaExceeded(
            f"The team has {left['running'].used} submissions waiting or running on this "
            f"track; at most {track.max_running} at once. Submit again when one has finished.",
            rule="quota.running",
            retry_after=30,
            quotas={k: q.to_dict() for k, q in left.items()},
        )
    if left["total"].left == 0:
        raise QuotaExceeded(
            f"The team has used all {track.total_quota} submissions of this track.",
            rule="quota.total",
            resets_at=None,
            quotas={k: q.to_dict() for k, q in left.items()},
        )
    daily = left["daily"]
    if daily.left == 0:
        assert daily.resets_at is not None
        wait = max(1, int((daily.resets_at - utcnow()).total_seconds()))
        raise QuotaExceeded(
            f"The team has used today's {track.daily_quota} submissions of this track; "
            f"the quota resets at {iso(daily.resets_at)}.",
            rule="quota.daily",
            resets_at=iso(daily.resets_at),
            retry_after=wait,
            quotas={k: q.to_dict() for k, q in left.items()},
        )


def my_submissions(sandbox: Sandbox, *, by: Person, contest: str, track: str) -> dict[str, Any]:
    """The team's submissions to a track, newest first, with what is left of its quotas."""
    with sandbox.tx() as session:
        found, lane = _track(session, contest, track)
        team = _member_team(session, found, by)
        rows = session.scalars(
            select(Submission)
            .where(Submission.team_id == team.id, Submission.track_id == lane.id)
            .order_by(Submission.created_at.desc())
        )
        return {
            "team": team.name,
            "quotas": {k: q.to_dict() for k, q in quotas(session, sandbox, team, lane).items()},
            "submissions": [submission_view(session, s) for s in rows],
        }


def get_submission(sandbox: Sandbox, *, by: Person, submission_id: str) -> dict[str, Any]:
    """One submission, for a member of its team or the contest's organizer."""
    with sandbox.tx() as session:
        submission = session.get(Submission, submission_id)
        if submission is None:
            raise NotFound(f"No submission {submission_id}.")
        track = session.get_one(Track, submission.track_id)
        contest = session.get_one(Contest, track.contest_id)
        if not (_organizes(by, contest) or _is_member(session, submission.team_id, by)):
            raise NotFound(f"No submission {submission_id}.")  # others' are not even named
        return submission_view(session, submission, with_code=True)


def select_final(
    sandbox: Sandbox, *, by: Person, submission_id: str, selected: bool
) -> dict[str, Any]:
    """Mark (or unmark) one of the team's scored submissions for the private scoring;
    at most two per team and track."""
    with transaction(sandbox, by=by, action="submission.select", subject=submission_id) as session:
        submission = session.get(Submission, submission_id)
        if submission is None or not _is_member(session, submission.team_id, by):
            raise NotFound(f"No submission {submission_id}.")
        track = session.get_one(Track, submission.track_id)
        contest = session.get_one(Contest, track.contest_id)
        if contest.phase not in (ContestPhase.OPEN.value, ContestPhase.FINAL.value) or any(
            s.final_status for s in _team_track(session, submission.team_id, track.id)
        ):
            raise Conflict(
                "Final picks are made while the contest is open or, before its "
                "private scoring starts, in the final phase.",
                rule="contest.picks_closed",
            )
        if selected and submission.status != SubmissionStatus.SCORED.value:
            raise Conflict("Only a scored submission can be picked.", rule="submission.not_scored")
        picked = [
            s
            for s in _team_track(session, submission.team_id, track.id)
            if s.selected and s.id != submission.id
        ]
        if selected and len(picked) >= MAX_PICKS:
            raise Conflict(
                f"At most {MAX_PICKS} submissions per track are picked.", rule="submission.picks"
            )
        submission.selected = selected
        audit.append(
            session,
            actor=by.username,
            action="submission.selected" if selected else "submission.unselected",
            subject=submission.id,
            details={"track": track.slug},
        )
        return submission_view(session, submission)


def _team_track(session: Session, team_id: str, track_id: str) -> list[Submission]:
    return list(
        session.scalars(
            select(Submission).where(Submission.team_id == team_id, Submission.track_id == track_id)
        )
    )


def submission_view(
    session: Session, submission: Submission, *, with_code: bool = False
) -> dict[str, Any]:
    track = session.get_one(Track, submission.track_id)
    team = session.get_one(Team, submission.team_id)
    view: dict[str, Any] = {
        "id": submission.id,
        "track": track.slug,
        "team": team.name,
        "status": submission.status,
        "code_sha256": submission.code_sha256,
        "created_at": iso(submission.created_at),
        "finished_at": iso(submission.finished_at) if submission.finished_at else None,
        "smoke": {
            "score": submission.smoke_score,
            "log": submission.smoke_log or "",
        },
        "failed_in": submission.failed_in,
        "error": {"code": submission.error_code, "message": submission.error_message}
        if submission.error_code
        else None,
        "counted": submission.failed_in != SMOKE,
        "score": None
        if submission.shown_score is None
        else {
            "shown": submission.shown_score,
            "low": submission.shown_low,
            "high": submission.shown_high,
            "improved": submission.improved,
            "metric": track.metric,
        },
        "certificate": submission.certificate,
        "selected": submission.selected,
        "final": None
        if submission.final_status is None
        else {
            "status": submission.final_status,
            "score": submission.final_score,
            "low": submission.final_low,
            "high": submission.final_high,
            "error": submission.final_error,
        },
    }
    if with_code:
        view["code"] = submission.code
    return view


def _track(session: Session, contest: str, track: str) -> tuple[Contest, Track]:
    found = session.scalars(select(Contest).where(Contest.slug == contest)).one_or_none()
    if found is None:
        raise NotFound(f"No contest {contest}.")
    lane = session.scalars(
        select(Track).where(Track.contest_id == found.id, Track.slug == track)
    ).one_or_none()
    if lane is None:
        raise NotFound(f"The contest {contest} has no track {track}.")
    return found, lane


def _member_team(session: Session, contest: Contest, by: Person) -> Team:
    """The team the person is a member of in the contest; refused when there is none."""
    team = session.scalars(
        select(Team)
        .join(Membership, Membership.team_id == Team.id)
        .where(
            Membership.contest_id == contest.id,
            Membership.user_id == by.id,
            Membership.status == "member",
        )
    ).first()
    if team is None or team.merged_into is not None:
        raise Forbidden(
            "You are not a member of a team in this contest's tracks.", rule="team.not_in_track"
        )
    if team.disqualified_at is not None:
        raise Forbidden("Your team is disqualified from this contest.", rule="team.disqualified")
    return team


def _is_member(session: Session, team_id: str, by: Person) -> bool:
    return (
        session.scalar(
            select(Membership.id).where(
                Membership.team_id == team_id,
                Membership.user_id == by.id,
                Membership.status == "member",
            )
        )
        is not None
    )


def _organizes(by: Person, contest: Contest) -> bool:
    return user_runs_contest(by, contest.organizer_id)


def mock_part(sandbox: Sandbox, *, contest: str, track: str, part: str, table: str) -> str:
    """One table of what a smoke run's ``fit`` (part ``train``) or ``predict`` (part
    ``features``) reads, as CSV: mock rows only, for anyone to write code against."""
    if part not in ("train", "features"):
        raise InvalidRequest("part must be train or features.", field="part")
    with sandbox.tx() as session:
        _, lane = _track(session, contest, track)
        shape = TrackShape.of(lane)
        current = published(session, lane.dataset)
        grant = session.get(Grant, lane.grant_id) if lane.grant_id else None
        policy = policy_for(current.policy, grant)
    if table not in shape.tables:
        raise InvalidRequest(f"table must be one of {', '.join(shape.tables)}.", field="table")
    tables = smoke_tables(sandbox, shape, current=current, policy=policy)
    frame = (tables.train if part == "train" else tables.features)[table]
    buffer = io.StringIO()
    frame.head(MOCK_ROWS).to_csv(buffer, index=False)
    return buffer.getvalue()


def track_schema(sandbox: Sandbox, *, contest: str, track: str) -> dict[str, Any]:
    """The columns ``fit`` and ``predict`` see on a track, table by table (no data)."""
    with sandbox.tx() as session:
        _, lane = _track(session, contest, track)
        shape = TrackShape.of(lane)
        current = published(session, lane.dataset)
        grant = session.get(Grant, lane.grant_id) if lane.grant_id else None
        policy = policy_for(current.policy, grant)
    tables = []
    hidden = {shape.target_column, *([shape.event_column] if shape.event_column else [])}
    for name in shape.tables:
        spec = current.manifest.table(name)
        assert spec is not None
        columns = []
        for column in spec.view_columns():
            if (
                policy.rule(name, column.name).forbidden
                or f"{name}.{column.name}" in shape.withheld
            ):
                continue
            columns.append(
                {
                    "name": column.name,
                    "type": str(column.type),
                    "target": name == shape.target_table and column.name in hidden,
                    "description": column.description,
                }
            )
        tables.append({"name": name, "columns": columns})
    return {
        "contest": contest,
        "track": lane.slug,
        "task": lane.task,
        "metric": lane.metric,
        "target": lane.target,
        "event": lane.event or None,
        "predict_rows": shape.target_table,
        "tables": tables,
    }


def rerun(
    sandbox: Sandbox,
    *,
    by: Person,
    submission_id: str,
    enqueue: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The organizer runs a failed submission again (a worker or engine failure, a
    dispute upheld); it does not count against the team's quota twice."""
    with transaction(sandbox, by=by, action="submission.rerun", subject=submission_id) as session:
        submission = session.get(Submission, submission_id)
        if submission is None:
            raise NotFound(f"No submission {submission_id}.")
        track = session.get_one(Track, submission.track_id)
        contest = session.get_one(Contest, track.contest_id)
        if not _organizes(by, contest):
            raise Forbidden(
                "Only the contest's organizer reruns submissions.", rule="permission.organizer"
            )
        if submission.status != SubmissionStatus.FAILED.value:
            raise Conflict("Only a failed submission is run again.", rule="submission.not_failed")
        if contest.phase not in (ContestPhase.OPEN.value, ContestPhase.FINAL.value):
            raise Conflict(
                "Submissions are run again while the contest runs.", rule="contest.closed"
            )
        previous = submission.error_code
        for name in (
            "failed_in",
            "error_code",
            "error_message",
            "smoke_log",
            "smoke_score",
            "finished_at",
            "started_at",
            "holder",
        ):
            setattr(submission, name, None)
        submission.status = SubmissionStatus.QUEUED.value
        audit.append(
            session,
            actor=by.username,
            action="submission.requeued",
            subject=submission.id,
            details={"previous_error": previous},
        )
        view = submission_view(session, submission)
    if enqueue is not None:
        enqueue(submission_id)
    return view


def contest_queue(sandbox: Sandbox, *, by: Person, contest: str) -> list[dict[str, Any]]:
    """Every submission of the contest, newest first, for its organizer."""
    with sandbox.tx() as session:
        found = session.scalars(select(Contest).where(Contest.slug == contest)).one_or_none()
        if found is None:
            raise NotFound(f"No contest {contest}.")
        if not _organizes(by, found):
            raise Forbidden(
                "Only the contest's organizer sees its queue.", rule="permission.organizer"
            )
        rows = session.scalars(
            select(Submission)
            .join(Track, Track.id == Submission.track_id)
            .where(Track.contest_id == found.id)
            .order_by(Submission.created_at.desc())
            .limit(500)
        )
        return [submission_view(session, s) for s in rows]
