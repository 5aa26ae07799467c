"""A dp-mode query's plan: the keys and measurements it releases, and their noise's scale.

:mod:`sandbox.dp.planner` makes a plan from a checked query; the runner executes
its exact SQL (:mod:`sandbox.dp.exact_sql`), and :mod:`sandbox.dp.noise` turns
the exact aggregates into the released noisy ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from policies.decision import Finding
from sandbox.dp import mechanisms
from sandbox.errors import SandboxError


class DpUnsupported(SandboxError):
    """The DP planner cannot answer this query; ``finding`` says why."""

    code = "dp_unsupported"
    status = 422

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


@dataclass(frozen=True)
class Key:
    """A released group key and every value it can take (public, from the manifest)."""

    name: str
    sql: str
    domain: tuple[Any, ...]
    # A key with no public list: its groups come from the data and are released
    # only above a noisy threshold, which costs δ.
    private: bool = False


@dataclass(frozen=True)
class Measure:
    """One noisy measurement: a count of rows (value None = COUNT(*)), a clamped sum,
    distinct persons, or a quantile selected among public candidates."""

    kind: str  # "count" | "sum" | "persons" | "quantile"
    value: str | None  # the SQL of the counted or summed expression
    bounds: tuple[float, float] | None = None
    index: int = 0
    alpha: float | None = None  # quantiles: which one (0.5: the median)
    candidates: tuple[float, ...] = ()  # quantiles: the evenly spaced values it picks from

    @property
    def alias(self) -> str:
        return f"__dp_{self.kind}_{self.index}"


@dataclass(frozen=True)
class Slot:
    """One aggregate of the query as a noisy value per group."""

    kind: str  # "count" | "sum" | "avg" | "variance" | "stddev" | "quantile"
    measures: tuple[Measure, ...]


@dataclass(frozen=True)
class DpPlan:
    sql: str
    keys: tuple[Key, ...]
    measures: tuple[Measure, ...]
    slots: tuple[Slot, ...]
    # Post-processing of the noisy groups (the analyst's outputs, HAVING, ORDER BY,
    # LIMIT), run on the released values only, over the table "noisy".
    post_sql: str
    output_names: tuple[str, ...]
    epsilon: float
    rows_per_person: int
    # δ > 0: Gaussian noise under zCDP, the measurements' ρ composed; else Laplace.
    delta: float = 0.0

    @property
    def mechanism(self) -> str:
        return "gaussian" if self.delta > 0 else "laplace"

    @property
    def epsilon_per_measure(self) -> float:
        return self.epsilon / len(self.measures)

    @property
    def rho_per_measure(self) -> float:
        return mechanisms.rho_for(self.epsilon, self.noise_delta) / len(self.measures)

    @property
    def private_keys(self) -> bool:
        return any(k.private for k in self.keys)

    @property
    def noise_delta(self) -> float:
        """The δ the Gaussian noise may use; with private keys half goes to the threshold."""
        return self.delta / 2 if self.private_keys else self.delta

    @property
    def threshold_measure(self) -> Measure | None:
        return next((m for m in self.measures if m.kind == "persons"), None)

    def threshold(self) -> float:
        """Distinct persons a group must show (noisily) to be released.

        A person can make at most ``rows_per_person`` groups exist; each such
        group, holding that person alone, passes with probability at most
        (δ/2) / rows_per_person, so the whole release stays within δ.
        """
        measure = self.threshold_measure
        assert measure is not None and self.delta > 0
        per_group = (self.delta / 2) / self.rows_per_person
        scale = self.scale(measure)
        if self.mechanism == "gaussian":
            return 1.0 + scale * NormalDist().inv_cdf(1.0 - per_group)
        return 1.0 + scale * math.log(1.0 / (2.0 * per_group))

    def error95(self, measure: Measure) -> float:
        """Half-width of the 95 % interval: in the value's units; for quantiles in rows of rank."""
        if measure.kind == "quantile":
            return mechanisms.quantile_rank_error95(
                len(measure.candidates), **self.quantile_budget(measure)
            )
        if self.mechanism == "gaussian":
            return mechanisms.gaussian_error95(self.scale(measure))
        return mechanisms.error95(self.scale(measure))

    @property
    def groups(self) -> int:
        if self.private_keys:
            return 1 << 62  # unknown in advance: as many as there are rows
        total = 1
        for key in self.keys:
            total *= len(key.domain)
        return total

    def sensitivity(self, measure: Measure) -> float:
        if measure.kind == "persons":
            # A person is one of the distinct persons of at most as many groups
            # as the rows they keep.
            return float(min(self.rows_per_person, self.groups))
        if measure.kind == "count":
            return float(self.rows_per_person)
        low, high = measure.bounds or (0.0, 0.0)
        return self.rows_per_person * max(abs(low), abs(high))

    def quantile_budget(self, measure: Measure) -> dict[str, Any]:
        """What the exponential mechanism of a quantile measure is built from."""
        assert measure.alpha is not None
        budget: dict[str, Any] = {"alpha": measure.alpha, "rows_per_person": self.rows_per_person}
        if self.mechanism == "gaussian":
            budget["rho"] = self.rho_per_measure
        else:
            budget["epsilon"] = self.epsilon_per_measure
        return budget

    def scale(self, measure: Measure) -> float:
        if self.mechanism == "gaussian":
            # A person's rows may all fall in one group: the L2 bound is the L1 bound.
            return mechanisms.gaussian_scale(self.sensitivity(measure), self.rho_per_measure)
        return mechanisms.laplace_scale(self.sensitivity(measure), self.epsilon_per_measure)
