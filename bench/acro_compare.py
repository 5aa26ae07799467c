"""Our masked-mode disclosure control against ACRO 1.0.2, cell by cell.

Usage::

    .venv/bin/python bench/acro_compare.py [--patients 5000] [--seed 20221]

ACRO (AI-SDC's output checker, the anchor of our defaults) runs in its own venv,
``bench/.acro-venv`` (made on the first run), through ``bench/acro_runner.py``.
For every table below, on generated health data (the masked view: pseudonymous
person ids), each cell is decided three times:

- by our **SQL path**: the query checked (``check_sql``), planned
  (``plan_threshold``), run by DuckDB and checked (``apply_threshold``);
- by our **Python path**: the helper's ``frequency_of`` / ``magnitude_of`` (what
  the worker recomputes from the view) checked by ``check_declared_output``;
- by **ACRO** (``ACRO.crosstab``) on one row per person and cell (a person's
  values in a cell summed), since ACRO counts rows, not persons.

It prints, per table and path, the cells compared, the agreements, and each
disagreement with both sides' reasons. Differences we mean to have are listed
apart, each with its reason (docs/disclosure-control.md, "ACRO"):

- ``refused``: MIN, MAX and MEDIAN are refused in masked mode (one person's
  value); ACRO checks them for a threshold only;
- ``empty group``: a combination of keys no one has is no row of ours; ACRO's
  crosstab shows it as a zero and suppresses it;
- ``few non-zero``: a SUM or mean with fewer than k persons of non-zero value
  is suppressed (a sum of indicators is a count in disguise, and a mean times
  the row's count is its sum); ACRO thresholds on rows;
- ``p-percent boundary``: a cell whose rest is exactly p of its largest
  contribution fails (ACRO's ``p_val < p`` lets it through).

Reasons are compared too, where both suppress: ACRO reports one check per rule
it runs, we report every rule a cell fails; the tally of where the named rules
differ is printed, not counted as a disagreement.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb
import numpy as np
import pandas as pd

from datasets.health import generate_health
from datasets.health_manifest import HEALTH
from datasets.views import build_view
from policies.disclosure import (
    DisclosureError,
    Released,
    apply_threshold,
    check_declared_output,
    plan_threshold,
)
from policies.output_checks import DisclosureRules
from policies.policy_file import load_policy
from policies.sql_check import check_sql
from runners.harness import sandbox_job
from runners.harness.harness import frame_cells

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".acro-venv"
RUNNER = BENCH / "acro_runner.py"
ACRO_PACKAGES = ("acro==1.0.2", "pyarrow")
PSEUDONYM_KEY = hashlib.sha256(b"bench/acro_compare.py pseudonym key").digest()
PERSON = "person_id"
ALL = "__all"  # the one column of a table with a single key, for ACRO's crosstab

# ACRO's check -> our rule of the same meaning.
ACRO_RULES = {
    "MinimumThresholdCheck": "threshold",
    "PresenceOfZeroCheck": "zero",
    "NKCheck": "dominance",
    "PPercentCheck": "p_percent",
}


@dataclass(frozen=True)
class Table:
    name: str
    source: str  # "visits", "patients" or "visits+patients" (joined on the person)
    by: tuple[str, ...]
    statistic: str  # "count", "sum", "mean", "max"
    value: str | None = None
    # the owner's disclosure settings, where they differ from the defaults (both sides)
    rules: dict[str, Any] = field(default_factory=dict)
    # a frame made from the view for this table (dominated, boundary, zero cells)
    craft: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    note: str = ""


# --- crafted cells: dominance, boundaries, zeros -----------------------------------------


def crafted_cells(visits: pd.DataFrame, *, p_edge: bool = False) -> pd.DataFrame:
    """The visits of six departments, their costs set so each department is one kind of cell.

    内科: ordinary; 外科: two persons hold 95 %; 儿科: two persons hold exactly 90 %
    (the dominance boundary); 妇产科: every cost 0 (a zero sum over many persons);
    眼科: 11 persons, one of them far above the rest; 急诊科: the rest is exactly
    10 % of the largest (the p-percent boundary; with ``p_edge`` the rest of each
    kind is arranged so only that rule decides).
    """
    persons = visits[PERSON].drop_duplicates().to_numpy()
    rows: list[dict[str, Any]] = []

    def department(name: str, costs: list[float]) -> None:
        start = len({r[PERSON] for r in rows})
        for offset, cost in enumerate(costs):
            rows.append({PERSON: persons[start + offset], "department": name, "cost": cost})

    department("内科", [100.0 + 7 * i for i in range(30)])
    department("外科", [4750.0, 4750.0] + [500.0 / 18] * 18)
    department("儿科", [450.0, 450.0] + [10.0] * 10)
    department("妇产科", [0.0] * 25)
    department("眼科", [5000.0] + [10.0] * 10)
    # The rest (10 persons of 6.0) is 60: exactly 10 % of the largest, 600.
    department("急诊科", [600.0, 100.0] + [6.0] * 10)
    frame = pd.DataFrame(rows)
    frame["hospital"] = "市一院"
    return frame


TABLES = (
    Table("count by department", "visits", ("department",), "count"),
    Table("count by district × sex", "patients", ("district", "sex"), "count"),
    Table("count by hospital × department", "visits", ("hospital", "department"), "count"),
    Table("count by icd10 × district", "visits+patients", ("icd10", "district"), "count"),
    Table("SUM cost by department", "visits", ("department",), "sum", "cost"),
    Table("MEAN cost by department", "visits", ("department",), "mean", "cost"),
    Table("SUM cost by hospital × department", "visits", ("hospital", "department"), "sum", "cost"),
    Table("MEAN cost by district × sex", "visits+patients", ("district", "sex"), "mean", "cost"),
    Table(
        "SUM readmitted_30d by icd10 × district",
        "visits+patients",
        ("icd10", "district"),
        "sum",
        "readmitted_30d",
    ),
    Table(
        "MEAN length_of_stay by hospital × department",
        "visits",
        ("hospital", "department"),
        "mean",
        "length_of_stay",
    ),
    Table(
        "SUM cost, crafted cells (dominated, boundary, zero)",
        "visits",
        ("department",),
        "sum",
        "cost",
        craft=crafted_cells,
    ),
    Table(
        "SUM cost, crafted cells, dominance k = 0.99 (p-percent decides)",
        "visits",
        ("department",),
        "sum",
        "cost",
        rules={"dominance": {"n": 2, "k": 0.99}},
        craft=crafted_cells,
    ),
    Table("MAX cost by department", "visits", ("department",), "max", "cost"),
)


# --- our two paths -----------------------------------------------------------------------


def frame_of(view: dict[str, pd.DataFrame], table: Table) -> pd.DataFrame:
    if table.source == "visits+patients":
        frame = view["visits"].merge(view["patients"][[PERSON, "district", "sex"]], on=PERSON)
    else:
        frame = view[table.source]
    return table.craft(frame) if table.craft else frame


def rules_of(table: Table) -> DisclosureRules:
    base = load_policy(HEALTH).disclosure
    if not table.rules:
        return base
    return DisclosureRules.parse(
        {**_policy_settings(base), **table.rules}, threshold=base.threshold, where="bench"
    )


def _policy_settings(rules: DisclosureRules) -> dict[str, Any]:
    return {
        "dominance": {"n": rules.dominance_n, "k": rules.dominance_k},
        "p_percent": rules.p_percent,
        "zeros_disclosive": rules.zeros_disclosive,
    }


AGGREGATE = {"count": "COUNT(*)", "sum": "SUM({v})", "mean": "AVG({v})", "max": "MAX({v})"}


def sql_query(table: Table) -> tuple[str, str]:
    """The query and the name of its statistic's column."""
    column = "n" if table.statistic == "count" else f"{table.statistic}_{table.value}"
    aggregate = AGGREGATE[table.statistic].format(v=table.value)
    keys = ", ".join(table.by)
    source = "visits JOIN patients USING (person_id)" if "+" in table.source else "visits"
    source = "patients" if table.source == "patients" else source
    select = f"SELECT {keys}, {aggregate} AS {column} FROM {source} GROUP BY {keys}"
    return select, column


def sql_path(table: Table, frame: pd.DataFrame, view: dict[str, pd.DataFrame]) -> Decisions:
    sql, column = sql_query(table)
    rules = rules_of(table)
    checked = check_sql(sql, HEALTH, mode="masked", policy=load_policy(HEALTH))
    if not checked.allowed:
        return Decisions.refused(", ".join(f.rule for f in checked.decision.findings))
    plan = plan_threshold(checked, privacy_unit=PERSON)
    con = duckdb.connect()
    if table.craft:
        con.register("visits", frame)
    else:
        for name, data in view.items():
            con.register(name, data)
    cursor = con.execute(plan.sql)
    columns = [d[0] for d in cursor.description]
    rows = [list(r) for r in cursor.fetchall()]
    released = apply_threshold(plan, columns, rows, k=rules.threshold, rules=rules)
    return Decisions.of(released, table.by, column)


def python_path(table: Table, frame: pd.DataFrame) -> Decisions:
    rules = rules_of(table)
    by = list(table.by)
    if table.statistic == "count":
        visible, hidden = sandbox_job.frequency_of(frame, by)
        declared: dict[str, Any] = {"kind": "frequency", "count_column": "n", "by": by}
        column = "n"
    elif table.statistic in ("sum", "mean"):
        assert table.value is not None
        visible, hidden = sandbox_job.magnitude_of(frame, by, table.value, table.statistic)
        declared = {
            "kind": "magnitude",
            "count_column": "n",
            "by": by,
            "value": table.value,
            "statistic": table.statistic,
        }
        column = f"{table.statistic}_{table.value}"
    else:
        return Decisions.refused("sandbox_job has no table function for MAX")
    columns, rows = frame_cells(sandbox_job.joined(visible, hidden))
    try:
        released = check_declared_output(
            table.name, columns, rows, declared, k=rules.threshold, rules=rules, verified=True
        )
    except DisclosureError as error:
        return Decisions.refused(error.finding.rule)
    return Decisions.of(released, table.by, column)


@dataclass
class Decisions:
    """Per cell (its keys as text): suppressed or not, and the rules it failed."""

    cells: dict[tuple[str, ...], tuple[bool, tuple[str, ...]]] = field(default_factory=dict)
    refusal: str | None = None

    @classmethod
    def refused(cls, why: str) -> Decisions:
        return cls(refusal=why)

    @classmethod
    def of(cls, released: Released, by: tuple[str, ...], column: str) -> Decisions:
        at = [released.columns.index(k) for k in by]
        cells = {_key([row[i] for i in at]): (False, ()) for row in released.rows}
        for one in released.suppressions:
            if one.column is None or one.column == column:
                cells[_key([value for _, value in one.keys])] = (True, one.rules)
        return cls(cells)


def _key(values: list[Any]) -> tuple[str, ...]:
    return tuple("" if v is None or v != v else str(v) for v in values)


# --- ACRO --------------------------------------------------------------------------------


def per_person(table: Table, frame: pd.DataFrame) -> pd.DataFrame:
    """One row per person and cell: ACRO counts rows, so a person's rows are summed first."""
    keys = list(table.by)
    if table.statistic == "count":
        data = frame[[*keys, PERSON]].drop_duplicates()
    else:
        assert table.value is not None
        values = frame[[*keys, PERSON, table.value]].copy()
        values[table.value] = values[table.value].astype(float)
        if table.statistic == "max":
            data = values.groupby([*keys, PERSON], observed=True, as_index=False).max()
        else:
            data = values.groupby([*keys, PERSON], observed=True, as_index=False).sum()
    data = data.copy()
    if len(keys) == 1:
        data[ALL] = "all"
    for key in keys:
        data[key] = data[key].astype(str)
    return data


def acro_risk(table: Table) -> dict[str, Any]:
    rules = rules_of(table)
    return {
        "safe_threshold": rules.threshold,
        "safe_nk_n": rules.dominance_n,
        "safe_nk_k": rules.dominance_k,
        "safe_pratio_p": rules.p_percent,
        "zeros_are_disclosive": rules.zeros_disclosive,
    }


def ensure_acro_venv() -> Path:
    python = VENV / "bin" / "python"
    if python.exists():
        check = subprocess.run(
            [str(python), "-c", "import acro, pyarrow"], capture_output=True, check=False
        )
        if check.returncode == 0:
            return python
    print("setting up ACRO in bench/.acro-venv (first run only) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet"]
        + list(ACRO_PACKAGES),
        check=True,
    )
    return python


def acro_decisions(tables: list[tuple[Table, pd.DataFrame]]) -> tuple[dict[str, Any], dict]:
    python = ensure_acro_venv()
    folder = Path(tempfile.mkdtemp(prefix="acro-compare-"))
    try:
        spec = {"tables": []}
        for number, (table, frame) in enumerate(tables):
            if table.statistic == "max":
                aggfunc: str | None = "max"
            else:
                aggfunc = None if table.statistic == "count" else table.statistic
            path = folder / f"{number}.parquet"
            per_person(table, frame).to_parquet(path)
            two = len(table.by) == 2
            spec["tables"].append(
                {
                    "name": table.name,
                    "data": str(path),
                    "index": [table.by[0]],
                    "columns": [table.by[1]] if two else [ALL],
                    "values": table.value if aggfunc else None,
                    "aggfunc": aggfunc,
                    "risk": acro_risk(table),
                }
            )
        done = subprocess.run(
            [str(python), str(RUNNER)],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            sys.exit(f"ACRO's runner failed:\n{done.stderr[-3000:]}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    answer = json.loads(done.stdout)
    decided = {}
    for table, _ in tables:
        cells = {}
        for cell in answer["tables"][table.name]:
            keys = cell["keys"][: len(table.by)]
            rules = tuple(ACRO_RULES[c] for c in cell["checks"])
            cells[_key(keys)] = (cell["suppressed"], rules)
        decided[table.name] = cells
    return decided, answer["versions"]


# --- the comparison ----------------------------------------------------------------------


@dataclass
class Tally:
    compared: int = 0
    agreed: int = 0
    documented: Counter[str] = field(default_factory=Counter)
    disagreements: list[str] = field(default_factory=list)
    reasons_differ: Counter[str] = field(default_factory=Counter)


def compare(
    table: Table, ours: Decisions, acro: dict[tuple[str, ...], Any], frame: pd.DataFrame
) -> Tally:
    tally = Tally()
    rules = rules_of(table)
    for keys, (acro_suppressed, acro_rules) in sorted(acro.items()):
        tally.compared += 1
        if ours.refusal is not None:
            tally.documented["refused"] += 1
            continue
        if keys not in ours.cells:
            tally.documented["empty group"] += 1
            continue
        suppressed, our_rules = ours.cells[keys]
        if suppressed == acro_suppressed:
            tally.agreed += 1
            if suppressed and set(our_rules) != set(acro_rules):
                tally.reasons_differ[
                    f"ours {'+'.join(our_rules)} · ACRO {'+'.join(acro_rules)}"
                ] += 1
            continue
        why = _documented(table, keys, frame, rules, our_rules, suppressed)
        if why:
            tally.documented[why] += 1
        else:
            tally.disagreements.append(
                f"{' × '.join(keys)}: ours {'suppressed' if suppressed else 'released'}"
                f" ({'+'.join(our_rules) or '-'}), ACRO"
                f" {'suppressed' if acro_suppressed else 'released'}"
                f" ({'+'.join(acro_rules) or '-'})"
            )
    for keys in set(ours.cells) - set(acro):
        tally.disagreements.append(f"{' × '.join(keys)}: ours only, ACRO has no such cell")
    return tally


def _documented(
    table: Table,
    keys: tuple[str, ...],
    frame: pd.DataFrame,
    rules: DisclosureRules,
    our_rules: tuple[str, ...],
    suppressed: bool,
) -> str | None:
    """The documented difference behind a disagreement, if it is one (computed from the
    cell itself, not taken from our own decision)."""
    if not suppressed or table.value is None:
        return None
    cell = frame
    for key, value in zip(table.by, keys, strict=True):
        cell = cell[cell[key].astype(str) == value]
    contributions = cell.groupby(PERSON)[table.value].sum().abs().astype(float)
    non_zero = int((contributions > 0).sum())
    if non_zero < rules.threshold and len(contributions) >= rules.threshold:
        return "few non-zero"
    largest = sorted(contributions, reverse=True)
    if len(largest) >= 2:
        rest = sum(largest) - largest[0] - largest[1]
        if np.isclose(rest, rules.p_percent * largest[0], rtol=1e-9):
            return "p-percent boundary"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=20221)
    args = parser.parse_args()
    started = time.perf_counter()
    raw = generate_health(args.patients, seed=args.seed)
    view = build_view(raw, HEALTH, key=PSEUDONYM_KEY, table_names=("patients", "visits"))
    frames = [(t, frame_of(view, t)) for t in TABLES]
    print(f"health data: {args.patients:,} patients, {len(view['visits']):,} visits", flush=True)
    acro, versions = acro_decisions(frames)
    print(f"ACRO {versions['acro']} (pandas {versions['pandas']}) in bench/.acro-venv\n")
    totals: dict[str, Tally] = {"SQL": Tally(), "Python": Tally()}
    for table, frame in frames:
        print(f"## {table.name}")
        for path, ours in (
            ("SQL", sql_path(table, frame, view)),
            ("Python", python_path(table, frame)),
        ):
            tally = compare(table, ours, acro[table.name], frame)
            total = totals[path]
            total.compared += tally.compared
            total.agreed += tally.agreed
            total.documented.update(tally.documented)
            total.disagreements += [f"{table.name}: {d}" for d in tally.disagreements]
            total.reasons_differ.update(tally.reasons_differ)
            documented = ", ".join(f"{why} {n}" for why, n in sorted(tally.documented.items()))
            print(
                f"  {path:<6} cells {tally.compared:>4}  agree {tally.agreed:>4}"
                f"  documented {sum(tally.documented.values()):>3}"
                f"{' (' + documented + ')' if documented else ''}"
                f"  disagree {len(tally.disagreements)}"
            )
            for line in tally.disagreements:
                print(f"    DISAGREE {line}")
    print("\n## totals")
    for path, total in totals.items():
        print(
            f"  {path:<6} cells compared {total.compared}, agreements {total.agreed}, "
            f"documented differences {sum(total.documented.values())}, "
            f"disagreements {len(total.disagreements)}"
        )
        for why, n in sorted(total.documented.items()):
            print(f"    documented: {why}: {n}")
        for why, n in total.reasons_differ.most_common():
            print(f"    both suppress, rules named differently: {why}: {n}")
    print(f"\n(done in {time.perf_counter() - started:.1f} s)")
    if any(t.disagreements for t in totals.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
