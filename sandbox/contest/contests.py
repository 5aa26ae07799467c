"""Contests and their tracks, as organizers set them up.

A track names a published dataset version, a task, the target column, the feature
tables, a metric, the shares of persons scored on the public and private parts, and
quotas. Its split key is drawn here, wrapped by the master key and never shown: not
even the organizer learns who is scored.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from datasets.manifest import Manifest
from policies.permissions import Person, user_may_organize_contests
from policies.python_check import check_submission
from sandbox.access.grants import active_grant
from sandbox.actions import transaction
from sandbox.catalog import published
from sandbox.contest.metrics import Task, registered_metrics
from sandbox.contest.splits import KEY_BYTES, Shares
from sandbox.contest.submissions import queue_baselines
from sandbox.contest.teams import check_organizes, contest_named
from sandbox.context import Sandbox
from sandbox.errors import Conflict, Forbidden, InvalidRequest, NoActiveGrant
from sandbox.integrity import audit
from sandbox.models import Contest, ContestPhase, Grant, Track, iso

SLUG = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
MAX_QUOTA = 100_000  # a track's quotas: more is no quota, and overflows the stored column
TASKS = tuple(t.value for t in Task)
PHASES = tuple(p.value for p in ContestPhase)


@dataclass(frozen=True)
class TrackTerms:
    """What an organizer sets for a track; the defaults are Kaggle's code competitions'."""

    slug: str
    title: str
    dataset: str
    task: str
    target: str  # table.column
    metric: str
    features: tuple[str, ...] = ()
    title_en: str = ""
    shares: Shares = field(default_factory=Shares)
    daily_quota: int = 5
    total_quota: int = 100
    max_running: int = 2
    # "table.column"s that would give the target away; no run sees them.
    withheld: tuple[str, ...] = ()
    # Survival tasks: the event column (1 event, 0 censored) beside the time target.
    event: str = ""
    # The organizer's reference submission, scored as the baseline team's.
    baseline: str = ""


def create_contest(
    sandbox: Sandbox, *, by: Person, slug: str, title: str, title_en: str = ""
) -> dict[str, Any]:
    with transaction(sandbox, by=by, action="contest.create", subject=str(slug)) as session:
        _check_organizer(by)
        name = _slug(slug)
        if session.scalar(select(Contest.id).where(Contest.slug == name)):
            raise Conflict(f"A contest {name} exists already.")
        contest = Contest(slug=name, title=_title(title), title_en=title_en, organizer_id=by.id)
        session.add(contest)
        session.flush()
        audit.append(session, actor=by.username, action="contest.created", subject=name)
        return contest_view(session, contest)


def add_track(sandbox: Sandbox, *, by: Person, contest: str, terms: TrackTerms) -> dict[str, Any]:
    with transaction(sandbox, by=by, action="contest.track", subject=str(contest)) as session:
        found = contest_named(session, contest)
        check_organizes(by, found)
        if found.phase != ContestPhase.REGISTRATION.value:
            raise Conflict("Tracks are added while the contest is in registration.")
        slug = _slug(terms.slug)
        if session.scalar(select(Track.id).where(Track.contest_id == found.id, Track.slug == slug)):
            raise Conflict(f"The contest has a track {slug} already.")
        current = published(session, terms.dataset)
        _check_terms(terms, current.manifest)
        grant = _organizer_grant(session, by, terms.dataset)
        track = Track(
            contest_id=found.id,
            slug=slug,
            title=_title(terms.title),
            title_en=terms.title_en,
            dataset=terms.dataset,
            dataset_version=current.version,
            task=terms.task,
            target=terms.target,
            features=list(terms.features or current.manifest.table_names),
            metric=terms.metric,
            split_key={},
            public_share=terms.shares.public,
            private_share=terms.shares.private,
            daily_quota=terms.daily_quota,
            total_quota=terms.total_quota,
            max_running=terms.max_running,
            grant_id=grant.id,
            withheld=list(terms.withheld),
            event=terms.event,
            baseline=terms.baseline,
        )
        session.add(track)
        session.flush()
        track.split_key = sandbox.store.seal_key(
            f"split-{track.id}", secrets.token_bytes(KEY_BYTES)
        )
        audit.append(
            session,
            actor=by.username,
            action="contest.track_added",
            subject=found.slug,
            details={"track": slug, "dataset": terms.dataset, "version": current.version},
        )
        return track_view(track)


def set_phase(
    sandbox: Sandbox,
    *,
    by: Person,
    contest: str,
    phase: str,
    enqueue: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Move the contest on: registration → open → final → closed, never back. As it
    opens, each track's baseline is submitted (handed to ``enqueue``)."""
    with transaction(sandbox, by=by, action="contest.phase", subject=str(contest)) as session:
        found = contest_named(session, contest)
        check_organizes(by, found)
        if phase not in PHASES or PHASES.index(phase) != PHASES.index(found.phase) + 1:
            raise InvalidRequest(
                f"The contest is in {found.phase}: the next phase is "
                f"{PHASES[min(PHASES.index(found.phase) + 1, len(PHASES) - 1)]}.",
                field="phase",
            )
        if phase == ContestPhase.CLOSED.value:
            raise Conflict(
                "A contest closes when its final board is published.", rule="contest.close"
            )
        found.phase = phase
        audit.append(
            session,
            actor=by.username,
            action="contest.phase_set",
            subject=found.slug,
            details={"phase": phase},
        )
        baselines = queue_baselines(session, found, by=by) if phase == ContestPhase.OPEN else []
        view = contest_view(session, found)
    for submission_id in baselines:
        if enqueue is not None:
            enqueue(submission_id)
    return view


def list_contests(sandbox: Sandbox) -> list[dict[str, Any]]:
    with sandbox.tx() as session:
        return [
            contest_view(session, c)
            for c in session.scalars(select(Contest).order_by(Contest.created_at))
        ]


def contest_view(session: Session, contest: Contest) -> dict[str, Any]:
    tracks = session.scalars(select(Track).where(Track.contest_id == contest.id))
    return {
        "slug": contest.slug,
        "title": contest.title,
        "title_en": contest.title_en,
        "phase": contest.phase,
        "max_team_size": contest.max_team_size,
        "tracks": [track_view(t) for t in tracks],
        "created_at": iso(contest.created_at),
    }


def track_view(track: Track) -> dict[str, Any]:
    """A track as anyone sees it: never its split key."""
    return {
        "slug": track.slug,
        "title": track.title,
        "title_en": track.title_en,
        "dataset": track.dataset,
        "dataset_version": track.dataset_version,
        "task": track.task,
        "target": track.target,
        "features": list(track.features),
        "metric": track.metric,
        "event": track.event or None,
        "withheld": list(track.withheld or []),
        "has_baseline": bool(track.baseline),
        "quotas": {
            "daily": track.daily_quota,
            "total": track.total_quota,
            "running": track.max_running,
        },
    }


def _check_organizer(by: Person) -> None:
    if not user_may_organize_contests(by):
        raise Forbidden("Only organizers set contests up.", rule="permission.organizer")


def _organizer_grant(session: Session, by: Person, dataset: str) -> Grant:
    """The owner's grant under which the track's runs read the data (集中授权)."""
    try:
        return active_grant(session, analyst=by, dataset=dataset, mode="masked")
    except NoActiveGrant as error:
        raise Forbidden(
            f"The owner of {dataset} has granted you no active access: a track reads its "
            "data under the owner's grant to its organizer. Ask the owner for one.",
            rule="track.no_grant",
        ) from error


def _check_terms(terms: TrackTerms, manifest: Manifest) -> None:
    if terms.task not in TASKS:
        raise InvalidRequest(f"task must be one of {', '.join(TASKS)}.", field="task")
    table_name, _, column_name = terms.target.partition(".")
    table = manifest.table(table_name)
    if table is None or table.view_column(column_name) is None:
        raise InvalidRequest(
            f"target must be table.column of a column the view holds, not {terms.target}.",
            field="target",
        )
    if table.column(manifest.privacy_unit) is None:
        raise InvalidRequest(
            f"the target's table must hold the person column {manifest.privacy_unit}.",
            field="target",
        )
    unknown = [t for t in terms.features if manifest.table(t) is None]
    if unknown:
        raise InvalidRequest(f"unknown feature tables: {', '.join(unknown)}.", field="features")
    _check_withheld_and_event(terms, manifest)
    if terms.baseline:
        decision = check_submission(terms.baseline)
        if not decision.allowed:
            first = decision.findings[0]
            raise InvalidRequest(
                f"The baseline does not pass the submission check: {first.message} ({first.rule})",
                field="baseline",
            )
    _check_metric_and_quotas(terms)


def _check_withheld_and_event(terms: TrackTerms, manifest: Manifest) -> None:
    table_name = terms.target.partition(".")[0]
    table = manifest.table(table_name)
    assert table is not None  # the target was checked
    for name in terms.withheld:
        held_table, _, held_column = name.partition(".")
        spec = manifest.table(held_table)
        if spec is None or spec.view_column(held_column) is None or name == terms.target:
            raise InvalidRequest(
                f"withheld names table.column of other view columns, not {name}.",
                field="withheld",
            )
    if (terms.task == Task.SURVIVAL.value) != bool(terms.event):
        raise InvalidRequest(
            "a survival task names its event column (table.column), and only it does.",
            field="event",
        )
    if terms.event and (
        terms.event.partition(".")[0] != table_name
        or table.view_column(terms.event.partition(".")[2]) is None
    ):
        raise InvalidRequest(
            "the event column must be a column of the target's table.", field="event"
        )


def _check_metric_and_quotas(terms: TrackTerms) -> None:
    known = registered_metrics()
    metric = known.get(terms.metric)
    if metric is None:
        raise InvalidRequest(f"metric must be one of {', '.join(sorted(known))}.", field="metric")
    if Task(terms.task) not in metric.tasks:
        fitting = sorted(name for name, m in known.items() if Task(terms.task) in m.tasks)
        raise InvalidRequest(
            f"{terms.metric} does not score {terms.task} tasks; for them: {', '.join(fitting)}.",
            field="metric",
        )
    numbers = (terms.daily_quota, terms.total_quota, terms.max_running)
    if any(
        isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_QUOTA for n in numbers
    ):
        raise InvalidRequest(f"quotas are whole numbers from 1 to {MAX_QUOTA}.", field="quotas")


def _slug(value: object) -> str:
    if not isinstance(value, str) or not SLUG.match(value):
        raise InvalidRequest(
            "A name of lower-case letters, digits and -, starting with a letter.", field="slug"
        )
    return value


def _title(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise InvalidRequest("title must be 1 to 200 characters.", field="title")
    return value.strip()
