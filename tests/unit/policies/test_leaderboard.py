import math
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.leaderboard import (
    Entry,
    LadderState,
    LeaderboardError,
    bootstrap_interval,
    ladder_step,
    rank,
    shown_decimals,
)

N = 20
loss_vectors = st.lists(
    st.lists(st.floats(0, 1, allow_nan=False), min_size=N, max_size=N), min_size=1, max_size=6
)


def accuracy(y: npt.NDArray[np.generic], p: npt.NDArray[np.generic]) -> float:
    return float(np.mean(y == p))


Step = tuple[LadderState, LadderState, list[float], float, bool]


def run(submissions: list[list[float]]) -> list[Step]:
    """Each step as (state before, after, losses, shown score, improved); score 1 - mean loss."""
    state, steps = LadderState(), []
    for losses in submissions:
        before = state
        state, shown, improved = ladder_step(state, losses, 1 - float(np.mean(losses)))
        steps.append((before, state, losses, shown, improved))
    return steps


def test_ladder_step_first_submission_is_shown_rounded() -> None:
    state, shown, improved = ladder_step(LadderState(), [0.0, 1.0, 1.0, 0.0], 0.123456)
    assert improved
    assert shown == 0.1 == state.shown_score  # four examples: one decimal
    assert state.best_loss == 0.5


def test_ladder_step_small_gain_shows_previous_score() -> None:
    first = [1.0] * 50 + [0.0] * 50
    state, _, _ = ladder_step(LadderState(), first, 0.5)
    # One example better: the paired deviation is 0.1, the threshold 0.01 below 0.5.
    slightly = [0.0] + first[1:]
    _, shown, improved = ladder_step(state, slightly, 0.51)
    assert (shown, improved) == (0.5, False)
    much = [0.0] * 10 + first[10:]
    new, shown, improved = ladder_step(state, much, 0.6)
    assert (shown, improved) == (0.6, True)
    assert new.best_losses == tuple(much)


@given(loss_vectors)
def test_ladder_step_shown_score_changes_only_on_significant_gain(subs: list[list[float]]) -> None:
    for before, after, losses, shown, improved in run(subs):
        if not before.started:
            assert improved
            continue
        new = np.asarray(losses)
        spread = float(np.std(new - before.best_losses, ddof=1))
        significant = float(np.mean(new)) < before.best_loss - spread / math.sqrt(N)
        assert improved == significant
        if improved:
            assert after.best_losses == tuple(losses)
            assert shown == round(1 - float(np.mean(new)), shown_decimals(N))
        else:
            assert after is before
            assert shown == before.shown_score


@given(loss_vectors)
def test_ladder_step_shown_loss_never_worse(subs: list[list[float]]) -> None:
    # A loss metric shown as the mean loss itself.
    state, shown_so_far = LadderState(), []
    for losses in subs:
        state, shown, _ = ladder_step(state, losses, float(np.mean(losses)))
        shown_so_far.append(shown)
    assert shown_so_far == sorted(shown_so_far, reverse=True)


@given(loss_vectors)
def test_ladder_state_round_trips_json(subs: list[list[float]]) -> None:
    assert LadderState.from_json(LadderState().to_json()) == LadderState()
    for _, after, _, _, _ in run(subs):
        assert LadderState.from_json(after.to_json()) == after


@pytest.mark.parametrize(
    "text", ["{", "{}", '{"best_losses": [], "best_loss": null, "shown_score": 0.5}']
)
def test_ladder_state_from_json_refuses_broken_state(text: str) -> None:
    with pytest.raises(LeaderboardError):
        LadderState.from_json(text)


@pytest.mark.parametrize(
    "losses", [[0.5], [[0.1, 0.2]], [0.1, math.nan], [0.1, math.inf], [0.1, 0.2, 0.3]]
)
def test_ladder_step_refuses_losses_it_cannot_compare(losses: list[object]) -> None:
    state, _, _ = ladder_step(LadderState(), [0.1, 0.2], 0.9)
    with pytest.raises(LeaderboardError):
        ladder_step(state, losses, 0.5)  # type: ignore[arg-type]


def test_shown_decimals_no_coarser_than_one_over_n() -> None:
    assert [shown_decimals(n) for n in (2, 10, 11, 4000, 10000)] == [1, 1, 2, 4, 4]


def test_bootstrap_interval_same_for_same_seed() -> None:
    rng = np.random.default_rng(3)
    y, p = rng.integers(0, 2, 500), rng.integers(0, 2, 500)
    first = bootstrap_interval(y, p, accuracy, rounds=200, seed=7)
    assert first == bootstrap_interval(y, p, accuracy, rounds=200, seed=7)
    assert first != bootstrap_interval(y, p, accuracy, rounds=200, seed=8)
    low, high = first
    assert low < accuracy(y, p) < high
    # The normal approximation of a proportion's interval, to a bootstrap's accuracy.
    assert high - low == pytest.approx(2 * 1.96 * math.sqrt(0.25 / 500), rel=0.15)


def test_bootstrap_interval_refuses_metric_undefined_on_resamples() -> None:
    with pytest.raises(LeaderboardError):
        bootstrap_interval([0, 1], [0, 1], lambda y, p: math.nan, rounds=20, seed=0)


def test_rank_orders_by_score_then_earliest_submission() -> None:
    t = datetime(2025, 1, 1, tzinfo=UTC)
    entries = [
        Entry("late", 0.8, t + timedelta(hours=2)),
        Entry("low", 0.6, t),
        Entry("early", 0.8, t + timedelta(hours=1)),
        Entry("best", 0.9, t + timedelta(hours=3)),
    ]
    board = rank(entries, higher_is_better=True)
    assert [(p.place, p.entry.team) for p in board] == [
        (1, "best"),
        (2, "early"),
        (3, "late"),
        (4, "low"),
    ]
    lowest_first = rank(entries, higher_is_better=False)
    assert [p.entry.team for p in lowest_first] == ["low", "early", "late", "best"]


# -- the boosting attack (Blum & Hardt 2015, section 6.1) ---------------------------------

PUBLIC, QUERIES, REPEATS = 4000, 400, 10


def boosting_attack(seed: int) -> dict[str, float | bool]:
    """One attacker, ``QUERIES`` random 0/1 submissions, then the majority vote of the "good" ones.

    Without the Ladder the attacker sees every exact public accuracy and keeps the
    submissions above one half; with it, the attacker keeps those the Ladder showed
    as improved. The vote breaks ties towards 1, as the authors' attack does.
    """
    rng = np.random.default_rng(seed)
    hidden = rng.integers(0, 2, PUBLIC)
    fresh = rng.integers(0, 2, PUBLIC)  # labels the attacker never saw scores on
    guesses = rng.integers(0, 2, (QUERIES, PUBLIC))
    exact_kept = (guesses == hidden).mean(axis=1) > 0.5
    state, ladder_kept = LadderState(), np.zeros(QUERIES, dtype=bool)
    for i, guess in enumerate(guesses):
        losses = (guess != hidden).astype(np.float64)
        state, shown, improved = ladder_step(state, losses, 1 - float(losses.mean()))
        ladder_kept[i] = improved and (i > 0 or shown > 0.5)

    def vote(kept: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        return (2 * guesses[kept].sum(axis=0) >= kept.sum()).astype(np.int64)

    exact_vote, ladder_vote = vote(exact_kept), vote(ladder_kept)
    losses = (ladder_vote != hidden).astype(np.float64)
    _, shown_after, moved = ladder_step(state, losses, 1 - float(losses.mean()))
    return {
        "exact": accuracy(hidden, exact_vote),
        "exact_fresh": accuracy(fresh, exact_vote),
        "ladder": accuracy(hidden, ladder_vote),
        "ladder_shown": shown_after,
        "ladder_moved": moved,
    }


def test_ladder_withstands_boosting_attack() -> None:
    runs = [boosting_attack(seed) for seed in range(REPEATS)]
    # Chance: the bootstrap interval of a predictor right on exactly half the public set.
    rng = np.random.default_rng(99)
    hidden = rng.integers(0, 2, PUBLIC)
    half = hidden.copy()
    half[rng.permutation(PUBLIC)[: PUBLIC // 2]] ^= 1
    low, high = bootstrap_interval(hidden, half, accuracy, seed=99)
    width = high - low

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in runs]))

    # Without the Ladder the attacker climbs well above chance on every public set
    # (by several interval widths), and learned nothing: on fresh labels it is chance.
    assert all(float(r["exact"]) > high + width for r in runs)
    assert mean("exact") - 0.5 > 2 * width
    assert low < mean("exact_fresh") < high
    # With the Ladder the vote gains about a half-width of chance's interval, at its
    # upper edge (the one lucky step it let through is in the vote), and never moves
    # the board: the score shown is the one shown before it.
    assert mean("ladder") - 0.5 < width
    assert not any(r["ladder_moved"] for r in runs)
    # The shown score keeps the one lucky step the Ladder let through (about 1.3
    # standard errors), far below the unprotected climb.
    assert mean("ladder_shown") - 0.5 < width
    assert mean("ladder_shown") - 0.5 < (mean("exact") - 0.5) / 3
