"""Our dp SQL engine against SmartNoise SQL on the health data: latency and error.

Five queries on the ``health`` view (200,000 patients, about 1,000,000 visits
by default), each answered at the same total epsilon (delta where SmartNoise
needs one) by our engine (``sandbox.dp.engine.answer`` over an in-memory
DuckDB copy of the view) and by SmartNoise SQL (its pandas back end, which is
an in-memory SQLite database) in one run on the same Parquet files. For each:
the median latency of whole calls (planning, exact SQL, noise), the mean
relative error over ``--draws`` answers against the exact answer computed by
plain DuckDB SQL, and the ratios. The goal: at least 10x faster than
SmartNoise on every query it supports, with a mean relative error at most
1.2x its error.

SmartNoise SQL needs opendp<0.15 and pandas<3, so it runs in its own venv,
``bench/.smartnoise-venv`` (made on the first run, a few minutes), through
``bench/smartnoise_runner.py``. The data is cached under ``bench/.data``.

    .venv/bin/python bench/dp_sql.py [--patients N] [--runs R] [--draws D] [--epsilon E]

Relative error of one cell: |noisy - exact| / max(|exact|, 1), averaged over
every value cell of every group of the exact answer and over the draws. A
group SmartNoise leaves out (its threshold on noisy distinct persons) counts
as a relative error of 1, as if released as 0; its share is printed. Groups
our engine releases that are empty in the data are not scored. Of each
engine's answers the first ``--runs`` are the timed calls; the rest re-noise
the aggregates of one exact pass (ours: ``release_noisy`` on the plan's SQL;
SmartNoise: ``execute(..., pre_aggregated=...)``), keeping its sample of rows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import string
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb

from datasets.health import generate_health
from datasets.health_manifest import HEALTH
from datasets.manifest import ColumnClass, ColumnType
from datasets.views import build_view, write_view
from sandbox.dp.engine import DpRejected, answer, plan
from sandbox.dp.noise import release_noisy
from sandbox.dp.plan import DpPlan

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".smartnoise-venv"
DATA = BENCH / ".data"
RUNNER = BENCH / "smartnoise_runner.py"
SMARTNOISE_PACKAGES = ("smartnoise-sql==1.0.10", "pyarrow")
PSEUDONYM_KEY = hashlib.sha256(b"bench/dp_sql.py pseudonym key").digest()
TABLES = ("patients", "visits")
# The columns SmartNoise gets (metadata from our manifest); our engine sees the whole view.
SMARTNOISE_COLUMNS = {
    "patients": ("person_id", "sex", "district", "birth_year"),
    "visits": ("person_id", "department", "icd10", "cost", "length_of_stay"),
}
SPEED_GOAL = 10.0
ERROR_GOAL = 1.2

# SmartNoise's grammar has SUBSTRING(x FROM i FOR n) only, which SQLite cannot run;
# this CASE is the first letter of any code that starts with A-Z, as ICD-10 codes do.
_LETTERS = string.ascii_uppercase
CHAPTER_CASE = (
    "CASE "
    + " ".join(f"WHEN icd10 < '{_LETTERS[i + 1]}' THEN '{_LETTERS[i]}'" for i in range(25))
    + " ELSE 'Z' END"
)


@dataclass(frozen=True)
class Query:
    name: str
    sql: str
    keys: tuple[str, ...]
    # Adaptations SmartNoise tries, in order, when it refuses ``sql``: (note, sql).
    smartnoise: tuple[tuple[str, str], ...] = ()


QUERIES = (
    Query("total count", "SELECT COUNT(*) AS n FROM visits", ()),
    Query("count by sex", "SELECT sex, COUNT(*) AS n FROM patients GROUP BY sex", ("sex",)),
    Query(
        "avg cost by district",
        "SELECT p.district, AVG(v.cost) AS avg_cost FROM visits v "
        "JOIN patients p ON v.person_id = p.person_id GROUP BY p.district",
        ("district",),
        smartnoise=(
            (
                "AS before table aliases, JOIN ... USING (person_id) (with ON it sees two "
                "private ids)",
                "SELECT p.district, AVG(v.cost) AS avg_cost FROM visits AS v "
                "JOIN patients AS p USING (person_id) GROUP BY p.district",
            ),
        ),
    ),
    Query(
        "count, sum by department, chapter",
        "SELECT department, SUBSTRING(icd10, 1, 1) AS chapter, COUNT(*) AS n, "
        "SUM(length_of_stay) AS los FROM visits GROUP BY department, SUBSTRING(icd10, 1, 1)",
        ("department", "chapter"),
        smartnoise=(
            (
                "SUBSTRING(icd10 FROM 1 FOR 1), its grammar's form",
                "SELECT department, SUBSTRING(icd10 FROM 1 FOR 1) AS chapter, COUNT(*) AS n, "
                "SUM(length_of_stay) AS los FROM visits "
                "GROUP BY department, SUBSTRING(icd10 FROM 1 FOR 1)",
            ),
            (
                "chapter as a CASE on the code's first letter (A-Z), as SQLite cannot run "
                "SUBSTRING(x FROM i FOR n)",
                f"SELECT department, {CHAPTER_CASE} AS chapter, COUNT(*) AS n, "
                f"SUM(length_of_stay) AS los FROM visits GROUP BY department, {CHAPTER_CASE}",
            ),
        ),
    ),
    Query(
        "avg age by district, sex, cost > 1000",
        "SELECT p.district, p.sex, AVG(2022 - p.birth_year) AS avg_age FROM visits v "
        "JOIN patients p ON v.person_id = p.person_id WHERE v.cost > 1000 "
        "GROUP BY p.district, p.sex",
        ("district", "sex"),
        smartnoise=(
            (
                "JOIN ... USING (person_id), 2022 - AVG(birth_year) (it aggregates columns only)",
                "SELECT p.district, p.sex, 2022 - AVG(p.birth_year) AS avg_age FROM visits AS v "
                "JOIN patients AS p USING (person_id) WHERE v.cost > 1000 "
                "GROUP BY p.district, p.sex",
            ),
        ),
    ),
)

# SmartNoise twice: as it comes (thresholding groups on noisy distinct persons,
# which takes delta and a share of epsilon), and told the group keys are public
# (censor_dims off), which is what our engine assumes from the manifest.
SMARTNOISE_CONFIGS = (
    {"name": "default", "label": "SmartNoise, censor_dims", "censor_dims": True},
    {"name": "public_keys", "label": "SmartNoise, no censoring", "censor_dims": False},
)


# --- set-up ---------------------------------------------------------------------------


def ensure_data(patients: int, seed: int) -> Path:
    """The view's patients and visits as Parquet, made once per size and seed."""
    folder = DATA / f"{patients}-seed{seed}"
    if all((folder / f"{t}.parquet").exists() for t in TABLES):
        return folder
    print(f"generating the health data: {patients:,} patients, seed {seed} ...", flush=True)
    started = time.perf_counter()
    raw = generate_health(patients, seed=seed)
    view = build_view(raw, HEALTH, key=PSEUDONYM_KEY, table_names=TABLES)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    write_view(view, partial)
    partial.rename(folder)
    print(f"  written to {folder} in {time.perf_counter() - started:.1f} s", flush=True)
    return folder


def ensure_smartnoise_venv() -> Path:
    python = VENV / "bin" / "python"
    if python.exists():
        check = subprocess.run(
            [str(python), "-c", "import snsql, pyarrow"], capture_output=True, check=False
        )
        if check.returncode == 0:
            return python
    print(
        f"setting up SmartNoise SQL in {VENV.relative_to(BENCH.parent)} "
        "(first run only, a few minutes) ...",
        flush=True,
    )
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--progress-bar",
            "off",
            *SMARTNOISE_PACKAGES,
        ],
        check=True,
    )
    print("SmartNoise SQL venv ready", flush=True)
    return python


def smartnoise_tables() -> dict[str, Any]:
    """SmartNoise's metadata facts, from our manifest: keys, bounds, rows per person."""
    tables: dict[str, Any] = {}
    for name, wanted in SMARTNOISE_COLUMNS.items():
        table = HEALTH.table(name)
        assert table is not None
        columns: dict[str, Any] = {}
        for column_name in wanted:
            column = table.view_column(column_name)
            assert column is not None
            if column.name == HEALTH.privacy_unit:
                columns[column.name] = {"type": "string", "private_id": True}
            elif column.cls is ColumnClass.PERSON_KEY or column.type is ColumnType.STRING:
                columns[column.name] = {"type": "string"}
            elif column.type in (ColumnType.INTEGER, ColumnType.FLOAT):
                assert column.bounds is not None, column.name
                kind = "int" if column.type is ColumnType.INTEGER else "float"
                low, high = column.bounds
                columns[column.name] = {"type": kind, "lower": low, "upper": high}
            else:
                raise ValueError(f"no SmartNoise type for {name}.{column.name}")
        tables[name] = {"max_ids": table.max_rows_per_person, "columns": columns}
    return tables


def duckdb_view(folder: Path) -> tuple[duckdb.DuckDBPyConnection, float]:
    started = time.perf_counter()
    connection = duckdb.connect()
    for table in TABLES:
        path = str(folder / f"{table}.parquet").replace("'", "''")
        connection.execute(f"CREATE TABLE {table} AS SELECT * FROM read_parquet('{path}')")
    return connection, time.perf_counter() - started


# --- measuring ------------------------------------------------------------------------


Cells = dict[tuple[tuple[str, ...], str], float]


def exact_cells(query: Query, connection: duckdb.DuckDBPyConnection) -> Cells:
    cursor = connection.execute(query.sql)
    columns = [d[0] for d in cursor.description or []]
    cells: Cells = {}
    for row in cursor.fetchall():
        record = dict(zip(columns, row, strict=True))
        key = tuple(str(record[k]) for k in query.keys)
        for column, value in record.items():
            if column not in query.keys:
                cells[(key, column)] = float(value)
    return cells


def released_cells(query: Query, released: dict[str, Any]) -> dict[tuple, float | None]:
    columns = released["columns"]
    cells: dict[tuple, float | None] = {}
    for row in released["rows"]:
        record = dict(zip(columns, row, strict=True))
        key = tuple(str(record[k]) for k in query.keys)
        for column, value in record.items():
            if column not in query.keys:
                cells[(key, column)] = None if value is None else float(value)
    return cells


def relative_errors(
    query: Query, released: dict[str, Any], exact: Cells
) -> dict[tuple, float | None]:
    """Per exact cell, the relative error; None where the cell was not released."""
    got = released_cells(query, released)
    errors = {}
    for cell, truth in exact.items():
        value = got.get(cell)
        errors[cell] = None if value is None else abs(value - truth) / max(abs(truth), 1.0)
    return errors


def mean_relative_error(draws: list[dict[tuple, float | None]]) -> tuple[float, str, float]:
    """MRE over cells and draws (a missing cell counts 1); its standard error over the
    draws and the median cell error, as text; the share of cells missing."""
    per_draw = [statistics.fmean(1.0 if e is None else e for e in d.values()) for d in draws]
    median = statistics.median(1.0 if e is None else e for d in draws for e in d.values())
    missing = [sum(e is None for e in d.values()) / len(d) for d in draws]
    spread = statistics.stdev(per_draw) / len(per_draw) ** 0.5 if len(per_draw) > 1 else 0.0
    mre = statistics.fmean(per_draw)
    return mre, f"MRE {mre:.5f} ± {spread:.5f} (median {median:.5f})", statistics.fmean(missing)


class SmartNoise:
    """The runner in SmartNoise's venv, one JSON line per command and per answer."""

    def __init__(self, python: Path, folder: Path, *, epsilon: float, delta: float) -> None:
        self.process = subprocess.Popen(
            [str(python), str(RUNNER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.info = self.call(
            {
                "data": str(folder),
                "tables": smartnoise_tables(),
                "epsilon": epsilon,
                "delta": delta,
                "configs": {c["name"]: c["censor_dims"] for c in SMARTNOISE_CONFIGS},
            }
        )

    def call(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the SmartNoise runner stopped (exit {self.process.wait()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.process.stdin.close()
            self.process.wait(timeout=60)


def measure(
    query: Query,
    connection: duckdb.DuckDBPyConnection,
    smartnoise: SmartNoise,
    *,
    epsilon: float,
    runs: int,
    draws: int,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Both engines on one query, their timed runs taking turns so both see the same load.

    Each engine first answers once untimed (SmartNoise: the run that shows it
    supports the query). Draws beyond ``runs`` re-noise one exact pass.
    """
    ours, dp_plan = _prepare_ours(query, connection, epsilon=epsilon)
    theirs = _prepare_smartnoise(query, smartnoise)
    running = {name: state for name, state in theirs.items() if "error" not in state}

    for _ in range(runs):
        if "error" not in ours:
            started = time.perf_counter()
            result = answer(query.sql, HEALTH, epsilon=epsilon, connection=connection)
            ours["times"].append(time.perf_counter() - started)
            ours["answers"].append({"columns": result.columns, "rows": result.rows})
        for name, state in running.items():
            reply = _smartnoise_reply(smartnoise, query, {"cmd": "run", "config": name})
            state["times"].append(reply["seconds"])
            state["answers"].append(reply["answer"])

    extra = draws - runs
    if extra > 0 and "error" not in ours:
        assert dp_plan is not None
        _redraw_ours(dp_plan, connection, ours, extra)
    for name, state in running.items():
        if extra > 0:
            reply = _smartnoise_reply(
                smartnoise, query, {"cmd": "draws", "config": name, "n": extra}
            )
            state["answers"].extend(reply["answers"])
        state["median_s"] = statistics.median(state["times"])
    if "error" not in ours:
        ours["median_s"] = statistics.median(ours["times"])
        ours["groups"] = len(ours["answers"][0]["rows"])
    return ours, theirs


def _prepare_ours(
    query: Query, connection: duckdb.DuckDBPyConnection, *, epsilon: float
) -> tuple[dict[str, Any], DpPlan | None]:
    """Our engine's plan and one untimed answer; or why it refuses the query."""
    try:
        dp_plan = plan(query.sql, HEALTH, epsilon=epsilon)
        answer(query.sql, HEALTH, epsilon=epsilon, connection=connection)
    except DpRejected as rejected:
        finding = rejected.findings[0] if rejected.findings else {}
        error = f"{finding.get('rule', 'rejected')}: {finding.get('message', rejected)}"
        return {"error": error}, None
    return {"times": [], "answers": [], "statistics": len(dp_plan.measures)}, dp_plan


def _prepare_smartnoise(query: Query, smartnoise: SmartNoise) -> dict[str, dict[str, Any]]:
    """Each SmartNoise configuration's first run of the query (as written, then adapted)."""
    attempts = [{"note": "as written", "sql": query.sql}]
    attempts += [{"note": note, "sql": sql} for note, sql in query.smartnoise]
    theirs: dict[str, dict[str, Any]] = {}
    for config in SMARTNOISE_CONFIGS:
        reply = smartnoise.call(
            {"cmd": "prepare", "config": config["name"], "query": query.name, "attempts": attempts}
        )
        if "error" not in reply:
            reply.update(times=[], answers=[])
        theirs[config["name"]] = reply
    return theirs


def _smartnoise_reply(
    smartnoise: SmartNoise, query: Query, command: dict[str, Any]
) -> dict[str, Any]:
    """SmartNoise's answer to one command on a query it prepared, which may not fail."""
    reply = smartnoise.call({**command, "query": query.name})
    if "error" in reply:
        raise SystemExit(f"SmartNoise failed on {query.name}: {reply['error']}")
    return reply


def _redraw_ours(
    dp_plan: DpPlan, connection: duckdb.DuckDBPyConnection, ours: dict[str, Any], extra: int
) -> None:
    """One more exact pass (a fresh sample of rows), noised ``extra`` times."""
    cursor = connection.execute(dp_plan.sql)
    columns = [d[0] for d in cursor.description or []]
    exact = [list(r) for r in cursor.fetchall()]
    for _ in range(extra):
        released = release_noisy(dp_plan, columns, exact)
        ours["answers"].append({"columns": released["columns"], "rows": released["rows"]})


# --- report ---------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def _short(text: str, width: int = 110) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def report(
    query: Query,
    index: int,
    exact: Cells,
    ours: dict[str, Any],
    smartnoise: dict[str, dict[str, Any]],
    *,
    epsilon: float,
) -> dict[str, Any]:
    groups = len({cell[0] for cell in exact})
    print(f"\nQ{index}  {query.name}  ({groups} groups, {len(exact)} cells in the exact answer)")
    print(f"    SQL: {query.sql}")
    summary: dict[str, Any] = {"query": query.name}
    our_errors: list[dict[tuple, float | None]] = []
    if "error" in ours:
        print(f"    ours: unsupported: {ours['error']}")
    else:
        our_errors = [relative_errors(query, a, exact) for a in ours["answers"]]
        mre, text, _ = mean_relative_error(our_errors)
        summary["ours"] = (ours["median_s"], mre)
        empty = ours["groups"] - groups
        print(f"    {'ours':<26}{_ms(ours['median_s']):>12}  {text}")
        print(
            f"    {'':<26}{'':>12}  {ours['statistics']} noisy statistic(s) at ε "
            f"{epsilon / ours['statistics']:.3g}; {ours['groups']} groups released "
            f"({empty} empty in the data, not scored)"
        )
    first = smartnoise[SMARTNOISE_CONFIGS[0]["name"]]
    for refused in first.get("refused", []):
        print(f"    SmartNoise refused ({refused['note']}): {_short(refused['error'], 90)}")
    if "error" not in first and first["note"] != "as written":
        print(f"    SmartNoise ran an adaptation: {first['note']}")
        print(f"        {_short(first['sql'], 200)}")
    for config in SMARTNOISE_CONFIGS:
        result = smartnoise[config["name"]]
        label = config["label"]
        if "error" in result:
            print(f"    {label:<26}unsupported: {_short(result['error'], 90)}")
            continue
        sn_errors = [relative_errors(query, a, exact) for a in result["answers"]]
        mre, text, missing = mean_relative_error(sn_errors)
        summary[config["name"]] = (result["median_s"], mre, missing)
        print(f"    {label:<26}{_ms(result['median_s']):>12}  {text}")
        print(
            f"    {'':<26}{'':>12}  {result['statistics']} noisy statistic(s) at ε "
            f"{result['epsilon_per_statistic']:.3g} (its odometer: ε {result['spent'][0]:.3g}, "
            f"δ {result['spent'][1]:.2g}); cells left out {missing:.1%}"
        )
        if our_errors and missing > 0:
            # Both on the cells SmartNoise released, draw by draw.
            kept_ours, kept_sn = [], []
            for mine, theirs in zip(our_errors, sn_errors, strict=False):
                cells = [c for c, e in theirs.items() if e is not None]
                kept_sn.extend(theirs[c] for c in cells)
                kept_ours.extend(1.0 if mine[c] is None else mine[c] for c in cells)
            print(
                f"    {'':<26}{'':>12}  on the cells it released: ours MRE "
                f"{statistics.fmean(kept_ours):.5f}, SmartNoise {statistics.fmean(kept_sn):.5f}"
            )
        if "ours" in summary:
            speed = result["median_s"] / summary["ours"][0]
            ratio = summary["ours"][1] / mre if mre > 0 else float("inf")
            print(
                f"    {'':<26}{'':>12}  speed-up {speed:.1f}x, error ratio ours/SmartNoise "
                f"{ratio:.2f}"
            )
    return summary


def print_summary(summaries: list[dict[str, Any]]) -> None:
    print(
        f"\nSummary: speed-up = SmartNoise median latency / ours; error ratio = our MRE / "
        f"SmartNoise MRE; goal: speed-up >= {SPEED_GOAL:g}x and error ratio <= {ERROR_GOAL:g}"
    )
    block = f"{'ms':>9}{'speed-up':>9}{'MRE':>11}{'ratio':>7}{'goal':>6}"
    labels = "".join(f" | {c['label']:^{len(block)}}" for c in SMARTNOISE_CONFIGS)
    print(f"{'':<38}{'ours':^21}{labels}".rstrip())
    print(f"{'query':<38}{'ms':>9}{'MRE':>12}" + f" | {block}" * len(SMARTNOISE_CONFIGS))
    for summary in summaries:
        line = f"{summary['query']:<38}"
        if "ours" in summary:
            seconds, mre = summary["ours"]
            line += f"{seconds * 1000:>9.1f}{mre:>12.4g}"
        else:
            line += f"{'unsupported':>21}"
        for config in SMARTNOISE_CONFIGS:
            theirs = summary.get(config["name"])
            if theirs is None:
                line += f" | {'unsupported':<{len(block)}}"
                continue
            seconds, mre, _ = theirs
            line += f" | {seconds * 1000:>9.1f}"
            if "ours" in summary:
                speed = seconds / summary["ours"][0]
                ratio = summary["ours"][1] / mre if mre > 0 else float("inf")
                met = speed >= SPEED_GOAL and ratio <= ERROR_GOAL
                line += f"{speed:>8.1f}x{mre:>11.4g}{ratio:>7.2f}{'yes' if met else 'NO':>6}"
            else:
                line += f"{'':>9}{mre:>11.4g}{'':>13}"
        print(line.rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--patients", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=7, help="timed calls per query")
    parser.add_argument("--draws", type=int, default=20, help="answers per query for the error")
    parser.add_argument("--epsilon", type=float, default=1.0, help="per query, all of it")
    parser.add_argument("--delta", type=float, default=1e-5, help="for SmartNoise's threshold")
    parser.add_argument("--seed", type=int, default=20221)
    args = parser.parse_args()
    if args.runs < 1 or args.draws < 1 or args.epsilon <= 0:
        parser.error("--runs and --draws must be positive, and so must --epsilon")

    python = ensure_smartnoise_venv()
    folder = ensure_data(args.patients, args.seed)
    connection, load_s = duckdb_view(folder)
    visits = connection.execute("SELECT COUNT(*) FROM visits").fetchone()
    persons = connection.execute("SELECT COUNT(*) FROM patients").fetchone()
    print(
        f"data: {persons[0] if persons else 0:,} patients, {visits[0] if visits else 0:,} visits "
        f"({folder.relative_to(BENCH.parent)}); ε {args.epsilon:g} per query, δ {args.delta:g}; "
        f"{args.runs} timed runs, {max(args.runs, args.draws)} draws per query",
        flush=True,
    )

    smartnoise = SmartNoise(python, folder, epsilon=args.epsilon, delta=args.delta)
    results = {}
    try:
        for query in QUERIES:
            started = time.perf_counter()
            results[query.name] = measure(
                query,
                connection,
                smartnoise,
                epsilon=args.epsilon,
                runs=args.runs,
                draws=max(args.runs, args.draws),
            )
            ours, theirs = results[query.name]
            medians = [
                _ms(r["median_s"]) if "median_s" in r else "unsupported"
                for r in (ours, *theirs.values())
            ]
            print(
                f"  {query.name}: ours {medians[0]}, SmartNoise {' / '.join(medians[1:])} "
                f"(medians; {time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    finally:
        smartnoise.close()
    exact = {q.name: exact_cells(q, connection) for q in QUERIES}
    connection.close()

    versions = smartnoise.info["versions"]
    print(
        f"\nours: opendp {package_metadata.version('opendp')}, duckdb {duckdb.__version__} "
        f"(in-memory tables, loaded in {load_s:.1f} s, not timed); SmartNoise SQL "
        f"{versions['smartnoise-sql']} (opendp {versions['opendp']}, pandas {versions['pandas']},"
        f" its in-memory SQLite loaded in {smartnoise.info['setup_s']:.1f} s, not timed)"
    )
    print(
        "SmartNoise spends its ε on each noisy statistic, so it gets ε / (its number of "
        "statistics) each and the query spends ε in all, as ours does; it caps each person "
        "at max_ids rows (our max_rows_per_person) and floors noisy counts at 0, as ours does. "
        "The engines' timed runs take turns, query by query."
    )
    summaries = [
        report(q, i, exact[q.name], *results[q.name], epsilon=args.epsilon)
        for i, q in enumerate(QUERIES, start=1)
    ]
    print_summary(summaries)


if __name__ == "__main__":
    main()
