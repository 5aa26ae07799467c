"""Recompute a Python job's helper tables from its view, outside the runner.

What a Python job hands over is made by the analyst's own process: the
counts, the persons per row, the largest contributions and the sketches that
the disclosure checks read could all be forged by code that rewrites the
helper or its output list. So no output of a Python job is released on its
own word. A frequency or magnitude table that names the view table it was
made from (``sandbox_job.frequency_table`` / ``magnitude_table`` on the very
DataFrame ``sandbox_job.table`` returned, with its ``where`` and ``bins`` if
any) is computed again here, by the same functions on the same Parquet, and
replaced by that computation when the visible rows match; only such a table
is *verified*. Every other output keeps
what it declared and waits for an auditor, unless the data owner's policy
says to trust declarations (``disclosure: trust_python_declarations: true``).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from policies.decision import Phrase
from policies.disclosure import HELPER_COLUMNS
from runners.contract import OutputTable
from runners.harness import sandbox_job
from runners.harness.harness import frame_cells
from sandbox.errors import SandboxError

log = logging.getLogger(__name__)
# Relative tolerance for sums and means: the runner's pandas may add in another order.
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Checked:
    """One output as the disclosure checks should see it."""

    table: OutputTable
    verified: bool
    # Why it could not be verified (for the auditor's finding); None when verified.
    reason: Phrase | None = None


def verify_outputs(tables: list[OutputTable], view: Path) -> list[Checked]:
    """Each output, replaced by the sandbox's own computation where it can be verified."""
    checked = []
    for table in tables:
        try:
            checked.append(_verify(table, view))
        except Exception:
            log.warning(
                "output %s of a Python job could not be recomputed", table.name, exc_info=True
            )
            checked.append(
                Checked(
                    table,
                    False,
                    Phrase("output.unverified.failed", "it could not be computed again"),
                )
            )
    return checked


class _NotRecomputable(SandboxError):
    """Why an output cannot be computed again; caught here, and the output waits for review."""

    def __init__(self, reason: Phrase) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Recipe:
    """How a helper table was made, as the sandbox makes it again."""

    kind: str
    path: Path
    selected: dict[str, Any]
    by: list[str]
    value: str | None = None
    statistic: str | None = None
    # The view's privacy-unit column (sandbox_job.person_column of the job's view).
    person: str = sandbox_job.DEFAULT_PERSON

    def declaration(self) -> dict[str, Any]:
        """What the recomputed table declares: this recipe, nothing of the job's own."""
        trusted: dict[str, Any] = {
            "kind": self.kind,
            "count_column": "n",
            "by": list(self.by),
            "source": self.selected,
        }
        if self.kind == "magnitude":
            trusted |= {"value": self.value, "statistic": self.statistic}
        return trusted


def _verify(table: OutputTable, view: Path) -> Checked:
    declared = table.declared if isinstance(table.declared, dict) else {}
    try:
        recipe = _recipe(declared, view)
    except _NotRecomputable as unrepeatable:
        return Checked(table, False, unrepeatable.reason)
    columns, rows = _recompute(recipe)
    if not _same_visible(table, columns, rows):
        return Checked(
            table,
            False,
            Phrase(
                "output.unverified.differs", "it differs from the same table computed from the view"
            ),
        )
    return Checked(OutputTable(table.name, columns, rows, recipe.declaration()), True)


def _recipe(declared: dict[str, Any], view: Path) -> _Recipe:
    """The declaration, checked to be one the sandbox can repeat on the view."""
    kind = declared.get("kind")
    if kind not in ("frequency", "magnitude"):
        raise _NotRecomputable(
            Phrase(
                "output.unverified.kind", "only frequency and magnitude tables can be recomputed"
            )
        )
    selected = _selection(declared)
    name = selected["table"]
    path = view / f"{name}.parquet"
    if not path.is_file():
        raise _NotRecomputable(
            Phrase("output.unverified.no_table", "the view has no table %(table)s", table=str(name))
        )
    by = declared.get("by")
    if not (isinstance(by, list) and by and all(isinstance(c, str) for c in by)):
        raise _NotRecomputable(
            Phrase("output.unverified.no_grouping", "its declaration names no grouping columns")
        )
    recipe = _Recipe(kind, path, selected, by, person=sandbox_job.person_column(path.parent))
    if kind == "magnitude":
        recipe = _with_statistic(recipe, declared)
    _check_columns(recipe)
    return recipe


def _selection(declared: dict[str, Any]) -> dict[str, Any]:
    """The view table and selection the output names as its source."""
    source = declared.get("source")
    if isinstance(source, str):
        source = {"table": source}
    if not isinstance(source, dict) or source.get("table") is None:
        raise _NotRecomputable(
            Phrase("output.unverified.source", "it was not made directly from a table of the view")
        )
    try:
        return sandbox_job.selection(source.get("table"), source.get("where"), source.get("bins"))
    except (TypeError, ValueError) as error:
        raise _NotRecomputable(
            Phrase("output.unverified.selection", "it names a selection the sandbox cannot repeat")
        ) from error


def _with_statistic(recipe: _Recipe, declared: dict[str, Any]) -> _Recipe:
    """A magnitude table's recipe with the value column and statistic it declares."""
    value, statistic = declared.get("value"), declared.get("statistic", "sum")
    if not isinstance(value, str) or statistic not in ("sum", "mean"):
        raise _NotRecomputable(
            Phrase(
                "output.unverified.no_value",
                "its declaration names no value column and statistic",
            )
        )
    return replace(recipe, value=value, statistic=statistic)


def _needed_columns(recipe: _Recipe) -> list[str]:
    """The columns the table is computed from: grouping, value, person (selection aside)."""
    value = [recipe.value] if recipe.value is not None else []
    return [*recipe.by, *value, recipe.person]


def _selecting_columns(recipe: _Recipe) -> list[str]:
    return [c for c, _, _ in recipe.selected["where"]] + list(recipe.selected["bins"])


def _check_columns(recipe: _Recipe) -> None:
    needed, selecting = _needed_columns(recipe), _selecting_columns(recipe)
    if len(set(needed)) != len(needed) or not set(needed + selecting) <= set(
        pq.read_schema(recipe.path).names
    ):
        raise _NotRecomputable(
            Phrase(
                "output.unverified.columns",
                "its declaration names columns that %(table)s lacks",
                table=str(recipe.selected["table"]),
            )
        )


def _recompute(recipe: _Recipe) -> tuple[list[str], list[list[Any]]]:
    """The table's columns and rows, made by the helper's own functions from the view."""
    reading = list(dict.fromkeys(_needed_columns(recipe) + _selecting_columns(recipe)))
    frame = pq.ParquetFile(recipe.path).read(columns=reading).to_pandas()
    selected = recipe.selected
    if selected["where"] or selected["bins"]:
        frame = sandbox_job.select_rows(frame, selected["where"], selected["bins"])
    if recipe.kind == "frequency":
        visible, hidden = sandbox_job.frequency_of(frame, recipe.by, person=recipe.person)
    else:
        assert recipe.value is not None and recipe.statistic is not None
        visible, hidden = sandbox_job.magnitude_of(
            frame, recipe.by, recipe.value, recipe.statistic, person=recipe.person
        )
    return frame_cells(sandbox_job.joined(visible, hidden))


def _same_visible(table: OutputTable, columns: list[str], rows: list[list[Any]]) -> bool:
    """Whether the job's output shows what the sandbox computed (hidden columns aside)."""
    visible = [c for c in columns if c not in HELPER_COLUMNS]
    theirs = [c for c in table.columns if c not in HELPER_COLUMNS]
    if visible != theirs or len(table.rows) != len(rows):
        return False
    mine_at = [columns.index(c) for c in visible]
    theirs_at = [table.columns.index(c) for c in visible]
    ours = Counter(_key([row[i] for i in mine_at]) for row in rows)
    if ours == Counter(_key([row[i] for i in theirs_at]) for row in table.rows):
        return True
    # Sums and means may differ in the last bits; match rows on their other cells.
    return _close(
        sorted(([row[i] for i in mine_at] for row in rows), key=_order),
        sorted(([row[i] for i in theirs_at] for row in table.rows), key=_order),
    )


def _key(cells: list[Any]) -> tuple[Any, ...]:
    return tuple(_normal(cell) for cell in cells)


def _normal(cell: object) -> object:
    """1 and 1.0 are the same group key (a column with gaps comes back as floats)."""
    if isinstance(cell, float) and cell.is_integer():
        return int(cell)
    if isinstance(cell, list):
        return tuple(_normal(c) for c in cell)
    return cell


def _order(cells: list[Any]) -> tuple[str, ...]:
    return tuple(
        "" if isinstance(c, float) else repr(_normal(c)) for c in cells
    )  # floats last-bit noisy: ordered by the other cells


def _close(ours: list[list[Any]], theirs: list[list[Any]]) -> bool:
    for mine, other in zip(ours, theirs, strict=True):
        for a, b in zip(mine, other, strict=True):
            if isinstance(a, float) and isinstance(b, int | float) and not isinstance(b, bool):
                if not math.isclose(a, float(b), rel_tol=TOLERANCE, abs_tol=TOLERANCE):
                    return False
            elif _normal(a) != _normal(b):
                return False
    return True
