"""What an auditor reads first on a review: the risk signals of a held job, worst first.

Computed from what the sandbox already keeps of the job, never from its data:
the per-output facts the pipeline records for auditors (rows, whether the
sandbox computed the output itself and why not, the largest person's share of
a released cell: ``jobs.suppressions["outputs"]``), the persons of each row
(``jobs.disclosure_sketches``, sizes only), the suppressions by rule and the
findings (differencing against earlier releases under the grant). Nothing here
shows a value auditors do not already see beside it: counts of persons, group
keys of the rows they read, and a share rounded to a whole percent.

Each signal is plain data with a ``kind``, a ``severity`` (``high``,
``unknown``, ``medium``, ``low``: what cannot be told ranks just below what is
known to be bad) and the parameters its words need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

HIGH = "high"
UNKNOWN = "unknown"
MEDIUM = "medium"
LOW = "low"
SEVERITIES = (HIGH, UNKNOWN, MEDIUM, LOW)

VERIFICATION = "verification"
PERSONS = "persons"
DIFFERENCING = "differencing"
DOMINANCE = "dominance"
KINDS = (VERIFICATION, DIFFERENCING, DOMINANCE, PERSONS)

# The findings of the differencing checks (policies.output_checks.isolations).
DIFFERENCING_RULES = ("masked.differencing", "masked.suppressed_cell_recoverable")
# One person's share of a released cell from which it reads as high, or as worth a look:
# half a total is the classic (1, 0.5) dominance rule; the owner's (N, K) rule ran before.
HIGH_SHARE = 0.5
MEDIUM_SHARE = 0.25
# Behind each released row at least k persons; fewer than this many times k is worth a look.
THIN_GROUPS = 2


def unverified_outputs(
    *, language: str, result: Mapping[str, Any] | None, stored: Mapping[str, Any] | None
) -> list[str]:
    """The outputs of a job that the sandbox did not compute itself.

    SQL is run by the sandbox's own engine on the checked query, so its outputs
    are the sandbox's. A Python job's output counts as verified only where the
    pipeline recorded it so; a job held before outputs were recorded fails closed.
    """
    if language != "python":
        return []
    names = [str(t.get("name")) for t in (result or {}).get("tables") or []]
    recorded = {f.get("name"): f for f in _facts(stored) or []}
    return [name for name in names if not (recorded.get(name) or {}).get("verified")]


def signals_of(
    *,
    language: str,
    mode: str,
    result: Mapping[str, Any] | None,
    stored: Mapping[str, Any] | None,
    sketches: Sequence[Mapping[str, Any]] | None,
    findings: Sequence[Mapping[str, Any]],
    earlier_releases: int,
) -> list[dict[str, Any]]:
    """Every signal of one held job, worst first."""
    row_counts = {
        str(t.get("name")): len(t.get("rows") or []) for t in (result or {}).get("tables") or []
    }
    tables = list(row_counts)
    facts = {str(f.get("name")): f for f in _facts(stored) or []}
    unverified = set(unverified_outputs(language=language, result=result, stored=stored))
    found: list[dict[str, Any]] = []
    if language == "python":
        for name in tables:
            found.append(_verification(name, facts.get(name), verified=name not in unverified))
    else:
        found.append(_signal(VERIFICATION, LOW, None, engine=True))
    if mode == "dp":
        return _ordered(found)
    disclosure = (result or {}).get("disclosure") or {}
    k = int(disclosure.get("k") or 0)
    rows_by_table: dict[str, list[Mapping[str, Any]]] = {}
    for row in sketches or []:
        rows_by_table.setdefault(str(row.get("table")), []).append(row)
    for name in tables:
        one = facts.get(name) or {}
        rows = int(one.get("rows", row_counts.get(name, 0)))
        found.append(
            _persons(
                name,
                rows_by_table.get(name, []),
                rows=rows,
                dropped=int(one.get("dropped_rows", 0)),
                k=k,
                declared=name in unverified,
            )
        )
    found.append(
        _differencing(
            findings,
            sketched=bool(sketches),
            on=bool((disclosure.get("rules") or {}).get("differencing", True)),
            earlier=earlier_releases,
            k=k,
        )
    )
    by_rule = (stored or {}).get("by_rule") or {}
    dominated = int(by_rule.get("dominance", 0)) + int(by_rule.get("p_percent", 0))
    if _facts(stored) is None:
        found.append(_signal(DOMINANCE, UNKNOWN, None, recorded=False, suppressed=dominated))
    for name in tables:
        largest = (facts.get(name) or {}).get("largest_share")
        if largest:
            found.append(
                _dominance(name, largest, suppressed=dominated, declared=name in unverified)
            )
    return _ordered(found)


def worst(signals: Sequence[Mapping[str, Any]]) -> str:
    """The most severe of the signals (low when there are none)."""
    return min((s["severity"] for s in signals), key=SEVERITIES.index, default=LOW)


def _facts(stored: Mapping[str, Any] | None) -> list[Mapping[str, Any]] | None:
    facts = (stored or {}).get("outputs")
    return facts if isinstance(facts, list) else None


def _signal(kind: str, severity: str, output: str | None, **params: object) -> dict[str, Any]:
    return {"kind": kind, "severity": severity, "output": output, **params}


def _verification(name: str, facts: Mapping[str, Any] | None, *, verified: bool) -> dict[str, Any]:
    if verified:
        return _signal(VERIFICATION, LOW, name, verified=True)
    return _signal(
        VERIFICATION,
        HIGH,
        name,
        verified=False,
        reason=(facts or {}).get("unverified_because"),
    )


def _persons(
    name: str,
    sketched: list[Mapping[str, Any]],
    *,
    rows: int,
    dropped: int,
    k: int,
    declared: bool,
) -> dict[str, Any]:
    """Rows against persons: how many rows, the fewest and most persons behind a released
    row and where the smallest group is, how many rows fell below k."""
    released = [r for r in sketched if r.get("released")]
    if not released:
        return _signal(PERSONS, UNKNOWN, name, rows=rows, dropped=dropped, declared=declared)
    smallest = min(released, key=lambda r: int(r.get("persons") or 0))
    fewest = int(smallest.get("persons") or 0)
    most = max(int(r.get("persons") or 0) for r in released)
    if fewest < k:
        severity = HIGH
    elif fewest < THIN_GROUPS * k or dropped > rows:
        severity = MEDIUM
    else:
        severity = LOW
    if declared and severity == LOW:
        severity = MEDIUM  # what the job declared about its persons is not trusted
    return _signal(
        PERSONS,
        severity,
        name,
        rows=rows,
        dropped=dropped,
        fewest=fewest,
        most=most,
        where=_where(smallest.get("keys")),
        k=k,
        declared=declared,
    )


def _differencing(
    findings: Sequence[Mapping[str, Any]], *, sketched: bool, on: bool, earlier: int, k: int
) -> dict[str, Any]:
    isolating = [f for f in findings if f.get("rule") in DIFFERENCING_RULES]
    if isolating:
        return _signal(DIFFERENCING, HIGH, None, findings=isolating, earlier=earlier, k=k)
    if not on:
        return _signal(DIFFERENCING, MEDIUM, None, off=True, earlier=earlier, k=k)
    if not sketched:
        return _signal(DIFFERENCING, UNKNOWN, None, checked=False, earlier=earlier, k=k)
    return _signal(DIFFERENCING, LOW, None, checked=True, earlier=earlier, k=k)


def _dominance(
    name: str, largest: Mapping[str, Any], *, suppressed: int, declared: bool
) -> dict[str, Any]:
    share = float(largest.get("share") or 0.0)
    severity = HIGH if share >= HIGH_SHARE else MEDIUM if share >= MEDIUM_SHARE else LOW
    if declared and severity == LOW:
        severity = MEDIUM
    return _signal(
        DOMINANCE,
        severity,
        name,
        recorded=True,
        percent=round(share * 100),
        where=_where(largest.get("keys")),
        column=str(largest.get("column") or ""),
        suppressed=suppressed,
        declared=declared,
    )


def _where(keys: object) -> str:
    """A row's group keys as auditors read them beside its output ("" for a whole table)."""
    if not isinstance(keys, list):
        return ""
    return ", ".join(f"{k[0]} = {k[1]}" for k in keys if isinstance(k, list) and len(k) == 2)


def _ordered(signals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(signals, key=lambda s: (SEVERITIES.index(s["severity"]), KINDS.index(s["kind"])))
