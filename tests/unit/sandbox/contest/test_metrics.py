import math
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    roc_auc_score,
)

from policies.leaderboard import bootstrap_interval
from sandbox.contest.metrics import (
    MESSAGES,
    METRICS,
    MalformedPredictions,
    Reason,
    Task,
    concordance_index,
    metric_named,
    register_metric,
    unregister_metric,
)
from sandbox.errors import ConfigurationError, SandboxError


def binary(seed: int = 0, n: int = 300) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    # Rounded so that ties occur, which both the scores and the losses must handle.
    p = np.round(np.clip(0.3 * y + rng.random(n) * 0.7, 0, 1), 2)
    return y, p


def brute_force_concordance(time: list[float], event: list[int], risk: list[float]) -> float:
    right = pairs = 0.0
    for i in range(len(time)):
        for j in range(len(time)):
            comparable = event[i] and (time[i] < time[j] or (time[i] == time[j] and not event[j]))
            if comparable:
                pairs += 1
                right += 1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0
    return right / pairs if pairs else math.nan


def test_metrics_directions_and_tasks() -> None:
    assert {name: m.higher_is_better for name, m in METRICS.items()} == {
        "roc_auc": True,
        "average_precision": True,
        "macro_f1": True,
        "rmse": False,
        "mae": False,
        "concordance_index": True,
    }
    assert METRICS["concordance_index"].tasks == {Task.SURVIVAL}
    assert METRICS["rmse"].tasks == {Task.REGRESSION}


def test_roc_auc_and_average_precision_match_sklearn() -> None:
    y, p = binary()
    assert METRICS["roc_auc"].score(y, p) == pytest.approx(roc_auc_score(y, p))
    assert METRICS["average_precision"].score(y, p) == pytest.approx(average_precision_score(y, p))


def test_macro_f1_matches_sklearn_and_hand_value() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 2, 0])
    # F1: class 0 = 1/2, class 1 = 4/5, class 2 = 2/3.
    assert METRICS["macro_f1"].score(y, p) == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert METRICS["macro_f1"].score(y, p) == pytest.approx(f1_score(y, p, average="macro"))


def test_rmse_and_mae_match_sklearn_and_hand_value() -> None:
    y, p = np.array([1.0, 2.0, 4.0]), np.array([1.0, 4.0, 3.0])
    assert METRICS["rmse"].score(y, p) == pytest.approx(math.sqrt(5 / 3))
    assert METRICS["rmse"].score(y, p) == pytest.approx(math.sqrt(mean_squared_error(y, p)))
    assert METRICS["mae"].score(y, p) == pytest.approx(1.0)
    assert METRICS["mae"].score(y, p) == pytest.approx(mean_absolute_error(y, p))


def test_concordance_index_hand_value() -> None:
    # Comparable pairs: (0,1), (0,2), (0,3) and (2,3) (3 is censored at 2's time).
    truth = np.array([[1.0, 1], [2.0, 0], [3.0, 1], [3.0, 0]])
    risk = np.array([0.9, 0.1, 0.5, 0.5])
    assert METRICS["concordance_index"].score(truth, risk) == pytest.approx(3.5 / 4)


survival_cases = st.integers(2, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(1, 6).map(float), min_size=n, max_size=n),
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
        st.lists(st.integers(0, 4).map(float), min_size=n, max_size=n),
    )
)


@settings(max_examples=100)
@given(survival_cases)
def test_concordance_index_matches_brute_force(
    case: tuple[list[float], list[int], list[float]],
) -> None:
    time, event, risk = case
    truth = np.column_stack([time, event])
    expected = brute_force_concordance(time, event, risk)
    got = concordance_index(truth, np.array(risk))
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected)


def survival(seed: int, n: int = 200) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    risk = np.round(rng.normal(size=n), 1)
    time = np.round(rng.exponential(np.exp(-risk)), 1) + 0.1
    return np.column_stack([time, rng.random(n) < 0.7]), risk + rng.normal(size=n)


def loss_cases() -> Iterator[tuple[str, npt.NDArray[np.generic], npt.NDArray[np.generic]]]:
    y, p = binary(1)
    yield "roc_auc", y, p
    yield "average_precision", y, p
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 4, 200)
    yield "macro_f1", labels, np.where(rng.random(200) < 0.6, labels, rng.integers(0, 4, 200))
    yield "mae", rng.normal(size=50), rng.normal(size=50)
    yield "concordance_index", *survival(3)


@pytest.mark.parametrize(("name", "truth", "predicted"), list(loss_cases()))
def test_metric_losses_mean_is_exact(
    name: str, truth: npt.NDArray[np.generic], predicted: npt.NDArray[np.generic]
) -> None:
    metric = METRICS[name]
    losses = metric.losses(truth, predicted)
    assert losses.shape == (len(truth),)
    expected = 1 - metric.score(truth, predicted) if metric.higher_is_better else None
    if expected is None:
        expected = metric.score(truth, predicted)
    assert float(losses.mean()) == pytest.approx(expected)


def test_rmse_losses_are_squared_errors() -> None:
    y, p = np.array([1.0, 2.0, 4.0]), np.array([1.0, 4.0, 3.0])
    losses = METRICS["rmse"].losses(y, p)
    assert losses.tolist() == [0.0, 4.0, 1.0]
    assert math.sqrt(losses.mean()) == pytest.approx(METRICS["rmse"].score(y, p))


@pytest.mark.parametrize(
    ("name", "predicted", "reason"),
    [
        ("roc_auc", [0.1, 0.2], Reason.WRONG_LENGTH),
        ("roc_auc", [[0.1], [0.2], [0.3]], Reason.WRONG_TYPE),
        ("roc_auc", ["a", "b", "c"], Reason.WRONG_TYPE),
        ("roc_auc", [True, False, True], Reason.WRONG_TYPE),
        ("roc_auc", [0.1, [0.2], 0.3], Reason.WRONG_TYPE),
        ("roc_auc", None, Reason.WRONG_TYPE),
        ("roc_auc", [0.1, math.nan, 0.3], Reason.NOT_FINITE),
        ("rmse", [0.1, math.inf, 0.3], Reason.NOT_FINITE),
        ("roc_auc", [0.1, 1.5, 0.3], Reason.OUTSIDE_UNIT_INTERVAL),
        ("average_precision", [-0.1, 0.5, 0.3], Reason.OUTSIDE_UNIT_INTERVAL),
        ("macro_f1", [0, 1, 7], Reason.UNKNOWN_LABEL),
        ("macro_f1", ["0", "1", "1"], Reason.UNKNOWN_LABEL),
        ("macro_f1", [0.0, math.nan, 1.0], Reason.NOT_FINITE),
        ("macro_f1", [0, {"a": 1}, 1], Reason.WRONG_TYPE),
    ],
)
def test_validate_refuses_malformed_predictions(
    name: str, predicted: object, reason: Reason
) -> None:
    with pytest.raises(MalformedPredictions) as caught:
        METRICS[name].score(np.array([0, 1, 1]), predicted)
    assert caught.value.reason is reason
    assert isinstance(caught.value, SandboxError)
    assert caught.value.to_dict()["reason"] == reason.value
    # A fixed message per reason, whatever the values: none of them can be echoed.
    assert caught.value.message == MESSAGES[reason]
    assert caught.value.details == {"reason": reason.value}


def test_validate_takes_declared_labels() -> None:
    # A class the hidden part happens not to hold is still a valid prediction.
    assert METRICS["macro_f1"].validate([0, 1, 1], [0, 2, 1], labels=[0, 1, 2]).tolist() == [
        0,
        2,
        1,
    ]


def test_register_metric_scores_with_organizers_function() -> None:
    def accuracy(y: npt.NDArray[np.generic], p: npt.NDArray[np.generic]) -> float:
        return float(np.mean(y == p))

    metric = register_metric("accuracy_test", accuracy, higher_is_better=True, tasks=["multiclass"])
    try:
        assert metric_named("accuracy_test") is metric
        y, p = np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])
        assert metric.score(y, p) == 0.75
        with pytest.raises(MalformedPredictions):
            metric.score(y, [0, 1, 9, 2])
        # No decomposition: the jackknife pseudo-values, whose mean is the score here.
        assert float(metric.losses(y, p).mean()) == pytest.approx(-0.75)
        with pytest.raises(ConfigurationError):
            register_metric("accuracy_test", accuracy, higher_is_better=True, tasks=["binary"])
    finally:
        unregister_metric("accuracy_test")
    with pytest.raises(ConfigurationError):
        metric_named("accuracy_test")


def test_register_metric_refuses_mixed_prediction_kinds_and_builtin_names() -> None:
    def zero(y: npt.NDArray[np.generic], p: npt.NDArray[np.generic]) -> float:
        return 0.0

    with pytest.raises(ConfigurationError):
        register_metric("mixed", zero, higher_is_better=True, tasks=["binary", "regression"])
    with pytest.raises(ConfigurationError):
        register_metric("rmse", zero, higher_is_better=False, tasks=["regression"])
    with pytest.raises(ConfigurationError):
        unregister_metric("rmse")


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=30, max_value=80),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    metric_name=st.sampled_from(["roc_auc", "average_precision", "macro_f1", "rmse", "mae"]),
)
def test_the_weighted_bootstrap_is_the_resampling_bootstrap(
    n: int, seed: int, metric_name: str
) -> None:
    """Scoring resamples by how often each example was drawn gives the very interval that
    calling the metric on each resample gives (ties and all)."""
    rng = np.random.default_rng(seed)
    metric = metric_named(metric_name)
    if metric_name in ("roc_auc", "average_precision"):
        truth = rng.permutation(np.arange(n) % 2)  # no resample of one class only
        predicted = np.round(rng.random(n), 1)  # ties on purpose
    elif metric_name == "macro_f1":
        truth = np.array(list("abcd"))[rng.integers(0, 4, n)]
        predicted = np.array(list("abcd"))[rng.integers(0, 4, n)]
    else:
        truth, predicted = rng.random(n) * 10, rng.random(n) * 10
    plain = bootstrap_interval(truth, predicted, metric.score_function, rounds=60, seed=seed)
    fast = bootstrap_interval(
        truth,
        predicted,
        metric.score_function,
        rounds=60,
        seed=seed,
        weighted=metric.weighted_function,
    )
    assert fast == pytest.approx(plain, abs=1e-9)
