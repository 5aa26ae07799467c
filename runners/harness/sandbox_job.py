"""The helper module analysts' Python jobs import (``import sandbox_job``).

Read the tables of your view as pandas DataFrames and declare your outputs::

    import sandbox_job

    visits = sandbox_job.table("visits")
    counts = visits.groupby("department").size().reset_index(name="n")
    sandbox_job.output("by_department", counts, kind="frequency", count_column="n")

``output`` takes an aggregate table only. ``count_column`` names the column
that holds how many persons (or rows) stand behind each row; disclosure
control suppresses rows below the grant's threshold. Nothing you print is
ever shown to you: logs are read by auditors only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

INPUT_DIR = Path(os.environ.get("SANDBOX_INPUT", "/input"))
KINDS = ("frequency", "magnitude", "model_summary")

_outputs: list[dict[str, Any]] = []


def tables() -> list[str]:
    """The names of the tables in this job's view."""
    return sorted(p.stem for p in INPUT_DIR.glob("*.parquet"))


def table(name: str) -> pd.DataFrame:
    """One table of the view as a DataFrame."""
    if name not in tables():
        raise KeyError(f"no table {name!r} in this view; tables: {', '.join(tables())}")
    return pd.read_parquet(INPUT_DIR / f"{name}.parquet")


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


def _has_named_index(frame: pd.DataFrame) -> bool:
    return any(n is not None for n in frame.index.names)


def _collected() -> list[dict[str, Any]]:
    return list(_outputs)
