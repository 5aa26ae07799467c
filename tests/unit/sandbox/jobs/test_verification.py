"""A Python job's outputs are recomputed from its view before any is trusted.

The runner may hand over anything: these tests feed the checks outputs as a
job's own process could forge them (counts, persons, sketches, the declaration
itself) and prove that only what the sandbox computed again goes out unreviewed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.disclosure import HELPER_PERSONS, check_declared_output
from policies.output_checks import DisclosureRules
from runners.contract import OutputTable
from runners.harness import sandbox_job
from runners.harness.harness import frame_cells
from sandbox.jobs.verification import verify_outputs


def visits(rows: int = 400, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "person_id": [f"p{rng.integers(0, max(rows // 3, 1))}" for _ in range(rows)],
            "department": rng.choice(["cardiology", "oncology", "surgery", None], rows),
            "sex": rng.choice(["F", "M"], rows),
            "cost": rng.gamma(2.0, 500.0, rows).round(2),
        }
    )


@pytest.fixture
def view(tmp_path: Path) -> Path:
    folder = tmp_path / "view"
    folder.mkdir()
    visits().to_parquet(folder / "visits.parquet", index=False)
    return folder


def helper_output(
    name: str, frame: pd.DataFrame, kind: str, by: list[str], **extra: Any
) -> OutputTable:
    """An output exactly as the runner's helper hands it over."""
    if kind == "frequency":
        table, hidden = sandbox_job.frequency_of(frame, by)
        declared = {"kind": "frequency", "count_column": "n", "by": by, "source": "visits"}
    else:
        table, hidden = sandbox_job.magnitude_of(frame, by, extra["value"], extra["statistic"])
        declared = {
            "kind": "magnitude",
            "count_column": "n",
            "by": by,
            "source": "visits",
            "value": extra["value"],
            "statistic": extra["statistic"],
        }
    columns, rows = frame_cells(sandbox_job.joined(table, hidden))
    return OutputTable(name, columns, rows, declared)


def test_honest_helper_tables_are_verified_and_kept(view: Path) -> None:
    frame = pd.read_parquet(view / "visits.parquet")
    outputs = [
        helper_output("n", frame, "frequency", ["department", "sex"]),
        helper_output("sum", frame, "magnitude", ["department"], value="cost", statistic="sum"),
        helper_output("mean", frame, "magnitude", ["sex"], value="cost", statistic="mean"),
    ]
    checked = verify_outputs(outputs, view)
    assert [c.verified for c in checked] == [True, True, True]
    assert [c.table.rows for c in checked] == [o.rows for o in outputs]


def test_forged_persons_and_sketches_are_replaced_by_the_sandboxs_own(view: Path) -> None:
    frame = pd.read_parquet(view / "visits.parquet")
    honest = helper_output("n", frame, "frequency", ["department", "sex", "cost"])
    at = honest.columns.index(HELPER_PERSONS)
    forged_rows = [[*row[:at], 100, *row[at + 1 :]] for row in honest.rows]
    forged = OutputTable("n", honest.columns, forged_rows, {**honest.declared, "verified": True})

    (checked,) = verify_outputs([forged], view)

    assert checked.verified
    assert checked.table.rows == honest.rows  # the true persons per row, not 100
    released = check_declared_output(
        "n", checked.table.columns, checked.table.rows, checked.table.declared, k=10, verified=True
    )
    # Grouped down to single costs, every row has one or two persons: none goes out,
    # and a table this thin waits for an auditor.
    assert released.rows == []
    assert [h.rule for h in released.holds] == ["output.near_row_level"]


@pytest.mark.parametrize(
    "change",
    ["count", "key", "extra_row", "missing_row", "column", "source", "by", "kind", "value"],
)
def test_an_output_unlike_its_recomputation_is_not_verified(view: Path, change: str) -> None:
    frame = pd.read_parquet(view / "visits.parquet")
    honest = helper_output("m", frame, "magnitude", ["department"], value="cost", statistic="sum")
    columns, rows, declared = (
        list(honest.columns),
        [list(r) for r in honest.rows],
        dict(honest.declared),
    )
    if change == "count":
        rows[0][columns.index("n")] += 1
    elif change == "key":
        rows[0][0] = "a person's name"
    elif change == "extra_row":
        rows.append(list(rows[0]))
    elif change == "missing_row":
        rows.pop()
    elif change == "column":
        columns[0] = "ward"
    elif change == "source":
        declared["source"] = "patients"
    elif change == "by":
        declared["by"] = ["sex"]
    elif change == "kind":
        declared["kind"] = "model_summary"
    elif change == "value":
        declared["value"] = "person_id"
    (checked,) = verify_outputs([OutputTable("m", columns, rows, declared)], view)
    assert not checked.verified
    assert checked.reason
    assert checked.table.rows == rows  # kept as declared, for the auditor


def test_declarations_the_sandbox_cannot_recompute(view: Path) -> None:
    frame = pd.read_parquet(view / "visits.parquet")
    derived = helper_output("d", frame[frame.cost > 1000], "frequency", ["department"])
    declared = {**derived.declared, "source": None}
    reasons = {
        c.table.name: c.reason
        for c in verify_outputs(
            [
                OutputTable("d", derived.columns, derived.rows, declared),
                OutputTable(
                    "own",
                    ["department", "n"],
                    [["x", 50]],
                    {"kind": "frequency", "count_column": "n"},
                ),
                OutputTable(
                    "m",
                    ["term", "estimate"],
                    [["a", 1.0]],
                    {"kind": "model_summary", "dof": 500.0, "verified": True},
                ),
                OutputTable(
                    "path",
                    derived.columns,
                    derived.rows,
                    {**derived.declared, "source": "../visits"},
                ),
                OutputTable(
                    "gone", derived.columns, derived.rows, {**derived.declared, "source": "labs"}
                ),
            ],
            view,
        )
    }
    assert reasons == {
        "d": "it was not made directly from a table of the view",
        "own": "it was not made directly from a table of the view",
        "m": "only frequency and magnitude tables can be recomputed",
        "path": "it names a selection the sandbox cannot repeat",
        "gone": "the view has no table labs",
    }


def test_unverified_outputs_wait_for_an_auditor_unless_the_owner_trusts_them() -> None:
    columns, rows = ["department", "n"], [["cardiology", 50], ["oncology", 60]]
    declared = {"kind": "frequency", "count_column": "n"}
    held = check_declared_output(
        "t", columns, rows, declared, k=10, unverified_because="it was not made from the view"
    )
    assert [h.rule for h in held.holds] == ["output.unverified"]
    assert "it was not made from the view" in held.holds[0].message
    trusting = DisclosureRules(trust_python_declarations=True)
    assert check_declared_output("t", columns, rows, declared, k=10, rules=trusting).holds == []
    assert check_declared_output("t", columns, rows, declared, k=10, verified=True).holds == []


def test_a_policy_may_trust_declarations_only_explicitly() -> None:
    assert DisclosureRules.parse(None, threshold=10, where="p").trust_python_declarations is False
    rules = DisclosureRules.parse({"trust_python_declarations": True}, threshold=10, where="p")
    assert rules.trust_python_declarations is True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(min_value=1, max_value=120),
    seed=st.integers(min_value=0, max_value=10_000),
    by=st.sampled_from([["department"], ["sex"], ["department", "sex"]]),
    bump=st.integers(min_value=-3, max_value=3).filter(lambda v: v != 0),
)
def test_any_changed_count_fails_verification(
    tmp_path_factory: pytest.TempPathFactory, rows: int, seed: int, by: list[str], bump: int
) -> None:
    folder = tmp_path_factory.mktemp("view")
    frame = visits(rows, seed)
    frame.to_parquet(folder / "visits.parquet", index=False)
    honest = helper_output("n", frame, "frequency", by)
    assert verify_outputs([honest], folder)[0].verified
    changed = [list(r) for r in honest.rows]
    changed[seed % len(changed)][honest.columns.index("n")] += bump
    forged = OutputTable("n", honest.columns, changed, honest.declared)
    assert not verify_outputs([forged], folder)[0].verified


def selected_output(
    view: Path, name: str, where: list[Any], bins: dict[str, list[float]], by: list[str]
) -> OutputTable:
    """A frequency table of a selected frame, as the helper hands it over."""
    frame = sandbox_job.select_rows(pd.read_parquet(view / "visits.parquet"), where, bins)
    table, hidden = sandbox_job.frequency_of(frame, by)
    source = sandbox_job.selection("visits", where, bins)
    declared = {"kind": "frequency", "count_column": "n", "by": by, "source": source}
    columns, rows = frame_cells(sandbox_job.joined(table, hidden))
    return OutputTable(name, columns, rows, declared)


def test_tables_of_selected_frames_are_verified(view: Path) -> None:
    where = [
        ["cost", ">", 800.0],
        ["department", "in", ["cardiology", "oncology"]],
        ["sex", "not null", None],
    ]
    bins = {"cost": [0, 500, 1000, 2000, 10_000]}
    honest = selected_output(view, "t", where, bins, ["department", "cost"])
    assert {row[1] for row in honest.rows} <= {"[500, 1000)", "[1000, 2000)", "[2000, 10000)"}
    (checked,) = verify_outputs([honest], view)
    assert checked.verified and checked.table.rows == honest.rows

    # Claiming a narrower selection than the one applied does not pass.
    wider = selected_output(view, "t", where[1:], bins, ["department", "cost"])
    lying = OutputTable("t", wider.columns, wider.rows, honest.declared)
    (checked,) = verify_outputs([lying], view)
    assert not checked.verified
    assert checked.reason == "it differs from the same table computed from the view"


@pytest.mark.parametrize(
    ("where", "bins", "message"),
    [
        ([["cost", "like", "%"]], None, "operator"),
        ([["cost", ">", [1, 2]]], None, "one number"),
        ([["department", "in", "cardiology"]], None, "list"),
        ([["cost", ">"]], None, "one number"),
        ([["cost"]], None, "(column, operator, value)"),
        ([["cost", "in", [{"a": 1}]]], None, "where values"),
        (None, {"cost": [10, 5]}, "increasing"),
        (None, {"cost": [1]}, "increasing"),
        (None, {"cost": ["a", "b"]}, "increasing"),
    ],
)
def test_a_selection_the_sandbox_cannot_repeat_is_refused(
    view: Path, where: Any, bins: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        sandbox_job.selection("visits", where, bins)
    frame = pd.read_parquet(view / "visits.parquet")
    table, hidden = sandbox_job.frequency_of(frame, ["department"])
    columns, rows = frame_cells(sandbox_job.joined(table, hidden))
    source = {"table": "visits", "where": where, "bins": bins}
    declared = {"kind": "frequency", "count_column": "n", "by": ["department"], "source": source}
    (checked,) = verify_outputs([OutputTable("t", columns, rows, declared)], view)
    assert not checked.verified
    assert checked.reason == "it names a selection the sandbox cannot repeat"
