"""What the contest's public leaderboard may show: the parameter-free Ladder.

A team that sees its exact public score after every submission can climb the
board by fitting the public set itself (the "boosting attack": submit random
predictions, keep the ones that scored better, vote). The Ladder of Blum and
Hardt (2015), *The Ladder: A Reliable Leaderboard for Machine Learning
Competitions*, ICML, arXiv:1502.04585, Algorithm 2 ("parameter-free Ladder"),
closes that channel: a new score is shown only when it beats the team's best by
more than the noise of the public set, so an unlucky or a lucky draw releases
nothing new.

Per team, with ``l_best`` the per-example losses of the submission that set the
shown score and ``R_best`` their mean (infinite before the first submission)::

    s = std(l_new - l_best)                       # the paired sample deviation
    if mean(l_new) < R_best - s / sqrt(n):        # a one-sided paired test
        show round(score); l_best = l_new
    else:
        show the previous score again

The paper releases the improved loss rounded to a multiple of ``1/n``; the
authors' implementation (``mrtzh/Ladder.jl``) rounds to ``log10(n)`` decimals.
We round the shown score half to even to ``ceil(log10(n))`` decimals (a grain
no coarser than ``1/n``), so the shown digits never say more than the public set
can. The decision is taken on the mean of per-example losses; the shown value
is the metric's own score, which each metric makes a decreasing (or, for a
loss metric, increasing) function of that mean, or a close surrogate of it:
the metrics (``sandbox.contest.metrics``) say what their per-example loss is.

Everything here is pure: plain numbers and arrays in, a new state out. The
state holds per-example losses of hidden data; it is stored by the sandbox and
never shown to a team.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from policies.decision import PolicyError

FloatArray = npt.NDArray[np.float64]
MetricFunction = Callable[[npt.NDArray[np.generic], npt.NDArray[np.generic]], float]
# A metric of many resamples at once, from how often each example was drawn into each.
WeightedMetric = Callable[
    [npt.NDArray[np.generic], npt.NDArray[np.generic], npt.NDArray[np.float64]],
    npt.NDArray[np.float64],
]
# Resamples scored at once by a weighted metric (a block of rounds x n weights).
BLOCK_ROUNDS = 50

# The 95 % percentile interval of the bootstrap.
INTERVAL = (2.5, 97.5)


class LeaderboardError(PolicyError):
    """The leaderboard cannot decide from what it was given."""


@dataclass(frozen=True)
class LadderState:
    """One team's Ladder: its shown score and the losses of the submission that set it.

    ``best_losses`` is empty and ``best_loss`` infinite before the first
    submission, as the paper's ``R_0 = inf``.
    """

    best_losses: tuple[float, ...] = ()
    best_loss: float = math.inf
    shown_score: float | None = None

    @property
    def started(self) -> bool:
        return bool(self.best_losses)

    def to_json(self) -> str:
        # inf is not JSON: an unstarted state stores no loss at all.
        return json.dumps(
            {
                "best_losses": list(self.best_losses),
                "best_loss": self.best_loss if self.started else None,
                "shown_score": self.shown_score,
            },
            allow_nan=False,
        )

    @classmethod
    def from_json(cls, text: str) -> LadderState:
        try:
            data = json.loads(text)
            losses = tuple(float(x) for x in data["best_losses"])
            best = data["best_loss"]
            shown = data["shown_score"]
            state = cls(
                best_losses=losses,
                best_loss=math.inf if best is None else float(best),
                shown_score=None if shown is None else float(shown),
            )
        except (ValueError, TypeError, KeyError) as error:
            raise LeaderboardError("The stored leaderboard state cannot be read.") from error
        if state.started != (state.shown_score is not None):
            raise LeaderboardError("The stored leaderboard state is inconsistent.")
        return state


class LadderStep(NamedTuple):
    state: LadderState
    shown_score: float
    improved: bool


def shown_decimals(n: int) -> int:
    """Decimals of a shown score on ``n`` public examples: a grain no coarser than 1/n."""
    return max(1, math.ceil(math.log10(n)))


def ladder_step(
    state: LadderState, losses: Sequence[float] | FloatArray, score: float
) -> LadderStep:
    """Score one submission: its per-example ``losses`` decide, its ``score`` is what is shown."""
    new = np.asarray(losses, dtype=np.float64)
    if new.ndim != 1 or new.size < 2:
        raise LeaderboardError("A submission needs a loss for each of at least two examples.")
    if not np.all(np.isfinite(new)) or not math.isfinite(score):
        # Fail closed: a loss we cannot compare must not move the board.
        raise LeaderboardError("A submission's losses and score must be finite numbers.")
    n = new.size
    mean = float(new.mean())
    if state.started:
        best = np.asarray(state.best_losses, dtype=np.float64)
        if best.size != n:
            raise LeaderboardError("A submission was scored on a different number of examples.")
        threshold = state.best_loss - float(np.std(new - best, ddof=1)) / math.sqrt(n)
        improved = mean < threshold
    else:
        improved = True
    if not improved:
        assert state.shown_score is not None  # started, so a score was shown
        return LadderStep(state, state.shown_score, False)
    shown = round(float(score), shown_decimals(n))
    return LadderStep(LadderState(tuple(new.tolist()), mean, shown), shown, True)


def bootstrap_interval(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    metric: MetricFunction,
    *,
    rounds: int = 1000,
    seed: int,
    weighted: WeightedMetric | None = None,
) -> tuple[float, float]:
    """The 95 % percentile bootstrap interval of ``metric``, the same for the same ``seed``.

    ``weighted``, the same metric of many resamples at once (each a row of how often
    each example was drawn), gives the same interval as calling ``metric`` on every
    resample, in a fraction of the time.

    A resample on which the metric is undefined (it returns NaN, as a ranking
    metric does when a resample holds one class only) is left out; if more than
    a twentieth are, the interval itself would be biased, so it is refused.
    """
    truth = np.asarray(y_true)
    predicted = np.asarray(y_pred)
    n = len(truth)
    if n < 2 or len(predicted) != n or rounds < 1:
        raise LeaderboardError("A bootstrap needs matching truth and predictions and one round.")
    generator = np.random.default_rng(seed)
    if weighted is None:
        # All resamples drawn at once: one generator call, one index matrix.
        rows = generator.integers(0, n, size=(rounds, n))
        values = np.fromiter(
            (metric(truth[row], predicted[row]) for row in rows), dtype=np.float64, count=rounds
        )
    else:
        blocks = []
        for start in range(0, rounds, BLOCK_ROUNDS):
            size = min(BLOCK_ROUNDS, rounds - start)
            rows = generator.integers(0, n, size=(size, n))
            # How often each example is in each resample: one bincount over all of them.
            offsets = rows + (np.arange(size) * n)[:, None]
            counts = np.bincount(offsets.ravel(), minlength=size * n).reshape(size, n)
            blocks.append(weighted(truth, predicted, counts.astype(np.float64)))
        values = np.concatenate(blocks)
    kept = values[np.isfinite(values)]
    if kept.size < 0.95 * rounds:
        raise LeaderboardError("The metric is undefined on too many bootstrap resamples.")
    low, high = np.percentile(kept, INTERVAL)
    return float(low), float(high)


@dataclass(frozen=True)
class Entry:
    """A team's line on the board: its shown score and when the submission that set it came."""

    team: str
    shown_score: float
    submitted_at: datetime


@dataclass(frozen=True)
class Place:
    place: int
    entry: Entry


def rank(entries: Iterable[Entry], *, higher_is_better: bool) -> list[Place]:
    """The board: best shown score first; on a tie, the earlier submission first.

    The team name settles a tie of score and time too, only so the order is the
    same every time the board is drawn.
    """
    sign = -1.0 if higher_is_better else 1.0
    ordered = sorted(entries, key=lambda e: (sign * e.shown_score, e.submitted_at, e.team))
    return [Place(i, entry) for i, entry in enumerate(ordered, start=1)]
