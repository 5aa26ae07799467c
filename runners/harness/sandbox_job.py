"""The helper module analysts' Python jobs import (``import sandbox_job``).

Read the tables of your view as pandas DataFrames and declare your outputs::

    import sandbox_job

    visits = sandbox_job.table("visits")
    sandbox_job.frequency_table("by_department", visits, by=["department"])
    sandbox_job.magnitude_table("cost", visits, by=["department"], value="cost")
    sandbox_job.model_summary("fit", statsmodels_result)

The table functions count persons, contributions and residual degrees of
freedom themselves, so every disclosure check runs on what they hand over:
rows below the threshold are suppressed, dominated magnitude cells too, and
sketches of each row's persons let the sandbox catch differencing against
your other outputs. ``output`` declares a table you made yourself
(``count_column`` names its counts); one declared without a kind the checks
know is held for an auditor. Nothing you print is ever shown to you: logs
are read by auditors only.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pandas as pd

INPUT_DIR = Path(os.environ.get("SANDBOX_INPUT", "/input"))
KINDS = ("frequency", "magnitude", "model_summary", "other")
PERSON = "person_id"  # the privacy unit's column in every table of a view
HIDDEN = "__sandbox_"

_outputs: list[dict[str, Any]] = []


def tables() -> list[str]:
    """The names of the tables in this job's view."""
    return sorted(p.stem for p in INPUT_DIR.glob("*.parquet"))


def table(name: str) -> pd.DataFrame:
    """One table of the view as a DataFrame."""
    if name not in tables():
        raise KeyError(f"no table {name!r} in this view; tables: {', '.join(tables())}")
    import pyarrow.parquet as pq

    # One file, read directly: pandas.read_parquet goes through pyarrow's slower dataset layer.
    return pq.ParquetFile(INPUT_DIR / f"{name}.parquet").read().to_pandas()


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
    grouped = frame.groupby(by, dropna=False, observed=True)
    table = grouped.size().rename("n").reset_index()
    hidden = _persons_and_sketches(grouped)
    _declare(name, table, hidden, {"kind": "frequency", "count_column": "n", "by": list(by)})
    return table


def magnitude_table(
    name: str, frame: pd.DataFrame, *, by: list[str], value: str, statistic: str = "sum"
) -> pd.DataFrame:
    """The sum (or mean) of ``value`` per group, with the persons' largest contributions
    handed to the dominance and p-percent checks, declared as an output."""
    if statistic not in ("sum", "mean"):
        raise ValueError("statistic must be sum or mean")
    _check_source(frame, [*by, value])
    grouped = frame.groupby(by, dropna=False, observed=True)
    table = grouped[value].agg(statistic).rename(f"{statistic}_{value}").reset_index()
    table["n"] = grouped.size().to_numpy()
    hidden = _persons_and_sketches(grouped)
    per_person = (
        frame.assign(__abs=frame[value].abs())
        .groupby([*by, PERSON], dropna=False, observed=True)["__abs"].sum()
    )  # fmt: skip
    by_group = per_person.groupby(level=list(range(len(by))), dropna=False)
    top = by_group.apply(lambda s: [float(v) for v in s.nlargest(2)]).to_numpy()
    total = by_group.sum().to_numpy()
    hidden[f"{HIDDEN}top"] = list(top)
    hidden[f"{HIDDEN}total"] = [float(t) for t in total]
    declared = {"kind": "magnitude", "count_column": "n", "by": list(by), "value": value}
    _declare(name, table, hidden, declared)
    return table


def model_summary(name: str, result: Any) -> pd.DataFrame:
    """A fitted statsmodels result's coefficients, with its residual degrees of freedom."""
    try:
        table = pd.DataFrame({
            "term": [str(t) for t in result.params.index],
            "estimate": result.params.to_numpy(), "std_error": result.bse.to_numpy(),
            "p_value": result.pvalues.to_numpy(),
        })  # fmt: skip
        dof, nobs = float(result.df_resid), float(result.nobs)
    except AttributeError as error:
        raise TypeError("model_summary takes a fitted statsmodels result") from error
    _declare(name, table, None, {"kind": "model_summary", "dof": dof, "nobs": nobs})
    return table


def _check_source(frame: pd.DataFrame, columns: list[str]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError("the table functions take a pandas DataFrame of a view table")
    missing = [c for c in [*columns, PERSON] if c not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks the columns {', '.join(missing)}")


def _persons_and_sketches(grouped: Any) -> pd.DataFrame:
    """Per group (in the groupby's order): distinct persons and their sketch."""
    persons, sketches = [], []
    for _, members in grouped[PERSON]:
        distinct = {str(p) for p in members.dropna()}
        persons.append(len(distinct))
        sketches.append(_sketch(distinct))
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
    frame = table.reset_index(drop=True)
    if hidden is not None:
        frame = pd.concat([frame, hidden.reset_index(drop=True)], axis=1)
    _outputs.append({"name": str(name), "frame": frame, "declared": declared})


def _has_named_index(frame: pd.DataFrame) -> bool:
    return any(n is not None for n in frame.index.names)


def _collected() -> list[dict[str, Any]]:
    return list(_outputs)
