"""The risk signals an auditor reads first, and how many approvals a held job needs."""

from __future__ import annotations

from typing import Any

from policies.output_checks import Cell, CellKind, Contributions, cell_largest_share, larger_share
from sandbox.jobs import risk_signals
from sandbox.jobs.reviews import BECAUSE_DATASET, BECAUSE_UNVERIFIED, quorum_of


def result(*tables: tuple[str, int], k: int = 10, differencing: bool = True) -> dict[str, Any]:
    return {
        "tables": [
            {"name": n, "columns": ["g", "n"], "rows": [["x", 1]] * rows} for n, rows in tables
        ],
        "disclosure": {"k": k, "rules": {"differencing": differencing}},
    }


def sketch(
    table: str, persons: int, keys: list[list[Any]], released: bool = True
) -> dict[str, Any]:
    return {"table": table, "keys": keys, "persons": persons, "released": released, "sketch": []}


def facts(name: str, *, verified: bool, share: float | None = None) -> dict[str, Any]:
    one: dict[str, Any] = {"name": name, "rows": 2, "dropped_rows": 1, "verified": verified}
    one["largest_share"] = (
        {"share": share, "table": name, "keys": [["g", "x"]], "column": "total"} if share else None
    )
    if not verified:
        one["unverified_because"] = {
            "rule": "output.unverified",
            "message": "it differs",
            "message_id": "output.unverified.differs",
            "params": {},
        }
    return one


# --- quorum --------------------------------------------------------------------------------------


def test_quorum_unverified_output_needs_the_larger_number() -> None:
    needed = quorum_of(reviewers=1, unverified_reviewers=2, unverified=["t"])
    assert (needed.required, needed.because, needed.unverified) == (2, BECAUSE_UNVERIFIED, ("t",))
    assert needed.to_dict(1) == {
        "required": 2,
        "given": 1,
        "because": "unverified_output",
        "unverified_outputs": ["t"],
    }


def test_quorum_verified_outputs_need_the_datasets_number() -> None:
    assert quorum_of(reviewers=1, unverified_reviewers=2, unverified=[]).required == 1
    assert quorum_of(reviewers=2, unverified_reviewers=1, unverified=[]).required == 2


def test_quorum_lowered_unverified_setting_never_lowers_the_datasets_number() -> None:
    lowered = quorum_of(reviewers=1, unverified_reviewers=1, unverified=["t"])
    assert (lowered.required, lowered.because) == (1, BECAUSE_DATASET)
    both = quorum_of(reviewers=2, unverified_reviewers=1, unverified=["t"])
    assert (both.required, both.because) == (2, BECAUSE_DATASET)
    assert quorum_of(reviewers=0, unverified_reviewers=0, unverified=[]).required == 1


def test_unverified_outputs_sql_is_the_sandboxs_own() -> None:
    assert (
        risk_signals.unverified_outputs(language="sql", result=result(("r", 1)), stored=None) == []
    )


def test_unverified_outputs_python_by_the_pipelines_record() -> None:
    stored = {"outputs": [facts("a", verified=True), facts("b", verified=False)]}
    found = risk_signals.unverified_outputs(
        language="python", result=result(("a", 1), ("b", 1)), stored=stored
    )
    assert found == ["b"]


def test_unverified_outputs_python_without_a_record_fails_closed() -> None:
    found = risk_signals.unverified_outputs(
        language="python", result=result(("a", 1), ("b", 1)), stored={"by_rule": {}}
    )
    assert found == ["a", "b"]


# --- the largest share ---------------------------------------------------------------------------


def test_largest_share_of_a_cell_and_the_larger_of_two() -> None:
    big = Cell(CellKind.MAGNITUDE, 100, contributions=(Contributions.of([60, 20], 100),))
    small = Cell(CellKind.MAGNITUDE, 100, contributions=(Contributions.of([10], 100),))
    assert cell_largest_share(big) == 0.6
    assert cell_largest_share(Cell(CellKind.COUNT, 3, contributors=3)) is None
    assert (
        cell_largest_share(Cell(CellKind.MAGNITUDE, 0, contributions=(Contributions.of([], 0),)))
        is None
    )
    found = larger_share(None, small, table="t", keys=(("g", "a"),), column="c")
    found = larger_share(found, big, table="t", keys=(("g", "b"),), column="c")
    found = larger_share(found, small, table="t", keys=(("g", "c"),), column="c")
    assert found is not None and found.keys == (("g", "b"),) and found.share == 0.6


# --- signals -------------------------------------------------------------------------------------


def signals(**given: Any) -> list[dict[str, Any]]:
    arguments: dict[str, Any] = {
        "language": "sql",
        "mode": "masked",
        "result": result(("result", 2)),
        "stored": {"by_rule": {}, "outputs": [facts("result", verified=True)]},
        "sketches": [sketch("result", 40, [["g", "a"]]), sketch("result", 25, [["g", "b"]])],
        "findings": [],
        "earlier_releases": 3,
    }
    return risk_signals.signals_of(**(arguments | given))


def of_kind(found: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (one,) = [s for s in found if s["kind"] == kind]
    return one


def test_signals_rows_against_persons_smallest_group() -> None:
    persons = of_kind(signals(), "persons")
    assert persons == {
        "kind": "persons",
        "severity": "low",
        "output": "result",
        "rows": 2,
        "dropped": 1,
        "fewest": 25,
        "most": 40,
        "where": "g = b",
        "k": 10,
        "declared": False,
    }
    thin = of_kind(signals(sketches=[sketch("result", 12, [["g", "a"]])]), "persons")
    assert thin["severity"] == "medium"  # fewer than twice k
    below = of_kind(signals(sketches=[sketch("result", 4, [["g", "a"]])]), "persons")
    assert below["severity"] == "high"
    unknown = of_kind(signals(sketches=None), "persons")
    assert unknown["severity"] == "unknown" and "fewest" not in unknown


def test_signals_differencing_findings_are_high_and_worst_first() -> None:
    isolating = {
        "rule": "masked.differencing",
        "message": "x",
        "message_id": "masked.isolation",
        "params": {},
    }
    found = signals(findings=[isolating, {"rule": "output.near_row_level"}])
    assert found[0]["kind"] == "differencing" and found[0]["severity"] == "high"
    assert found[0]["findings"] == [isolating] and found[0]["earlier"] == 3
    clear = of_kind(signals(), "differencing")
    assert clear["severity"] == "low" and clear["checked"] is True
    off = of_kind(signals(result=result(("result", 2), differencing=False)), "differencing")
    assert off["severity"] == "medium" and off["off"] is True
    assert of_kind(signals(sketches=[]), "differencing")["severity"] == "unknown"


def test_signals_dominance_share_as_a_whole_percent() -> None:
    stored = {
        "by_rule": {"dominance": 2, "p_percent": 1},
        "outputs": [facts("result", verified=True, share=0.62)],
    }
    dominance = of_kind(signals(stored=stored), "dominance")
    assert (dominance["severity"], dominance["percent"], dominance["suppressed"]) == ("high", 62, 3)
    assert dominance["where"] == "g = x" and dominance["column"] == "total"
    stored["outputs"] = [facts("result", verified=True, share=0.3)]
    assert of_kind(signals(stored=stored), "dominance")["severity"] == "medium"
    stored["outputs"] = [facts("result", verified=True, share=0.1)]
    assert of_kind(signals(stored=stored), "dominance")["severity"] == "low"
    assert [s for s in signals() if s["kind"] == "dominance"] == []  # no magnitude cell
    unrecorded = of_kind(signals(stored={"by_rule": {}}), "dominance")
    assert unrecorded["severity"] == "unknown" and unrecorded["recorded"] is False


def test_signals_python_unverified_output_leads_with_its_reason() -> None:
    stored = {"by_rule": {}, "outputs": [facts("a", verified=True), facts("b", verified=False)]}
    found = signals(
        language="python",
        result=result(("a", 2), ("b", 2)),
        stored=stored,
        sketches=[sketch("a", 30, [["g", "x"]]), sketch("b", 30, [["g", "x"]])],
    )
    assert found[0] == {
        "kind": "verification",
        "severity": "high",
        "output": "b",
        "verified": False,
        "reason": stored["outputs"][1]["unverified_because"],
    }
    assert of_kind([s for s in found if s["output"] == "a"], "verification")["severity"] == "low"
    declared = [s for s in found if s["kind"] == "persons" and s["output"] == "b"]
    assert declared[0]["declared"] is True and declared[0]["severity"] == "medium"
    order = risk_signals.SEVERITIES
    assert [s["severity"] for s in found] == sorted((s["severity"] for s in found), key=order.index)
    assert risk_signals.worst(found) == "high"


def test_signals_sql_engine_and_dp_jobs() -> None:
    sql = signals()
    assert of_kind(sql, "verification") == {
        "kind": "verification",
        "severity": "low",
        "output": None,
        "engine": True,
    }
    dp = signals(mode="dp", result={"tables": [{"name": "result", "rows": []}]}, stored=None)
    assert [s["kind"] for s in dp] == ["verification"]
    assert risk_signals.worst([]) == "low"
