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
