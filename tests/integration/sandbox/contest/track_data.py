"""A track's real data as the worker reads it, for tests that check scores by hand.

The same inputs :func:`sandbox.contest.scoring._take` gathers (the organizer's grant,
the published version, the consent basis, the track's split key), read without taking
a submission, so nothing is written.
"""

from __future__ import annotations

from sqlalchemy import select

from sandbox.access.consent import consent_basis
from sandbox.catalog import published
from sandbox.contest.data import TrackShape, TrackTables, hidden_tables
from sandbox.contest.metrics import Metric, metric_named
from sandbox.contest.splits import Part
from sandbox.context import Sandbox
from sandbox.demo import DEMO_CONTEST
from sandbox.jobs.planning import policy_for
from sandbox.models import Contest, Grant, Track


def track_part(
    sandbox: Sandbox, slug: str, part: Part, *, contest: str = DEMO_CONTEST
) -> tuple[TrackTables, Metric]:
    """The track's training part and ``part``'s features and labels, and its metric."""
    with sandbox.tx() as session:
        track = session.scalars(
            select(Track)
            .join(Contest, Contest.id == Track.contest_id)
            .where(Contest.slug == contest, Track.slug == slug)
        ).one()
        grant = session.get_one(Grant, track.grant_id)
        current = published(session, track.dataset)
        _, consenting = consent_basis(session, dataset=track.dataset, grant=grant, current=current)
        shape = TrackShape.of(track)
        split_key = sandbox.store.open_key(f"split-{track.id}", track.split_key)
        metric = metric_named(track.metric)
    tables = hidden_tables(
        sandbox,
        shape,
        current=current,
        policy=policy_for(current.policy, grant),
        consenting=consenting,
        split_key=split_key,
        scored=part,
    )
    return tables, metric
