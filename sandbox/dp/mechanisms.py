"""Noise from OpenDP's vetted samplers, never from numpy.random.

Integer-valued queries (counts) get the discrete Laplace mechanism, real-valued
ones (sums) OpenDP's floating-point-safe Laplace. Each measurement is built for
the query's sensitivity and checked with OpenDP's own privacy map.
"""

from __future__ import annotations

import math
from functools import cache

import opendp.prelude as dp

from sandbox.errors import SandboxError

dp.enable_features("contrib")

# P(|Laplace(b)| > t) = exp(-t / b): the half-width that holds with 95 % probability.
LAPLACE_95 = math.log(20.0)


class MechanismError(SandboxError):
    """A noise mechanism was asked for with parameters it cannot take."""

    code = "dp_mechanism"


@cache
def _laplace(kind: str, scale: float) -> dp.Measurement:
    atom = dp.atom_domain(T=int) if kind == "int" else dp.atom_domain(T=float, nan=False)
    metric = dp.l1_distance(T=int) if kind == "int" else dp.l1_distance(T=float)
    return dp.m.make_laplace(dp.vector_domain(atom), metric, scale=scale)


def laplace_scale(sensitivity: float, epsilon: float) -> float:
    if epsilon <= 0 or sensitivity <= 0:
        raise MechanismError("epsilon and sensitivity must be positive")
    return sensitivity / epsilon


def noisy_counts(values: list[int], *, sensitivity: int, epsilon: float) -> list[int]:
    scale = laplace_scale(sensitivity, epsilon)
    measurement = _laplace("int", scale)
    _check_privacy(measurement, sensitivity, epsilon)
    return [int(v) for v in measurement([int(v) for v in values])] if values else []


def noisy_sums(values: list[float], *, sensitivity: float, epsilon: float) -> list[float]:
    scale = laplace_scale(sensitivity, epsilon)
    measurement = _laplace("float", scale)
    _check_privacy(measurement, float(sensitivity), epsilon)
    return [float(v) for v in measurement([float(v) for v in values])] if values else []


def _check_privacy(measurement: dp.Measurement, d_in: float, epsilon: float) -> None:
    spent = measurement.map(d_in)
    if spent > epsilon * (1 + 1e-9):
        raise MechanismError(f"mechanism would spend {spent} > {epsilon}")


def error95(scale: float) -> float:
    return scale * LAPLACE_95


# --- (ε, δ): the Gaussian mechanism under zero-concentrated DP ---------------------------

GAUSSIAN_95 = 1.959964  # P(|N(0, σ²)| > 1.96 σ) = 5 %


@cache
def _gaussian(kind: str, scale: float) -> dp.Measurement:
    atom = dp.atom_domain(T=int) if kind == "int" else dp.atom_domain(T=float, nan=False)
    metric = dp.l2_distance(T=int) if kind == "int" else dp.l2_distance(T=float)
    return dp.m.make_gaussian(dp.vector_domain(atom), metric, scale=scale)


@cache
def rho_for(epsilon: float, delta: float) -> float:
    """The largest ρ (zCDP) whose conversion to approximate DP stays within (ε, δ).

    Queries with several measurements compose their ρ, which adds up more
    gently than ε does; OpenDP's own conversion decides what ρ costs.
    """
    if not (epsilon > 0 and 0 < delta < 1):
        raise MechanismError("Gaussian noise needs ε > 0 and 0 < δ < 1")

    def epsilon_of(rho: float) -> float:
        probe = dp.c.make_zCDP_to_approxDP(_gaussian("float", (1.0 / (2.0 * rho)) ** 0.5))
        return float(probe.map(1.0).epsilon(delta))

    low, high = 1e-12, 1.0
    while epsilon_of(high) < epsilon:
        high *= 2.0
    for _ in range(80):
        middle = (low + high) / 2.0
        if epsilon_of(middle) <= epsilon:
            low = middle
        else:
            high = middle
    return low


def gaussian_scale(sensitivity: float, rho: float) -> float:
    if rho <= 0 or sensitivity <= 0:
        raise MechanismError("ρ and sensitivity must be positive")
    return float(sensitivity / (2.0 * rho) ** 0.5)


def _check_rho(measurement: dp.Measurement, d_in: float, rho: float) -> None:
    spent = measurement.map(d_in)
    if spent > rho * (1 + 1e-9):
        raise MechanismError(f"mechanism would spend ρ={spent} > {rho}")


def gaussian_counts(values: list[int], *, sensitivity: int, rho: float) -> list[int]:
    measurement = _gaussian("int", gaussian_scale(sensitivity, rho))
    _check_rho(measurement, sensitivity, rho)
    return [int(v) for v in measurement([int(v) for v in values])] if values else []


def gaussian_sums(values: list[float], *, sensitivity: float, rho: float) -> list[float]:
    measurement = _gaussian("float", gaussian_scale(sensitivity, rho))
    _check_rho(measurement, float(sensitivity), rho)
    return [float(v) for v in measurement([float(v) for v in values])] if values else []


def gaussian_error95(scale: float) -> float:
    return scale * GAUSSIAN_95


# --- Quantiles: the exponential mechanism over public candidates -------------------------


# A 95 % bound on how far below the best score the selected one falls, in units
# of the noise scale, for c candidates: ln c + ln 40 (the largest of the noise
# terms stays below it with 97.5 %) + 1.31 (the best candidate's own noise stays
# above -1.31 with 97.5 %).
def selection_slack95(candidates: int) -> float:
    return math.log(candidates) + math.log(40.0) + 1.31


@cache
def quantile_fraction(alpha: float) -> tuple[int, int]:
    """OpenDP's integer form (numerator, denominator) of ``alpha`` in its scores.

    Read off OpenDP's own scorer: one value between two candidates scores
    ``num`` at the lower one and ``den - num`` at the upper one.
    """
    scorer = dp.t.make_quantile_score_candidates(
        dp.vector_domain(dp.atom_domain(T=float, nan=False)),
        dp.symmetric_distance(),
        [0.0, 1.0],
        alpha,
    )
    at_low, at_high = (int(s) for s in scorer([0.5]))
    return at_low, at_high + at_low


def quantile_scores(below: list[int], equal: list[int], total: int, alpha: float) -> list[int]:
    """OpenDP's quantile scores from counts: |den·#(x < c) − num·(n − #(x = c))| per candidate.

    The same numbers OpenDP's scorer gives on the rows themselves (tested), so
    the exact pass only has to hand over a histogram, never the values.
    """
    num, den = quantile_fraction(alpha)
    return [abs(den * lt - num * (total - eq)) for lt, eq in zip(below, equal, strict=True)]


@cache
def _quantile_measurement(
    candidates: int, alpha: float, rows_per_person: int, budget: float, zcdp: bool
) -> tuple[dp.Measurement, float]:
    """Report-noisy-max over the scores, its scale found by OpenDP for the budget."""
    scorer = dp.t.make_quantile_score_candidates(
        dp.vector_domain(dp.atom_domain(T=float, nan=False)),
        dp.symmetric_distance(),
        [float(i) for i in range(candidates)],
        alpha,
    )
    score_distance = scorer.map(rows_per_person)
    measure = dp.zero_concentrated_divergence() if zcdp else dp.max_divergence()

    def make(scale: float) -> dp.Measurement:
        return dp.m.make_noisy_max(
            scorer.output_domain, scorer.output_metric, measure, scale=scale, negate=True
        )

    scale = dp.binary_search_param(make, d_in=score_distance, d_out=budget, T=float)
    measurement = make(scale)
    spent = measurement.map(score_distance)
    if spent > budget * (1 + 1e-9):
        raise MechanismError(f"quantile would spend {spent} > {budget}")
    return measurement, scale


def noisy_quantile_index(
    scores: list[int],
    *,
    alpha: float,
    rows_per_person: int,
    epsilon: float | None = None,
    rho: float | None = None,
) -> int:
    """The index of the selected candidate (OpenDP's report-noisy-max, minimum score)."""
    budget = rho if rho is not None else epsilon
    if budget is None or budget <= 0:
        raise MechanismError("a quantile needs a positive ε or ρ")
    measurement, _ = _quantile_measurement(
        len(scores), alpha, rows_per_person, budget, rho is not None
    )
    return int(measurement([int(s) for s in scores]))


def quantile_rank_error95(
    candidates: int,
    *,
    alpha: float,
    rows_per_person: int,
    epsilon: float | None = None,
    rho: float | None = None,
) -> float:
    """How many rows from the ideal rank the released candidate may sit (95 %)."""
    budget = rho if rho is not None else epsilon
    assert budget is not None
    _, scale = _quantile_measurement(candidates, alpha, rows_per_person, budget, rho is not None)
    num, den = quantile_fraction(alpha)
    return scale * selection_slack95(candidates) / den
