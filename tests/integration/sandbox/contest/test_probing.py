"""The boosting attack of Blum and Hardt (2015, section 6.1) on the real readmission track.

tests/unit/policies/test_leaderboard.py runs the attack on synthetic, balanced labels
scored by accuracy. Here the labels are the track's own public part, as the worker
builds it from the stored data under the track's split key (a few per cent of visits
are readmissions), and the score is the track's metric, roc_auc, with the per-example
losses the worker gives the Ladder. Running each of the attacker's submissions through
the development runner would take seconds apiece, so the attack drives the pure
parts the worker calls instead: the metric, ``ladder_step`` and the bootstrap interval.

``pytest -s`` prints the figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from policies.leaderboard import LadderState, bootstrap_interval, ladder_step
from sandbox.contest.data import TrackTables
from sandbox.contest.metrics import Metric
from sandbox.contest.splits import Part
from sandbox.demo import ensure_demo_contest
from tests.factories import make_sandbox
from tests.integration.sandbox.contest.track_data import track_part

TRACK = "readmission-30d"
QUERIES, ATTACKERS = 200, 10


@dataclass(frozen=True)
class Attack:
    """One attacker's board: what it showed first, and at the end with and without the Ladder."""

    first_exact: float
    first_shown: float
    exact_best: float
    ladder_shown: float
    ladder_moved: bool
    width: float  # of the first submission's 95 % bootstrap interval

    @property
    def exact_gain(self) -> float:
        return self.exact_best - self.first_exact

    @property
    def ladder_gain(self) -> float:
        return self.ladder_shown - self.first_shown


@pytest.fixture(scope="module")
def public(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrackTables, Metric]:
    sandbox = make_sandbox(tmp_path_factory.mktemp("probing") / "instance", patients=1500)
    baselines: list[str] = []
    ensure_demo_contest(sandbox, enqueue=baselines.append)
    return track_part(sandbox, TRACK, Part.PUBLIC)


def boosting_attack(labels: npt.NDArray[np.int_], metric: Metric, seed: int) -> Attack:
    """``QUERIES`` random 0/1 submissions (the paper's random ±1 vectors), then the vote of
    those that looked better than chance: the share of them that say 1 for each row, a
    probability that ranks rows by their majority.

    Unprotected the attacker reads every exact public score, keeps those above one half,
    and the board shows the best score it ever saw. Under the Ladder the attacker keeps
    the submissions the Ladder showed as improved, as ``scoring._release`` steps it.
    """
    rng = np.random.default_rng(seed)
    guesses = rng.integers(0, 2, (QUERIES, len(labels))).astype(np.float64)
    exact = np.array([metric.score(labels, guess) for guess in guesses])
    state, kept, first_shown = LadderState(), np.zeros(QUERIES, dtype=bool), 0.0
    for i, guess in enumerate(guesses):
        state, shown, improved = ladder_step(state, metric.losses(labels, guess), exact[i])
        if i == 0:
            first_shown = shown
        kept[i] = improved and (i > 0 or shown > 0.5)
    exact_vote = guesses[exact > 0.5].mean(axis=0)
    ladder_vote = guesses[kept].mean(axis=0) if kept.any() else guesses[0]
    _, ladder_shown, moved = ladder_step(
        state, metric.losses(labels, ladder_vote), metric.score(labels, ladder_vote)
    )
    low, high = bootstrap_interval(
        labels, guesses[0], metric.score_function, seed=seed, weighted=metric.weighted_function
    )
    return Attack(
        first_exact=float(exact[0]),
        first_shown=first_shown,
        exact_best=max(float(exact.max()), metric.score(labels, exact_vote)),
        ladder_shown=ladder_shown,
        ladder_moved=moved,
        width=high - low,
    )


def test_ladder_withstands_boosting_attack_on_track_split(
    public: tuple[TrackTables, Metric],
) -> None:
    tables, metric = public
    labels = tables.labels

    attacks = [boosting_attack(labels, metric, seed) for seed in range(ATTACKERS)]

    width = float(np.mean([a.width for a in attacks]))
    exact_gain = float(np.mean([a.exact_gain for a in attacks]))
    ladder_gain = float(np.mean([a.ladder_gain for a in attacks]))
    print(
        f"\n{TRACK} public part: {len(labels)} visits, {int(labels.sum())} readmitted; "
        f"{ATTACKERS} attackers x {QUERIES} submissions, metric {metric.name}"
    )
    for seed, a in enumerate(attacks):
        print(
            f"  attacker {seed}: first {a.first_exact:.3f}, interval width {a.width:.3f}; "
            f"unprotected best {a.exact_best:.3f} (+{a.exact_gain:.3f}); Ladder shows "
            f"{a.ladder_shown:.3f} ({a.ladder_gain:+.3f}){', moved by the vote' * a.ladder_moved}"
        )
    print(
        f"  mean: interval width {width:.3f}, unprotected gain {exact_gain:.3f} "
        f"({exact_gain / width:.2f} widths), Ladder gain {ladder_gain:.3f} "
        f"({ladder_gain / width:.2f} widths, {ladder_gain / exact_gain:.2f} of unprotected)"
    )
    # Unprotected, the board climbs well out of chance's interval, on nothing but noise.
    assert exact_gain > width
    # Under the Ladder the shown score moves less than the interval's width: within the
    # noise the interval already tells every reader of the board.
    assert ladder_gain < width
    # And well below the unprotected climb. On this public part (a few dozen positives,
    # an interval some 0.2 wide) the Ladder lets about two fifths of that climb through,
    # not the third of the balanced synthetic set in the unit test.
    assert ladder_gain < 0.6 * exact_gain
