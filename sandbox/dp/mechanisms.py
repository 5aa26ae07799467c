"""Noise from OpenDP's vetted samplers, never from numpy.random.

Integer-valued queries (counts) get the discrete Laplace mechanism, real-valued
ones (sums) OpenDP's floating-point-safe Laplace. Each measurement is built for
the query's sensitivity and checked with OpenDP's own privacy map.
"""

from __future__ import annotations

import math
from functools import cache

import opendp.prelude as dp

dp.enable_features("contrib")

# P(|Laplace(b)| > t) = exp(-t / b): the half-width that holds with 95 % probability.
LAPLACE_95 = math.log(20.0)


class MechanismError(Exception):
    pass


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
