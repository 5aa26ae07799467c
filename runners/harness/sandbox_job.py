"""The helper module analysts' Python jobs import (``import sandbox_job``).

Read the tables of your view as pandas DataFrames and declare your outputs::

    import sandbox_job

    visits = sandbox_job.table("visits")
    sandbox_job.frequency_table("by_department", visits, by=["department"])
    sandbox_job.magnitude_table("cost", visits, by=["department"], value="cost")
    sandbox_job.model_summary("fit", statsmodels_result)

The table functions count persons, contributions and residual degrees of
freedom; rows below the threshold are suppressed, dominated magnitude cells
too, and sketches of each row's persons let the sandbox catch differencing
against your other outputs. Nothing this module computes in here is trusted
on its own word: a frequency or magnitude table made directly from a table
of the view (the very DataFrame ``table()`` returned) is computed again by
the sandbox from the view, outside the runner, and released automatically
when it matches. Any other output (a table of a filtered or derived frame, a
model summary, a table made with ``output``) is checked the same way on what
was declared and then held for an auditor. Nothing you print is ever shown
to you: logs are read by auditors only.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

INPUT_DIR = Path(os.environ.get("SANDBOX_INPUT", "/input"))
KINDS = ("frequency", "magnitude", "model_summary", "other")
# The view's description, written by the sandbox beside its tables: the privacy unit's
# column (``person_id`` in the health data; each dataset's owner names its own).
VIEW_FILE = "_view.json"
DEFAULT_PERSON = "person_id"
HIDDEN = "__sandbox_"

_outputs: list[dict[str, Any]] = []
# The DataFrames table() handed out, by id, with how they were selected: a table
# function names this source, which the sandbox reads and selects again to
# recompute the output.
_sources: dict[int, dict[str, Any]] = {}
OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "in", "not in", "is null", "not null")
MAX_LIST, MAX_EDGES, MAX_CONDITIONS = 1000, 100, 20
# The largest persons' contributions handed to the dominance check: the greatest
# dominance.n an owner may set (policies.output_checks.TOP_CONTRIBUTIONS).
TOP_CONTRIBUTIONS = 10


def person_column(folder: Path | None = None) -> str:
    """The column of every table of the view that holds the privacy unit (the person)."""
    try:
        named = json.loads(((folder or INPUT_DIR) / VIEW_FILE).read_text(encoding="utf-8"))
        person = named["privacy_unit"]
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_PERSON
    return person if isinstance(person, str) and person.isidentifier() else DEFAULT_PERSON


def tables() -> list[str]:
    """The names of the tables in this job's view."""
    return sorted(p.stem for p in INPUT_DIR.glob("*.parquet"))


def table(
    name: str,
    *,
    where: list[Any] | None = None,
    bins: dict[str, list[float]] | None = None,
) -> pd.DataFrame:
    """One table of the view as a DataFrame, optionally selected.

    ``where``: conditions that must all hold, each ``(column, operator, value)``
    with an operator of ``OPERATORS`` (``in`` / ``not in`` take a list; ``is
    null`` / ``not null`` no value), e.g. ``[("cost", ">", 1000)]``.
    ``bins``: ``{column: [edges]}`` replaces each value by its interval, as the
    text ``"[1940, 1960)"`` (no value outside the edges: None), e.g. ages in bands.
    Tables that ``frequency_table`` and ``magnitude_table`` make of the frame this
    returns are computed again by the sandbox, so they go out without review.
    """
    if name not in tables():
        raise KeyError(f"no table {name!r} in this view; tables: {', '.join(tables())}")
    import pyarrow.parquet as pq

    source = selection(name, where, bins)
    # One file, read directly: pandas.read_parquet goes through pyarrow's slower dataset layer.
    frame = pq.ParquetFile(INPUT_DIR / f"{name}.parquet").read().to_pandas()
    if source["where"] or source["bins"]:
        frame = select_rows(frame, source["where"], source["bins"])
    _sources[id(frame)] = source
    return frame


def selection(name: Any, where: Any, bins: Any) -> dict[str, Any]:
    """A table's selection in plain JSON values, checked; ValueError names what is wrong."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError("a table name is an identifier")
    conditions = [_condition(condition) for condition in where or []]
    if len(conditions) > MAX_CONDITIONS:
        raise ValueError(f"at most {MAX_CONDITIONS} where conditions")
    edges_of = {column: _edges(column, edges) for column, edges in (bins or {}).items()}
    return {"table": name, "where": conditions, "bins": edges_of}


def _condition(condition: Any) -> list[Any]:
    """One where condition as ``[column, operator, value]``, checked."""
    if not isinstance(condition, list | tuple) or len(condition) not in (2, 3):
        raise ValueError("each where condition is (column, operator, value)")
    column, operator, *rest = condition
    value = rest[0] if rest else None
    if not isinstance(column, str) or operator not in OPERATORS:
        raise ValueError(f"a where operator is one of {', '.join(OPERATORS)}")
    if operator in ("in", "not in"):
        if not isinstance(value, list | tuple) or len(value) > MAX_LIST:
            raise ValueError(f"'{operator}' takes a list of at most {MAX_LIST} values")
        if not all(_scalar(v) for v in value):
            raise ValueError("where values are numbers, text, true/false or None")
        value = list(value)
    elif operator in ("is null", "not null"):
        value = None
    elif not _scalar(value) or value is None:
        raise ValueError(f"'{operator}' takes one number, text or true/false")
    return [column, operator, value]


def _edges(column: Any, edges: Any) -> list[float]:
    """The bin edges of one column, checked: 2 to MAX_EDGES increasing numbers."""
    numbers = list(edges) if isinstance(edges, list | tuple) else []
    if (
        not isinstance(column, str)
        or not 2 <= len(numbers) <= MAX_EDGES
        or not all(isinstance(e, int | float) and not isinstance(e, bool) for e in numbers)
        or any(b <= a for a, b in zip(numbers, numbers[1:], strict=False))
    ):
        raise ValueError(f"bins of {column!r}: 2 to {MAX_EDGES} increasing numbers")
    return numbers


def select_rows(
    frame: pd.DataFrame, where: list[list[Any]], bins: dict[str, list[float]]
) -> pd.DataFrame:
    """The rows meeting every condition, with the binned columns replaced by intervals."""
    mask = pd.Series(True, index=frame.index)
    for column, operator, value in where:
        mask &= _holds(frame[column], operator, value).fillna(False).astype(bool)
    selected = frame[mask.to_numpy()].copy()
    for column, edges in bins.items():
        labels = [f"[{_edge(a)}, {_edge(b)})" for a, b in zip(edges, edges[1:], strict=False)]
        cut = pd.cut(selected[column].astype(float), edges, right=False, labels=labels)
        selected[column] = cut.astype(object).where(cut.notna(), None)
    return selected.reset_index(drop=True)


def _holds(values: pd.Series, operator: str, value: Any) -> pd.Series:
    if operator == "is null":
        return values.isna()
    if operator == "not null":
        return values.notna()
    if operator == "in":
        return values.isin(value)
    if operator == "not in":
        return ~values.isin(value)
    compare = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
    return getattr(values, compare[operator])(value)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _edge(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def output(
    name: str,
    frame: pd.DataFrame,
    *,
    kind: str = "frequency",
    count_column: str | None = "n",
) -> None:
    """Declare one output table. Only declared outputs leave the runner."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError("output() takes a pandas DataFrame")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    if any(str(c).startswith(HIDDEN) for c in frame.columns):
        raise ValueError(f"column names starting with {HIDDEN} are the sandbox's own")
    if count_column is not None and count_column not in frame.columns:
        raise ValueError(f"count_column {count_column!r} is not a column of the output")
    if any(o["name"] == name for o in _outputs):
        raise ValueError(f"an output named {name!r} was declared already")
    _outputs.append(
        {
            "name": str(name),
            "frame": frame.reset_index(drop=not _has_named_index(frame)),
            "declared": {"kind": kind, "count_column": count_column},
        }
    )


def frequency_table(name: str, frame: pd.DataFrame, *, by: list[str]) -> pd.DataFrame:
    """Rows (``n``) and distinct persons per group of ``by``, declared as an output."""
    _check_source(frame, by)
    table, hidden = frequency_of(frame, by)
    declared = {
        "kind": "frequency",
        "count_column": "n",
        "by": list(by),
        "source": _sources.get(id(frame)),
    }
    _declare(name, table, hidden, declared)
    return table


def magnitude_table(
    name: str, frame: pd.DataFrame, *, by: list[str], value: str, statistic: str = "sum"
) -> pd.DataFrame:
    """The sum (or mean) of ``value`` per group, with the persons' largest contributions
    handed to the dominance and p-percent checks, declared as an output."""
    if statistic not in ("sum", "mean"):
        raise ValueError("statistic must be sum or mean")
    _check_source(frame, [*by, value])
    table, hidden = magnitude_of(frame, by, value, statistic)
    declared = {
        "kind": "magnitude",
        "count_column": "n",
        "by": list(by),
        "value": value,
        "statistic": statistic,
        "source": _sources.get(id(frame)),
    }
    _declare(name, table, hidden, declared)
    return table


# The computations of the table functions, which the sandbox repeats on the view
# outside the runner to check an output: the same code on the same data.


def frequency_of(
    frame: pd.DataFrame, by: list[str], *, person: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The visible table (``by`` columns and ``n``) and its hidden per-row columns."""
    person = person or person_column()
    grouped = frame.groupby(by, dropna=False, observed=True)
    table = grouped.size().rename("n").reset_index()
    return table, _persons_and_sketches(grouped, person)


def magnitude_of(
    frame: pd.DataFrame, by: list[str], value: str, statistic: str, *, person: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    person = person or person_column()
    grouped = frame.groupby(by, dropna=False, observed=True)
    table = grouped[value].agg(statistic).rename(f"{statistic}_{value}").reset_index()
    table["n"] = grouped.size().to_numpy()
    hidden = _persons_and_sketches(grouped, person)
    # Persons' contributions: each person's sum of |value| in the group, as the SQL path.
    per_person = (
        frame.assign(__abs=frame[value].abs())
        .groupby([*by, person], dropna=False, observed=True)["__abs"]
        .sum()
    )
    by_group = per_person.groupby(level=list(range(len(by))), dropna=False)
    top = by_group.apply(lambda s: [float(v) for v in s.nlargest(TOP_CONTRIBUTIONS)]).to_numpy()
    total = by_group.sum().to_numpy()
    hidden[f"{HIDDEN}top"] = list(top)
    hidden[f"{HIDDEN}total"] = [float(t) for t in total]
    # Those who contribute a non-zero value: a sum of indicators is a count in disguise.
    hidden[f"{HIDDEN}contributors"] = [int(n) for n in by_group.agg(lambda s: int((s > 0).sum()))]
    return table, hidden


def joined(table: pd.DataFrame, hidden: pd.DataFrame | None) -> pd.DataFrame:
    """The output frame as it leaves the runner: the visible table, then the hidden columns."""
    frame = table.reset_index(drop=True)
    if hidden is not None:
        frame = pd.concat([frame, hidden.reset_index(drop=True)], axis=1)
    return frame


def model_summary(name: str, result: Any) -> pd.DataFrame:
    """A fitted statsmodels result's coefficients, with its residual degrees of freedom."""
    try:
        table = pd.DataFrame(
            {
                "term": [str(t) for t in result.params.index],
                "estimate": result.params.to_numpy(),
                "std_error": result.bse.to_numpy(),
                "p_value": result.pvalues.to_numpy(),
            }
        )
        dof, nobs = float(result.df_resid), float(result.nobs)
    except AttributeError as error:
        raise TypeError("model_summary takes a fitted statsmodels result") from error
    _declare(name, table, None, {"kind": "model_summary", "dof": dof, "nobs": nobs})
    return table


def _check_source(frame: pd.DataFrame, columns: list[str]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError("the table functions take a pandas DataFrame of a view table")
    missing = [c for c in [*columns, person_column()] if c not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks the columns {', '.join(missing)}")


def _persons_and_sketches(grouped: Any, person_name: str) -> pd.DataFrame:
    """Per group (in the groupby's order): distinct persons and their sketch.

    Vectorised over (group, person) pairs; equal to ``_sketch`` of each group's
    set of persons (tests/unit/policies/test_output_checks.py).
    """
    import numpy as np

    groups = grouped.ngroups
    number = grouped.ngroup().to_numpy()
    person = grouped.obj[person_name]
    present = person.notna().to_numpy()
    raw_codes, raw = pd.factorize(person[present])
    # Persons are compared as text, as str() spells them (1 and "1" are one person).
    text_codes, names = pd.factorize(pd.Index([str(value) for value in raw], dtype=object))
    width = max(len(names), 1)
    pairs = np.unique(number[present].astype(np.int64) * width + text_codes[raw_codes])
    group_of, person_of = pairs // width, pairs % width
    keys = np.array([_md5_lower(name) for name in names], dtype=np.uint64)
    checks = np.array([_md5_lower(str(int(key))) for key in keys], dtype=np.uint64)
    cells = PARTITIONS * CELLS_PER_PARTITION
    count = np.zeros(groups * cells, dtype=np.int64)
    xor_keys = np.zeros(groups * cells, dtype=np.uint64)
    xor_checks = np.zeros(groups * cells, dtype=np.uint64)
    key, check = keys[person_of], checks[person_of]
    for partition in range(PARTITIONS):
        cell = (key >> np.uint64(8 * partition)) % np.uint64(CELLS_PER_PARTITION)
        at = group_of * cells + partition * CELLS_PER_PARTITION + cell.astype(np.int64)
        np.add.at(count, at, 1)
        np.bitwise_xor.at(xor_keys, at, key)
        np.bitwise_xor.at(xor_checks, at, check)
    sketches = [
        [part[g * cells : (g + 1) * cells].tolist() for part in (count, xor_keys, xor_checks)]
        for g in range(groups)
    ]
    persons = np.bincount(group_of, minlength=groups).tolist()
    return pd.DataFrame({f"{HIDDEN}persons": persons, f"{HIDDEN}sketch": sketches})


# The sketch of a set of persons (an invertible Bloom lookup table), exactly as the
# sandbox computes it for SQL outputs: 3 partitions of 21 cells, md5-based hashes.
PARTITIONS, CELLS_PER_PARTITION = 3, 21


def _md5_lower(text: str) -> int:
    digest = hashlib.md5(text.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "little")


def _sketch(persons: set[str]) -> list[list[int]]:
    cells = PARTITIONS * CELLS_PER_PARTITION
    count, keys, checks = [0] * cells, [0] * cells, [0] * cells
    for person in persons:
        key = _md5_lower(person)
        check = _md5_lower(str(key))
        for partition in range(PARTITIONS):
            index = partition * CELLS_PER_PARTITION + (key >> (8 * partition)) % CELLS_PER_PARTITION
            count[index] += 1
            keys[index] ^= key
            checks[index] ^= check
    return [count, keys, checks]


def _declare(
    name: str, table: pd.DataFrame, hidden: pd.DataFrame | None, declared: dict[str, Any]
) -> None:
    if any(o["name"] == name for o in _outputs):
        raise ValueError(f"an output named {name!r} was declared already")
    _outputs.append({"name": str(name), "frame": joined(table, hidden), "declared": declared})


def _has_named_index(frame: pd.DataFrame) -> bool:
    return any(n is not None for n in frame.index.names)


def _collected() -> list[dict[str, Any]]:
    return list(_outputs)
