"""ACRO-style output checks: the rules, the person sketches and the differencing they catch."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datasets.health_manifest import HEALTH
from policies.disclosure import apply_threshold, check_declared_output, plan_threshold
from policies.output_checks import (
    CELL_SQL,
    CHECK_SQL,
    KEY_SQL,
    DisclosureRules,
    RulesError,
    Sketch,
    SketchedRow,
    dominance_fails,
    isolations,
    p_percent_fails,
)
from policies.policy_file import PolicyFileError, load_policy, parse_policy
from policies.sql_check import check_sql

RULES = DisclosureRules()


def test_rules_default_to_acros_and_bad_values_name_their_place() -> None:
    policy = load_policy(HEALTH)
    assert policy.disclosure == DisclosureRules(threshold=10)
    assert (RULES.dominance_n, RULES.dominance_k, RULES.p_percent, RULES.min_dof) == (
        2,
        0.9,
        0.1,
        10,
    )
    with pytest.raises(RulesError, match=r"disclosure.dominance.k"):
        DisclosureRules.parse({"dominance": {"k": 1.5}}, threshold=10, where="disclosure")
    text = "dataset: health\ndisclosure:\n  round_base: five\n"
    with pytest.raises(PolicyFileError, match=r"health.yaml: disclosure.round_base"):
        parse_policy(text, HEALTH, source="health.yaml")
    assert DisclosureRules(threshold=10).with_threshold(20).threshold == 20
    assert DisclosureRules(threshold=10).with_threshold(5).threshold == 10


def test_dominance_and_p_percent() -> None:
    assert dominance_fails([950.0, 30.0], 1000.0, RULES)  # two persons hold 98 %
    assert not dominance_fails([300.0, 200.0], 1000.0, RULES)
    # Without the two largest, 10 remains of 900: the second could estimate the first.
    assert p_percent_fails([900.0, 90.0], 1000.0, RULES)
    assert not p_percent_fails([100.0, 90.0], 1000.0, RULES)


def test_sketch_in_duckdb_equals_sketch_in_python() -> None:
    persons = [f"{i:032x}" for i in range(2000)]
    con = duckdb.connect()
    con.register("t", pd.DataFrame({"p": persons}))
    rows = con.execute(
        f"SELECT {CELL_SQL} AS i, COUNT(*), bit_xor(h), bit_xor(g) FROM (SELECT h, {CHECK_SQL} "
        f"AS g FROM (SELECT {KEY_SQL} AS h FROM t)), range(3) AS r(j) GROUP BY ALL"
    ).fetchall()
    from_sql = Sketch.from_cells([{"i": i, "c": c, "k": k, "s": s} for i, c, k, s in rows])
    assert from_sql.to_list() == Sketch.of(persons).to_list()


def test_the_runners_helper_sketches_like_the_sandbox() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "runners" / "harness"))
    import sandbox_job

    persons = {f"{i:032x}" for i in range(300)}
    assert sandbox_job._sketch(persons) == Sketch.of(persons).to_list()


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["x", "y", None]),
            st.integers(1, 3),
            st.one_of(st.none(), st.integers(0, 30), st.sampled_from(["7", "p1", "p2"])),
        ),
        max_size=80,
    ),
    by=st.sampled_from([["a"], ["b"], ["a", "b"]]),
)
def test_helper_group_sketches_equal_the_sandboxs_per_group(
    rows: list[tuple[Any, int, Any]], by: list[str]
) -> None:
    """The helper's vectorised pass gives each group the sketch and person count of its
    set of persons as text (NaN keys grouped, missing persons left out)."""
    from runners.harness import sandbox_job

    frame = pd.DataFrame(rows, columns=["a", "b", "person_id"], dtype=object)
    grouped = frame.groupby(by, dropna=False, observed=True)
    hidden = sandbox_job._persons_and_sketches(grouped, "person_id")
    expected = [
        {str(p) for p in members.dropna()} for _, members in grouped["person_id"]
    ]  # the groupby's own order
    assert hidden["__sandbox_persons"].tolist() == [len(e) for e in expected]
    assert hidden["__sandbox_sketch"].tolist() == [Sketch.of(e).to_list() for e in expected]


@settings(max_examples=150, deadline=None)
@given(
    common=st.integers(0, 3000),
    only_a=st.integers(0, 15),
    only_b=st.integers(0, 15),
)
def test_peeling_recovers_small_set_differences(common: int, only_a: int, only_b: int) -> None:
    shared = [f"c{i}" for i in range(common)]
    a = Sketch.of(shared + [f"a{i}" for i in range(only_a)])
    b = Sketch.of(shared + [f"b{i}" for i in range(only_b)])
    assert a.minus(b).peel() == (only_a, only_b)


def test_peeling_gives_up_on_large_differences() -> None:
    a = Sketch.of(f"p{i}" for i in range(1000))
    assert a.minus(Sketch.of(f"p{i}" for i in range(500))).peel() is None


def row(table: str, persons: list[str], released: bool = True, **keys: str) -> SketchedRow:
    return SketchedRow(table, tuple(keys.items()), len(set(persons)), Sketch.of(persons), released)


def test_nested_rows_that_differ_by_fewer_than_k_are_caught() -> None:
    everyone = [f"p{i}" for i in range(200)]
    earlier = [row("result", everyone)]
    new = [row("result", everyone[:196])]  # the same question less 4 persons
    (found,) = isolations(new, earlier, 10)
    assert found.rule == "masked.differencing" and found.persons == 4
    assert isolations([row("result", everyone[:150])], earlier, 10) == []  # 50 apart: fine
    other = [f"q{i}" for i in range(197)]  # a different group of about the same size
    assert isolations([row("result", other)], earlier, 10) == []


def test_a_total_less_a_breakdowns_released_cells_recovering_a_suppressed_row() -> None:
    women = [f"w{i}" for i in range(120)]
    men = [f"m{i}" for i in range(100)]
    other = [f"o{i}" for i in range(4)]  # suppressed: 4 persons
    breakdown = [
        row("by_sex", women, sex="女"),
        row("by_sex", men, sex="男"),
        row("by_sex", other, released=False, sex="其他"),
    ]
    (found,) = isolations([*breakdown, row("total", women + men + other)], [], 10)
    assert found.rule == "masked.suppressed_cell_recoverable" and found.persons == 4
    # Across jobs: the breakdown went out earlier, the total comes now.
    earlier = [
        SketchedRow(r.table, r.keys, r.persons, r.sketch, r.released, job="j1") for r in breakdown
    ]
    (found,) = isolations([row("total", women + men + other)], earlier, 10)
    assert found.rule == "masked.suppressed_cell_recoverable"
    # A total of other persons recovers nothing.
    assert isolations([row("total", [f"z{i}" for i in range(224)])], earlier, 10) == []


def view() -> duckdb.DuckDBPyConnection:
    persons = [f"{i:032x}" for i in range(60)]
    visits = pd.DataFrame(
        {
            "visit_id": [f"v{i}" for i in range(60)],
            "person_id": persons,
            "department": ["内科"] * 30 + ["外科"] * 30,
            "cost": [10.0] * 29 + [1_000_000.0] + [10.0] * 30,
            "length_of_stay": [1] * 60,
        }
    )
    con = duckdb.connect()
    con.register("visits", visits)
    return con


def checked_output(sql: str, rules: DisclosureRules = RULES):  # type: ignore[no-untyped-def]
    plan = plan_threshold(check_sql(sql, HEALTH, mode="masked"), privacy_unit="person_id")
    cursor = view().execute(plan.sql)
    columns = [d[0] for d in cursor.description]
    return apply_threshold(plan, columns, [list(r) for r in cursor.fetchall()], k=10, rules=rules)


def test_a_dominated_magnitude_cell_is_suppressed_and_counts_stay() -> None:
    released = checked_output(
        "SELECT department, COUNT(*) AS n, SUM(cost) AS total FROM visits "
        "GROUP BY department ORDER BY department"
    )
    assert released.rows == [["内科", 30, None], ["外科", 30, 300.0]]
    # Every rule the cell fails is reported, not only the first.
    assert released.reasons == {"dominance": 1, "p_percent": 1}
    (cell,) = released.suppressions
    assert (cell.row, cell.column, cell.rules) == (0, "total", ("dominance", "p_percent"))
    assert len(released.sketches) == 2 and not released.holds


def test_counts_are_rounded_to_the_owners_base() -> None:
    rules = DisclosureRules(round_base=7)
    released = checked_output("SELECT department, COUNT(*) AS n FROM visits GROUP BY 1", rules)
    assert sorted(r[1] for r in released.rows) == [28, 28]


def test_a_query_that_is_not_one_select_is_held_for_review() -> None:
    released = checked_output(
        "SELECT d, COUNT(*) AS n FROM (SELECT department AS d, person_id FROM visits) AS x "
        "GROUP BY d"
    )
    assert [h.rule for h in released.holds] == ["masked.checks_need_review"]


def test_helper_outputs_checked_by_kind() -> None:
    sketch = json.dumps(Sketch.of(["a"]).to_list())
    columns = [
        "department",
        "sum_cost",
        "n",
        "__sandbox_persons",
        "__sandbox_sketch",
        "__sandbox_top",
        "__sandbox_total",
        "__sandbox_contributors",
    ]
    rows = [
        ["内科", 1000.0, 40, 40, sketch, [950.0, 10.0], 1000.0, 40],
        ["外科", 1000.0, 40, 40, sketch, [100.0, 90.0], 1000.0, 40],
        ["儿科", 30.0, 3, 3, sketch, [10.0, 10.0], 30.0, 3],
    ]
    declared = {
        "kind": "magnitude",
        "count_column": "n",
        "by": ["department"],
        "value": "cost",
        "statistic": "sum",
    }
    # As the worker hands them over once it has computed them again (verified).
    released = check_declared_output("cost", columns, rows, declared, k=10, verified=True)
    assert released.columns == ["department", "sum_cost", "n"]
    assert released.rows == [["内科", None, 40], ["外科", 1000.0, 40]]
    assert released.reasons == {"threshold": 1, "dominance": 1, "p_percent": 1}
    held = check_declared_output(
        "cost", ["department", "sum_cost", "n"], [["内科", 1000.0, 40]], declared, k=10
    )
    assert [h.rule for h in held.holds] == ["output.magnitude_unchecked", "output.unverified"]


def test_model_summaries_need_residual_degrees_of_freedom() -> None:
    from policies.disclosure import DisclosureError

    table = (["term", "estimate"], [["x", 1.5]])
    trusting = DisclosureRules(trust_python_declarations=True)  # the owner's explicit choice
    ok = check_declared_output(
        "fit", *table, {"kind": "model_summary", "dof": 40.0}, k=10, rules=trusting
    )
    assert ok.rows == [["x", 1.5]] and not ok.holds
    # By default a model summary's dof cannot be verified: an auditor looks.
    held = check_declared_output("fit", *table, {"kind": "model_summary", "dof": 40.0}, k=10)
    assert [h.rule for h in held.holds] == ["output.unverified"]
    with pytest.raises(DisclosureError) as refused:
        check_declared_output("fit", *table, {"kind": "model_summary", "dof": 3.0}, k=10)
    assert refused.value.finding.rule == "output.model_dof"
    unknown = check_declared_output("fit", *table, {"kind": "model_summary"}, k=10, rules=trusting)
    assert [h.rule for h in unknown.holds] == ["output.model_dof_unknown"]


def test_zero_counts_are_suppressed_unless_the_owner_says_otherwise() -> None:
    declared = {"kind": "frequency", "count_column": "n"}
    rows = [["a", 0], ["b", 50]]
    zero = check_declared_output("t", ["g", "n"], rows, declared, k=10)
    assert zero.reasons == {"threshold": 1, "zero": 1}  # ACRO reports both too
    lenient = DisclosureRules(zeros_disclosive=False)
    kept = check_declared_output("t", ["g", "n"], rows, declared, k=10, rules=lenient)
    assert kept.rows == [["a", 0], ["b", 50]]


def test_a_sparse_output_is_near_row_level_and_held() -> None:
    declared = {"kind": "frequency", "count_column": "n"}
    rows = [[f"g{i}", 2] for i in range(30)] + [["big", 500]]
    held = check_declared_output("t", ["g", "n"], rows, declared, k=10, verified=True)
    assert [h.rule for h in held.holds] == ["output.near_row_level"]


# --- reading only the sketches that can matter ------------------------------------------

person_sets = st.sets(st.integers(0, 29), max_size=30)
row_specs = st.tuples(
    st.sampled_from(["t", "u"]), st.sampled_from([(), ("a",), ("b",)]), person_sets, st.booleans()
)


def sketched(spec: tuple[str, tuple[str, ...], set[int], bool], job: str | None) -> SketchedRow:
    table, key, persons, released = spec
    keys = tuple(("g", value) for value in key)
    return SketchedRow(
        table, keys, len(persons), Sketch.of(f"p{p}" for p in persons), released, job=job
    )


@settings(max_examples=300, deadline=None)
@given(
    new=st.lists(row_specs, min_size=1, max_size=6),
    earlier=st.lists(st.lists(row_specs, min_size=1, max_size=5), max_size=4),
    threshold=st.integers(2, 10),
)
def test_sizes_first_finds_what_reading_every_sketch_finds(
    new: list[Any], earlier: list[list[Any]], threshold: int
) -> None:
    from policies.output_checks import RowSize, rows_to_compare

    fresh = [sketched(spec, None) for spec in new]
    stored = [sketched(spec, f"j{n}") for n, job in enumerate(earlier) for spec in job]
    sizes = [
        RowSize(ref, r.job or "", r.table, r.keys, r.persons, r.released)
        for ref, r in enumerate(stored)
    ]
    needed = rows_to_compare(fresh, sizes, threshold)
    label = {id(r): f"new{i}" for i, r in enumerate(fresh)} | {
        id(r): f"old{i}" for i, r in enumerate(stored)
    }

    def found(rows: list[SketchedRow]) -> list[tuple[str, int, str, str]]:
        return sorted(
            (f.rule, f.persons, label[id(f.new)], label[id(f.other)])
            for f in isolations(fresh, rows, threshold)
        )

    assert found([stored[ref] for ref in sorted(needed)]) == found(stored)
