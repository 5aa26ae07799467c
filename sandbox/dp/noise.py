"""Turning a plan's exact aggregates into released noisy ones, and what each output costs.

Every draw is OpenDP's (:mod:`sandbox.dp.mechanisms`); what follows the draw
(means, spreads, the analyst's HAVING and ORDER BY) runs on noisy values only.
"""

from __future__ import annotations

import itertools
import json
import time
from functools import cache
from typing import Any

import duckdb
import pandas as pd
import sqlglot
from sqlglot import exp

from policies.sql_check import DIALECT
from sandbox.dp import mechanisms
from sandbox.dp.plan import DpPlan, Measure, Slot

# Drawing the noise always takes this long, fixed by how many values are drawn
# (known before any is): how long sampling took cannot tell anyone how large the
# noise was. A draw takes about 0.6 ms plus 40-85 µs a value on this class of
# machine, so the step leaves several times that.
NOISE_STEP_SECONDS = 0.012
NOISE_STEP_PER_VALUE_SECONDS = 0.00015


def noise_step_seconds(plan: DpPlan, groups: int) -> float:
    return NOISE_STEP_SECONDS + NOISE_STEP_PER_VALUE_SECONDS * groups * len(plan.measures)


def release_noisy(plan: DpPlan, columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    index = {name: i for i, name in enumerate(columns)}
    exact: dict[tuple[Any, ...], list[Any]] = {tuple(r[: len(plan.keys)]): r for r in rows}
    if plan.private_keys:
        combos = list(exact)  # only groups the data holds; the threshold decides
    else:
        combos = list(itertools.product(*(k.domain for k in plan.keys)))
    started = time.perf_counter()
    noisy = _draw_noise(plan, index, exact, combos)
    remaining = noise_step_seconds(plan, len(combos)) - (time.perf_counter() - started)
    if remaining > 0:
        time.sleep(remaining)
    if plan.private_keys:
        measure = plan.threshold_measure
        assert measure is not None
        keep = [i for i, v in enumerate(noisy[measure]) if v > plan.threshold()]
        combos = [combos[i] for i in keep]
        noisy = {m: [values[i] for i in keep] for m, values in noisy.items()}
    frame: dict[str, list[Any]] = {
        f"__dp_k{i}": [combo[i] for combo in combos] for i in range(len(plan.keys))
    }
    for number, slot in enumerate(plan.slots):
        values, bounds = _slot_values(plan, slot, noisy, len(combos))
        frame[f"__dp_a{number}"] = values
        frame[f"__dp_e{number}"] = bounds
    picked = _plain_projection(plan.post_sql)
    if picked is not None:  # nothing to compute: pick the columns
        result = [[frame[c][i] if c else None for c in picked] for i in range(len(combos))]
    else:
        connection = duckdb.connect()
        try:
            connection.register("noisy", pd.DataFrame(frame))
            cursor = connection.execute(plan.post_sql)
            result = [list(r) for r in cursor.fetchall()]
        finally:
            connection.close()
    width = len(plan.output_names)
    return {
        "columns": list(plan.output_names),
        "rows": [[_tidy(v) for v in r[:width]] for r in result],
        "error95": [[_tidy(v) for v in r[width:]] for r in result],
        # "value": ± in the output's own units; "rank": ± rows of rank (quantiles)
        "error95_units": [_units(slot) for slot in _output_slots(plan)],
    }


@cache
def _plain_projection(post_sql: str) -> tuple[str | None, ...] | None:
    """The noisy columns the outputs are, in order, when the post-processing only picks
    columns (no arithmetic, HAVING, ORDER BY or LIMIT); else None."""
    post = sqlglot.parse_one(post_sql, read=DIALECT)
    if any(post.args.get(part) for part in ("where", "order", "limit", "offset", "distinct")):
        return None
    picked: list[str | None] = []
    for projection in post.expressions:
        inner = projection.unalias()
        if isinstance(inner, exp.Column) and inner.name.startswith("__dp_"):
            picked.append(inner.name)
        elif isinstance(inner, exp.Null):
            picked.append(None)
        else:
            return None
    return tuple(picked)


def _units(slot: Slot | None) -> str | None:
    if slot is None or slot.kind in ("variance", "stddev"):
        return None
    return "rank" if slot.kind == "quantile" else "value"


def _output_slots(plan: DpPlan) -> list[Slot | None]:
    """The aggregate behind each output, where the output is one aggregate as it stands."""
    slots = {f"__dp_a{i}": slot for i, slot in enumerate(plan.slots)}
    post = sqlglot.parse_one(plan.post_sql, read=DIALECT)
    found: list[Slot | None] = []
    for projection in post.expressions[: len(plan.output_names)]:
        inner = projection.unalias()
        found.append(slots.get(inner.name) if isinstance(inner, exp.Column) else None)
    return found


def _draw_noise(
    plan: DpPlan,
    index: dict[str, int],
    exact: dict[tuple[Any, ...], list[Any]],
    combos: list[tuple[Any, ...]],
) -> dict[Measure, list[float]]:
    noisy: dict[Measure, list[float]] = {}
    for measure in plan.measures:
        at = index[measure.alias]
        if measure.kind == "quantile":
            noisy[measure] = [
                _noisy_quantile(plan, measure, exact[c][at] if c in exact else None) for c in combos
            ]
            continue
        values = [(exact[c][at] or 0) if c in exact else 0 for c in combos]
        sensitivity = plan.sensitivity(measure)
        if measure.kind in ("count", "persons"):
            counts = [int(v) for v in values]
            if plan.mechanism == "gaussian":
                drawn = mechanisms.gaussian_counts(
                    counts, sensitivity=int(sensitivity), rho=plan.rho_per_measure
                )
            else:
                drawn = mechanisms.noisy_counts(
                    counts, sensitivity=int(sensitivity), epsilon=plan.epsilon_per_measure
                )
            noisy[measure] = [float(max(0, v)) for v in drawn]
        elif plan.mechanism == "gaussian":
            noisy[measure] = mechanisms.gaussian_sums(
                [float(v) for v in values], sensitivity=sensitivity, rho=plan.rho_per_measure
            )
        else:
            noisy[measure] = mechanisms.noisy_sums(
                [float(v) for v in values],
                sensitivity=sensitivity,
                epsilon=plan.epsilon_per_measure,
            )
    return noisy


def _noisy_quantile(plan: DpPlan, measure: Measure, histogram: str | None) -> float:
    """Select one candidate with OpenDP's report-noisy-max over the histogram's scores.

    An empty group still gets a (pure noise) answer: whether a group holds
    anyone is not released through the quantile.
    """
    counts = {int(k): int(v) for k, v in json.loads(histogram or "{}").items()}
    candidates = measure.candidates
    total = sum(counts.values())
    below, equal, running = [], [], 0
    for i in range(len(candidates)):
        below.append(running)
        equal.append(counts.get(2 * i, 0))
        running += counts.get(2 * i, 0) + counts.get(2 * i + 1, 0)
    scores = mechanisms.quantile_scores(below, equal, total, measure.alpha or 0.5)
    index = mechanisms.noisy_quantile_index(scores, **plan.quantile_budget(measure))
    return candidates[index]


def _slot_values(
    plan: DpPlan, slot: Slot, noisy: dict[Measure, list[float]], groups: int
) -> tuple[list[Any], list[float | None]]:
    if slot.kind in ("variance", "stddev"):
        return _spread_values(slot, noisy, groups), [None] * groups
    if slot.kind == "avg":
        total_m, count_m = slot.measures
        low, high = total_m.bounds or (0.0, 0.0)
        values: list[Any] = []
        bounds: list[float | None] = []
        for position in range(groups):
            total, count = noisy[total_m][position], noisy[count_m][position]
            if count < 1:
                values.append(None)
                bounds.append(None)
                continue
            mean = min(max(total / count, low), high)
            bound = (plan.error95(total_m) + abs(mean) * plan.error95(count_m)) / count
            values.append(mean)
            bounds.append(min(bound, high - low))
        return values, bounds
    (measure,) = slot.measures
    error = plan.error95(measure)
    column = noisy[measure]
    if slot.kind == "quantile":
        return [_tidy(v) for v in column], [round(error, 1)] * groups
    if slot.kind == "count":
        return [int(v) for v in column], [error] * groups
    return list(column), [error] * groups


def _spread_values(slot: Slot, noisy: dict[Measure, list[float]], groups: int) -> list[Any]:
    """Sample variance (or its root) from noisy sum, sum of squares and count: post-processing."""
    total_m, squares_m, count_m = slot.measures
    low, high = total_m.bounds or (0.0, 0.0)
    widest = ((high - low) / 2) ** 2  # no bounded variable varies more
    values: list[Any] = []
    for position in range(groups):
        count = noisy[count_m][position]
        if count < 2:
            values.append(None)
            continue
        mean = noisy[total_m][position] / count
        variance = (noisy[squares_m][position] / count - mean * mean) * count / (count - 1)
        variance = min(max(variance, 0.0), widest)
        values.append(variance**0.5 if slot.kind == "stddev" else variance)
    return values


def _tidy(value: object) -> object:
    if isinstance(value, float):
        return round(value, 6)
    if hasattr(value, "item"):
        return _tidy(value.item())
    return value


def estimates(plan: DpPlan) -> list[dict[str, Any]]:
    """What each output will cost in accuracy, known before any data is read."""
    found: list[dict[str, Any]] = []
    post = sqlglot.parse_one(plan.post_sql, read=DIALECT)
    for name, projection, slot in zip(
        plan.output_names, post.expressions, _output_slots(plan), strict=False
    ):
        inner = projection.unalias()
        if slot is None:
            kind = "key" if isinstance(inner, exp.Column) else "expression"
            found.append({"output": name, "kind": kind, "error95": None})
        elif slot.kind == "quantile":
            (measure,) = slot.measures
            low, high = measure.candidates[0], measure.candidates[-1]
            step = (high - low) / max(1, len(measure.candidates) - 1)
            found.append(
                {
                    "output": name,
                    "kind": "quantile",
                    "alpha": measure.alpha,
                    "rank_error95": round(plan.error95(measure), 1),
                    "resolution": round(step, 6),
                    "note": "one of the public candidates between the bounds; with 95 % "
                    "it lies within rank_error95 rows of the exact quantile's rank",
                }
            )
        elif slot.kind == "avg":
            total, count = slot.measures
            found.append(
                {
                    "output": name,
                    "kind": "avg",
                    "error95_of_sum": round(plan.error95(total), 6),
                    "error95_of_count": round(plan.error95(count), 6),
                    "note": "the mean's error shrinks with the group's size: about "
                    "(sum error + |mean| x count error) / count",
                }
            )
        elif slot.kind in ("variance", "stddev"):
            note = "post-processed from noisy sums; no closed-form bound"
            found.append({"output": name, "kind": slot.kind, "error95": None, "note": note})
        else:
            (measure,) = slot.measures
            error = round(plan.error95(measure), 6)
            found.append({"output": name, "kind": slot.kind, "error95": error})
    return found
