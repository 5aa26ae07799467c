"""The contest's metrics, computed by the worker on hidden labels, outside the teams' code.

Each metric says which way is better, which task kinds it scores, how to check a
team's predictions before it trusts them, and its per-example loss for the
Ladder (``policies.leaderboard``): an array whose mean the Ladder compares, and
whose paired spread is its noise. Where the score is not itself a mean of
per-example losses, the loss is a decomposition whose mean is exact:

- ``roc_auc`` and ``concordance_index`` are shares of ordered pairs. Example
  ``i``'s loss is ``n / 2`` times the share of all comparable pairs that contain
  it and are ordered wrong (a tie counts half); each pair has two members, so the
  mean is exactly ``1 - score``. These are DeLong's placement values, the
  per-example terms of the statistic's own variance, so the paired test of the
  Ladder measures the noise it should.
- ``average_precision`` is the mean, over positives, of the precision at each
  positive's score. A positive's loss is ``n / n_pos`` times one minus that
  precision and a negative's is zero (a negative's effect is already in the
  precision of the positives ranked below it); the mean is ``1 - AP``.
- ``macro_f1``: ``1 - F1_c = (FP_c + FN_c) / (2 TP_c + FP_c + FN_c)``, and a
  wrong label is one FN of its true class and one FP of the predicted one, so
  a wrong example's loss is ``n / C`` times the sum of those two classes'
  ``1 / (2 TP + FP + FN)``; the weights are the submission's own counts, the
  mean is ``1 - macro F1``.
- ``rmse``: the squared error. Its mean is the MSE, and the RMSE rises with it,
  so the Ladder's decision is the same as on the RMSE itself.

A metric an organizer registers as a plain function has no such decomposition:
its loss is the jackknife pseudo-value (``n * score - (n - 1) * score without i``,
negated when higher is better), whose spread is the jackknife's standard error.
It costs one call of the function per example.

Predictions: probabilities in [0, 1] for binary tasks, class labels for
``macro_f1``, finite numbers for regression, and a finite risk score for survival
(higher means an earlier event). Survival truth is an ``(n, 2)`` array of
follow-up time and event (1) or censoring (0).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

import numpy as np
import numpy.typing as npt
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    roc_auc_score,
)

from sandbox.errors import ConfigurationError, SandboxError

Array = npt.NDArray[np.generic]
FloatArray = npt.NDArray[np.float64]
ScoreFunction = Callable[[Array, Array], float]
LossFunction = Callable[[Array, Array], FloatArray]
# The score of many resamples at once: ``weights`` is (resamples, n), how often each
# example was drawn into each; one score per resample (NaN where it is undefined).
WeightedFunction = Callable[[Array, Array, FloatArray], FloatArray]

# Rows of the pair matrix held at once by the concordance index: 2048 x n floats.
BLOCK = 2048


class Task(StrEnum):
    BINARY = "binary"
    MULTICLASS = "multiclass"
    REGRESSION = "regression"
    SURVIVAL = "survival"


class Predictions(StrEnum):
    """What a metric expects a team's ``predict`` to return."""

    PROBABILITY = "probability"
    LABEL = "label"
    NUMBER = "number"


class Reason(StrEnum):
    """Why predictions were refused: the fixed set a team may be told."""

    WRONG_LENGTH = "wrong_length"
    WRONG_TYPE = "wrong_type"
    NOT_FINITE = "not_finite"
    OUTSIDE_UNIT_INTERVAL = "outside_unit_interval"
    UNKNOWN_LABEL = "unknown_label"


MESSAGES = {
    Reason.WRONG_LENGTH: "The predictions have a different length from the data scored.",
    Reason.WRONG_TYPE: "The predictions must be one flat sequence of numbers (or of labels).",
    Reason.NOT_FINITE: "The predictions hold NaN or infinite values.",
    Reason.OUTSIDE_UNIT_INTERVAL: "The predictions must be probabilities between 0 and 1.",
    Reason.UNKNOWN_LABEL: "The predictions hold a label that is not one of the task's classes.",
}


class MalformedPredictions(SandboxError):
    """A team's predictions cannot be scored; ``reason`` says why, never which value."""

    code = "malformed_predictions"
    status = 422

    def __init__(self, reason: Reason) -> None:
        super().__init__(MESSAGES[reason], reason=str(reason))
        self.reason = reason


@dataclass(frozen=True)
class Metric:
    name: str
    score_function: ScoreFunction
    higher_is_better: bool
    tasks: frozenset[Task]
    predictions: Predictions
    loss_function: LossFunction | None = None
    # The bootstrap's fast path; without it each resample calls score_function.
    weighted_function: WeightedFunction | None = None

    def validate(
        self, y_true: npt.ArrayLike, y_pred: object, *, labels: Iterable[object] | None = None
    ) -> Array:
        """The predictions as an array, or :class:`MalformedPredictions`.

        ``labels`` are the task's classes; by default the classes of ``y_true``.
        """
        truth = np.asarray(y_true)
        try:
            predicted = np.asarray(y_pred)
        except (ValueError, TypeError) as error:  # ragged nested sequences
            raise MalformedPredictions(Reason.WRONG_TYPE) from error
        if predicted.ndim != 1:
            raise MalformedPredictions(Reason.WRONG_TYPE)
        if len(predicted) != len(truth):
            raise MalformedPredictions(Reason.WRONG_LENGTH)
        if self.predictions is Predictions.LABEL:
            return _validated_labels(truth, predicted, labels)
        if predicted.dtype == np.bool_ or not np.issubdtype(predicted.dtype, np.number):
            raise MalformedPredictions(Reason.WRONG_TYPE)
        if np.issubdtype(predicted.dtype, np.complexfloating):
            raise MalformedPredictions(Reason.WRONG_TYPE)
        numbers = predicted.astype(np.float64)
        if not np.all(np.isfinite(numbers)):
            raise MalformedPredictions(Reason.NOT_FINITE)
        if self.predictions is Predictions.PROBABILITY and not np.all(
            (numbers >= 0.0) & (numbers <= 1.0)
        ):
            raise MalformedPredictions(Reason.OUTSIDE_UNIT_INTERVAL)
        return numbers

    def score(
        self, y_true: npt.ArrayLike, y_pred: object, *, labels: Iterable[object] | None = None
    ) -> float:
        truth = np.asarray(y_true)
        return float(self.score_function(truth, self.validate(truth, y_pred, labels=labels)))

    def losses(
        self, y_true: npt.ArrayLike, y_pred: object, *, labels: Iterable[object] | None = None
    ) -> FloatArray:
        """The per-example losses the Ladder compares (lower is better). ``labels``: the
        task's classes, of which the scored truth may hold only some."""
        truth = np.asarray(y_true)
        predicted = self.validate(truth, y_pred, labels=labels)
        if self.loss_function is not None:
            return self.loss_function(truth, predicted)
        return jackknife_losses(truth, predicted, self.score_function, self.higher_is_better)


def _validated_labels(truth: Array, predicted: Array, labels: Iterable[object] | None) -> Array:
    if predicted.dtype == np.object_ or predicted.dtype.kind in "cV":
        raise MalformedPredictions(Reason.WRONG_TYPE)
    if predicted.dtype.kind == "f" and not np.all(np.isfinite(predicted)):
        raise MalformedPredictions(Reason.NOT_FINITE)
    known = np.unique(truth) if labels is None else np.asarray(list(labels))
    try:
        inside = np.isin(predicted, known)
    except TypeError as error:  # labels of another kind: text against numbers
        raise MalformedPredictions(Reason.UNKNOWN_LABEL) from error
    if not np.all(inside):
        raise MalformedPredictions(Reason.UNKNOWN_LABEL)
    return predicted


def jackknife_losses(
    truth: Array, predicted: Array, score: ScoreFunction, higher_is_better: bool
) -> FloatArray:
    n = len(truth)
    whole = score(truth, predicted)
    keep = np.ones(n, dtype=bool)
    left_out = np.empty(n, dtype=np.float64)
    for i in range(n):
        keep[i] = False
        left_out[i] = score(truth[keep], predicted[keep])
        keep[i] = True
    pseudo = n * whole - (n - 1) * left_out
    return -pseudo if higher_is_better else pseudo


# -- survival -----------------------------------------------------------------------------


def _survival(truth: Array) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    table = np.asarray(truth, dtype=np.float64)
    if table.ndim != 2 or table.shape[1] != 2:
        raise ConfigurationError("Survival truth must be two columns: time and event.")
    return table[:, 0], table[:, 1] != 0


def _concordance_counts(truth: Array, risk: Array) -> tuple[FloatArray, float]:
    """Each subject's wrong-ordered share of comparable pairs (a tie half), and the pairs.

    Harrell's rule: ``(i, j)`` is comparable when ``i`` had the event and either
    ``t_i < t_j``, or ``t_i == t_j`` and ``j`` was censored (censored at the time
    of an event, ``j`` is taken to have outlived it). It is ordered right when
    ``i`` has the higher risk.
    """
    time, event = _survival(truth)
    scores = np.asarray(risk, dtype=np.float64)
    n = len(time)
    wrong = np.zeros(n, dtype=np.float64)
    pairs = 0.0
    for start in range(0, n, BLOCK):
        rows = slice(start, min(start + BLOCK, n))
        t_i, e_i, r_i = time[rows, None], event[rows, None], scores[rows, None]
        comparable = e_i & ((t_i < time) | ((t_i == time) & ~event))
        miss = np.where(r_i < scores, 1.0, np.where(r_i == scores, 0.5, 0.0)) * comparable
        pairs += float(comparable.sum())
        wrong[rows] += miss.sum(axis=1)
        wrong += miss.sum(axis=0)
    return wrong, pairs


def concordance_index(truth: Array, risk: Array) -> float:
    """Harrell's C: the share of comparable pairs the risk orders right (NaN if none)."""
    wrong, pairs = _concordance_counts(truth, risk)
    if pairs == 0:
        return math.nan
    return 1.0 - float(wrong.sum()) / (2.0 * pairs)


def concordance_losses(truth: Array, risk: Array) -> FloatArray:
    wrong, pairs = _concordance_counts(truth, risk)
    if pairs == 0:
        raise ConfigurationError("The scored data holds no comparable pair.")
    return len(wrong) * wrong / (2.0 * pairs)


# -- binary -------------------------------------------------------------------------------


def roc_auc_losses(truth: Array, scores: Array) -> FloatArray:
    positive = np.asarray(truth) == 1
    s = np.asarray(scores, dtype=np.float64)
    pos, neg = np.sort(s[positive]), np.sort(s[~positive])
    if pos.size == 0 or neg.size == 0:
        raise ConfigurationError("The scored data holds one class only.")
    wrong = np.empty(len(s), dtype=np.float64)
    # A positive is ordered wrong against each negative above it, half against each tie.
    p = s[positive]
    wrong[positive] = (neg.size - np.searchsorted(neg, p, side="right")) + 0.5 * (
        np.searchsorted(neg, p, side="right") - np.searchsorted(neg, p, side="left")
    )
    q = s[~positive]
    wrong[~positive] = np.searchsorted(pos, q, side="left") + 0.5 * (
        np.searchsorted(pos, q, side="right") - np.searchsorted(pos, q, side="left")
    )
    return len(s) * wrong / (2.0 * pos.size * neg.size)


def average_precision_losses(truth: Array, scores: Array) -> FloatArray:
    positive = np.asarray(truth) == 1
    s = np.asarray(scores, dtype=np.float64)
    if not positive.any():
        raise ConfigurationError("The scored data holds no positive example.")
    ordered = np.sort(s)
    positives = np.sort(s[positive])
    p = s[positive]
    # Precision at threshold p: positives scored >= p over all scored >= p.
    above = len(s) - np.searchsorted(ordered, p, side="left")
    true_above = positives.size - np.searchsorted(positives, p, side="left")
    losses = np.zeros(len(s), dtype=np.float64)
    losses[positive] = (1.0 - true_above / above) * len(s) / positives.size
    return losses


def roc_auc(truth: Array, scores: Array) -> float:
    return float(roc_auc_score(truth, scores))


def average_precision(truth: Array, scores: Array) -> float:
    return float(average_precision_score(truth, scores))


# -- multiclass ---------------------------------------------------------------------------


def macro_f1(truth: Array, labels: Array) -> float:
    return float(f1_score(truth, labels, average="macro", zero_division=0.0))


def macro_f1_losses(truth: Array, labels: Array) -> FloatArray:
    # The classes sklearn averages over: every label in the truth or the predictions.
    classes, inverse = np.unique(np.concatenate([truth, labels]), return_inverse=True)
    n = len(truth)
    t, p = inverse[:n], inverse[n:]
    right = t == p
    # 2 TP + FP + FN = (times the class is true) + (times it is predicted).
    denominator = np.bincount(t, minlength=classes.size) + np.bincount(p, minlength=classes.size)
    weight = 1.0 / denominator  # every class here is true or predicted at least once
    losses = np.where(right, 0.0, weight[t] + weight[p])
    return n * losses / classes.size


def macro_f1_weighted(truth: Array, labels: Array, weights: FloatArray) -> FloatArray:
    """macro F1 of each resample: ``2 TP_c / (T_c + P_c)`` averaged over the classes the
    resample holds as truth or prediction, as sklearn averages them."""
    classes, inverse = np.unique(np.concatenate([truth, labels]), return_inverse=True)
    n = len(truth)
    t, p = inverse[:n], inverse[n:]
    true_of = np.eye(classes.size)[t]  # (n, classes)
    predicted_of = np.eye(classes.size)[p]
    tp = weights @ (true_of * (t == p)[:, None])
    total = weights @ true_of + weights @ predicted_of
    present = total > 0
    f1 = np.divide(2 * tp, total, out=np.zeros_like(tp), where=present)
    return f1.sum(axis=1) / present.sum(axis=1)


# -- ranking, for the bootstrap ----------------------------------------------------------


def _tie_groups(
    scores: FloatArray, descending: bool
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """The order that sorts ``scores`` and where each group of equal scores starts in it."""
    order = np.argsort(-scores if descending else scores, kind="stable")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return order, starts


def roc_auc_weighted(truth: Array, scores: Array, weights: FloatArray) -> FloatArray:
    """AUC of each resample: the weighted share of (positive, negative) pairs in order,
    a tie counting half."""
    values = np.asarray(scores, dtype=np.float64)
    order, starts = _tie_groups(values, descending=False)
    positive = np.asarray(truth)[order] == 1
    w = weights[:, order]
    pos = np.add.reduceat(w * positive, starts, axis=1)
    neg = np.add.reduceat(w * ~positive, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    ordered = (pos * (below + 0.5 * neg)).sum(axis=1)
    return np.divide(ordered, pairs, out=np.full(len(pairs), np.nan), where=pairs > 0)


def average_precision_weighted(truth: Array, scores: Array, weights: FloatArray) -> FloatArray:
    """AP of each resample: over thresholds from the highest score down, the precision at
    each weighted by the positives it adds (sklearn's step-wise sum)."""
    values = np.asarray(scores, dtype=np.float64)
    order, starts = _tie_groups(values, descending=True)
    positive = np.asarray(truth)[order] == 1
    w = weights[:, order]
    pos = np.add.reduceat(w * positive, starts, axis=1)
    seen = np.add.reduceat(w, starts, axis=1)
    tp, drawn = np.cumsum(pos, axis=1), np.cumsum(seen, axis=1)
    precision = np.divide(tp, drawn, out=np.zeros_like(tp), where=drawn > 0)
    positives = pos.sum(axis=1)
    total = (pos * precision).sum(axis=1)
    return np.divide(total, positives, out=np.full(len(total), np.nan), where=positives > 0)


# -- regression ---------------------------------------------------------------------------


def rmse(truth: Array, predicted: Array) -> float:
    return math.sqrt(float(mean_squared_error(truth, predicted)))


def mae(truth: Array, predicted: Array) -> float:
    return float(mean_absolute_error(truth, predicted))


def rmse_weighted(truth: Array, predicted: Array, weights: FloatArray) -> FloatArray:
    return np.sqrt(weights @ squared_errors(truth, predicted) / weights.sum(axis=1))


def mae_weighted(truth: Array, predicted: Array, weights: FloatArray) -> FloatArray:
    return weights @ absolute_errors(truth, predicted) / weights.sum(axis=1)


def squared_errors(truth: Array, predicted: Array) -> FloatArray:
    return np.square(np.asarray(truth, dtype=np.float64) - np.asarray(predicted, np.float64))


def absolute_errors(truth: Array, predicted: Array) -> FloatArray:
    return np.abs(np.asarray(truth, dtype=np.float64) - np.asarray(predicted, np.float64))


_BUILT_IN = (
    Metric(
        "roc_auc",
        roc_auc,
        True,
        frozenset({Task.BINARY}),
        Predictions.PROBABILITY,
        roc_auc_losses,
        roc_auc_weighted,
    ),
    Metric(
        "average_precision",
        average_precision,
        True,
        frozenset({Task.BINARY}),
        Predictions.PROBABILITY,
        average_precision_losses,
        average_precision_weighted,
    ),
    Metric(
        "macro_f1",
        macro_f1,
        True,
        frozenset({Task.BINARY, Task.MULTICLASS}),
        Predictions.LABEL,
        macro_f1_losses,
        macro_f1_weighted,
    ),
    Metric(
        "rmse",
        rmse,
        False,
        frozenset({Task.REGRESSION}),
        Predictions.NUMBER,
        squared_errors,
        rmse_weighted,
    ),
    Metric(
        "mae",
        mae,
        False,
        frozenset({Task.REGRESSION}),
        Predictions.NUMBER,
        absolute_errors,
        mae_weighted,
    ),
    Metric(
        "concordance_index",
        concordance_index,
        True,
        frozenset({Task.SURVIVAL}),
        Predictions.NUMBER,
        concordance_losses,
    ),
)

_registry: dict[str, Metric] = {metric.name: metric for metric in _BUILT_IN}

# The built-in metrics, read-only; registered ones are found with :func:`metric_named`.
METRICS: Mapping[str, Metric] = MappingProxyType({m.name: m for m in _BUILT_IN})

_PREDICTIONS_BY_TASK = {
    Task.BINARY: Predictions.PROBABILITY,
    Task.MULTICLASS: Predictions.LABEL,
    Task.REGRESSION: Predictions.NUMBER,
    Task.SURVIVAL: Predictions.NUMBER,
}


def register_metric(
    name: str,
    function: ScoreFunction,
    *,
    higher_is_better: bool,
    tasks: Iterable[Task | str],
) -> Metric:
    """Add an organizer's metric, ``function(y_true, y_pred) -> float``, run by the worker.

    Its predictions are checked as the tasks' own (probabilities for binary,
    labels for multiclass, numbers otherwise), so all its tasks must agree.
    """
    kinds = frozenset(Task(t) for t in tasks)
    expected = {_PREDICTIONS_BY_TASK[t] for t in kinds}
    if not name or name in _registry:
        raise ConfigurationError("A metric needs a name no other metric has.", metric=name)
    if len(expected) != 1:
        raise ConfigurationError("A metric's tasks must expect the same kind of predictions.")
    metric = Metric(name, function, higher_is_better, kinds, expected.pop())
    _registry[name] = metric
    return metric


def unregister_metric(name: str) -> None:
    """Remove a registered metric (the built-in ones stay)."""
    if name in METRICS or name not in _registry:
        raise ConfigurationError("Only a registered metric can be removed.", metric=name)
    del _registry[name]


def metric_named(name: str) -> Metric:
    try:
        return _registry[name]
    except KeyError:
        raise ConfigurationError("There is no metric of that name.", metric=name) from None


def registered_metrics() -> Mapping[str, Metric]:
    return MappingProxyType(dict(_registry))
