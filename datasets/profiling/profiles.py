"""What profiling a staged table found: per column, statistics and detections.

Statistics (rows, nulls, distinct counts, lengths) and detections are counts.
The few values read from the data itself (smallest and largest value, the most
common categories) sit apart in :class:`DataDerived`, marked
``derived_from_data``: the owner sees them while classifying, nobody else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from datasets.errors import DatasetError
from datasets.manifest import ColumnType
from datasets.profiling.detectors import Detection
from datasets.profiling.distinct import STANDARD_ERROR

Bound = int | float | date | datetime
# An estimated distinct count within this many standard errors of the row count
# makes a candidate key (to be confirmed exactly, by key_problems, before use).
KEY_TOLERANCE = 3 * STANDARD_ERROR


class ProfilingError(DatasetError):
    """A table cannot be profiled or classified as asked (no data value is named)."""


@dataclass(frozen=True)
class CategoryCount:
    value: str
    rows: int


@dataclass(frozen=True)
class DataDerived:
    """Values read from the data: shown to the owner only."""

    minimum: Bound | None = None
    maximum: Bound | None = None
    top_categories: tuple[CategoryCount, ...] = ()
    derived_from_data: bool = True


@dataclass(frozen=True)
class ColumnProfile:
    name: str
    source_type: str  # the Arrow type the importer delivered
    inferred_type: ColumnType
    rows: int
    nulls: int
    distinct: int  # of non-null values
    distinct_exact: bool
    mean_length: float | None  # characters, for text columns
    sampled: int  # values the detectors saw
    # False for a type the profiler cannot read (binary, lists, structs): nothing is known.
    readable: bool = True
    detections: tuple[Detection, ...] = ()
    derived: DataDerived = field(default_factory=DataDerived)

    @property
    def null_share(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0

    @property
    def non_null(self) -> int:
        return self.rows - self.nulls

    @property
    def unique(self) -> bool:
        """No nulls and every value different (estimated beyond the exact count)."""
        if self.rows == 0 or self.nulls:
            return False
        if self.distinct_exact:
            return self.distinct == self.rows
        return abs(self.distinct - self.rows) <= KEY_TOLERANCE * self.rows

    @property
    def all_categories_known(self) -> bool:
        """The top categories are all of the column's values."""
        return self.distinct_exact and 0 < self.distinct == len(self.derived.top_categories)

    def detection(self, detector: str) -> Detection | None:
        return next((d for d in self.detections if d.detector == detector), None)


@dataclass(frozen=True)
class TableProfile:
    rows: int
    columns: tuple[ColumnProfile, ...]
    # Columns with no nulls whose distinct count equals the rows.
    candidate_keys: tuple[str, ...] = ()

    def column(self, name: str) -> ColumnProfile | None:
        return next((c for c in self.columns if c.name == name), None)
