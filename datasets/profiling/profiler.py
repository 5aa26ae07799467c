"""Profile a staged table in one streaming pass, propose a class for every column, and
check a declared key.

The importers hand over Arrow record batches; :func:`profile_table` reads each
batch once, with vectorised Arrow calls per column (counts, type, smallest and
largest value, distinct values, a uniform sample) and keeps memory bounded
whatever the number of rows: per column a :class:`DistinctCounter` and a
:class:`Sample`. The identifier detectors run on the sample only, at the end.
:func:`propose_columns` (in :mod:`datasets.profiling.proposals`) turns the profile into
proposals the owner confirms; :func:`key_problems` checks a declared key exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from datasets.manifest import ColumnType
from datasets.profiling.detectors import NUMERIC_DETECTORS, Detection, detect
from datasets.profiling.distinct import DEFAULT_CAP, DistinctCounter, hash64
from datasets.profiling.evidence import Evidence
from datasets.profiling.profiles import (
    Bound,
    CategoryCount,
    ColumnProfile,
    DataDerived,
    ProfilingError,
    TableProfile,
)
from datasets.profiling.proposals import ColumnProposal, ProposedValues, propose_columns
from datasets.profiling.sampling import SEED, Sample, row_keys
from datasets.profiling.text_types import Lengths, TextTypes, boolean_pair

__all__ = [
    "CategoryCount",
    "ColumnProfile",
    "ColumnProposal",
    "DataDerived",
    "KeyProblem",
    "ProfilingError",
    "ProposedValues",
    "TableProfile",
    "key_problems",
    "profile_table",
    "propose_columns",
]

Batches: TypeAlias = Iterable[pa.RecordBatch] | pa.RecordBatchReader
# A text column is offered as categories only while it has at most this many values,
# each seen twice on average.
LOW_CARDINALITY = 1_000
# Yes/no columns spelled in several letter cases (TRUE, True, true) are still yes/no.
MAX_BOOLEAN_SPELLINGS = 6
_NATIVE_TYPES = {
    "integer": ColumnType.INTEGER,
    "float": ColumnType.FLOAT,
    "decimal": ColumnType.FLOAT,
    "date": ColumnType.DATE,
    "timestamp": ColumnType.TIMESTAMP,
    "boolean": ColumnType.BOOLEAN,
}


def profile_table(
    batches: Batches,
    *,
    schema: pa.Schema,
    sample_size: int = 10_000,
    top_categories: int = 50,
    distinct_cap: int = DEFAULT_CAP,
) -> TableProfile:
    """Profile a table from its batches, read once (a RecordBatchReader can only be)."""
    columns = [_ColumnProfiler(f, sample_size=sample_size, cap=distinct_cap) for f in schema]
    generator = np.random.default_rng(SEED)
    rows = 0
    for batch in batches:
        if batch.schema.names != schema.names:
            raise ProfilingError("a batch's columns are not the table's columns")
        keys = row_keys(batch.num_rows, generator)
        for column, values in zip(columns, batch.columns, strict=True):
            column.add(values, keys)
        rows += batch.num_rows
    profiles = tuple(column.finish(top_categories) for column in columns)
    return TableProfile(
        rows=rows,
        columns=profiles,
        candidate_keys=tuple(p.name for p in profiles if p.unique),
    )


def _kind(data_type: pa.DataType) -> str:
    if pa.types.is_dictionary(data_type):
        return _kind(data_type.value_type)
    checks = (
        ("text", pa.types.is_string(data_type) or pa.types.is_large_string(data_type)),
        ("text", pa.types.is_string_view(data_type)),
        ("integer", pa.types.is_integer(data_type)),
        ("float", pa.types.is_floating(data_type)),
        ("decimal", pa.types.is_decimal(data_type)),
        ("date", pa.types.is_date(data_type)),
        ("timestamp", pa.types.is_timestamp(data_type)),
        ("boolean", pa.types.is_boolean(data_type)),
    )
    return next((kind for kind, matches in checks if matches), "other")


def _plain(values: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_string_view(values.type):
        values = pc.cast(values, pa.string())
    return values


class _ColumnProfiler:
    """One column's counters, fed batch by batch."""

    def __init__(self, field: pa.Field, *, sample_size: int, cap: int) -> None:
        self.field = field
        self.kind = _kind(field.type)
        self.rows = 0
        self.nulls = 0
        self.characters = 0
        self.distinct = DistinctCounter(cap=cap)
        self.sample = Sample(sample_size)
        self.text = TextTypes()
        self.minimum: Bound | None = None
        self.maximum: Bound | None = None
        # Whole numbers that only ever grow are all different, however many there are.
        self.increasing = True
        self._last: int | None = None

    def add(self, column: pa.Array, keys: npt.NDArray[np.float64]) -> None:
        self.rows += len(column)
        self.nulls += column.null_count
        if self.kind == "other" or column.null_count == len(column):
            return
        column = _plain(column)
        values = column.drop_null() if column.null_count else column
        self.distinct.add(values)
        self.sample.add(column, keys)
        if self.kind == "text":
            lengths = pc.utf8_length(values)
            extremes = pc.min_max(lengths)
            self.characters += pc.sum(lengths).as_py()
            self.text.add(values, Lengths(extremes["min"].as_py(), extremes["max"].as_py()))
        elif self.kind != "boolean":
            if self.kind in ("integer", "decimal"):
                self._check_increasing(values)
            self._bounds(values)

    def _check_increasing(self, values: pa.Array) -> None:
        if not self.increasing:
            return
        numbers = np.asarray(values.to_numpy(zero_copy_only=False))
        grows = bool(np.all(numbers[1:] > numbers[:-1]))
        self.increasing = grows and (self._last is None or int(numbers[0]) > self._last)
        self._last = int(numbers[-1])

    def _bounds(self, values: pa.Array) -> None:
        extremes = pc.min_max(values)
        low, high = extremes["min"].as_py(), extremes["max"].as_py()
        if low is None or high is None or (isinstance(low, float) and math.isnan(low)):
            return  # a batch of NaN only
        if self.kind == "decimal":
            whole = self.field.type.scale == 0
            low, high = (int(low), int(high)) if whole else (float(low), float(high))
        if self.minimum is None or low < self.minimum:
            self.minimum = low
        if self.maximum is None or high > self.maximum:
            self.maximum = high

    def finish(self, top_categories: int) -> ColumnProfile:
        inferred = self._inferred_type()
        non_null = self.rows - self.nulls
        distinct, exact = self.distinct.count(), self.distinct.exact
        increasing = self.text.increasing if self.kind == "text" else self.increasing
        if increasing and inferred is ColumnType.INTEGER and non_null:
            distinct, exact = non_null, True  # strictly increasing: all different
        sample = self.sample.values()
        detections = self._detections(sample, inferred)
        low_cardinality = exact and distinct <= min(LOW_CARDINALITY, non_null // 2)
        shows_categories = (
            self.kind == "text"
            and inferred in (ColumnType.STRING, ColumnType.BOOLEAN)
            and low_cardinality
            and not any(d.significant for d in detections)
        )
        top = (
            tuple(
                CategoryCount(str(value), count)
                for value, count in self.distinct.most_common(top_categories)
            )
            if shows_categories
            else ()
        )
        minimum, maximum = self._extremes(inferred)
        return ColumnProfile(
            name=self.field.name,
            source_type=str(self.field.type),
            inferred_type=inferred,
            rows=self.rows,
            nulls=self.nulls,
            distinct=distinct,
            distinct_exact=exact,
            mean_length=self.characters / non_null if self.kind == "text" and non_null else None,
            sampled=0 if sample is None else len(sample),
            readable=self.kind != "other",
            detections=detections,
            derived=DataDerived(minimum=minimum, maximum=maximum, top_categories=top),
        )

    def _inferred_type(self) -> ColumnType:
        if self.kind == "decimal" and self.field.type.scale == 0:
            return ColumnType.INTEGER
        if self.kind != "text":
            return _NATIVE_TYPES.get(self.kind, ColumnType.STRING)
        if self.distinct.exact and 2 <= self.distinct.count() <= MAX_BOOLEAN_SPELLINGS:
            spellings = self.distinct.most_common(MAX_BOOLEAN_SPELLINGS)
            if boolean_pair([value for value, _ in spellings]):
                return ColumnType.BOOLEAN
        return self.text.type

    def _extremes(self, inferred: ColumnType) -> tuple[Bound | None, Bound | None]:
        if inferred in (ColumnType.STRING, ColumnType.BOOLEAN):
            return None, None
        if self.kind == "text":
            return self.text.minimum, self.text.maximum
        return self.minimum, self.maximum

    def _detections(self, sample: pa.Array | None, inferred: ColumnType) -> tuple[Detection, ...]:
        if sample is None:
            return ()
        if self.kind == "text" and inferred is ColumnType.STRING:
            return detect(sample.to_pylist())
        whole_numbers = inferred is ColumnType.INTEGER or (
            self.kind == "decimal" and self.field.type.scale == 0
        )
        if whole_numbers:
            text = sample if self.kind == "text" else pc.cast(sample, pa.string())
            return detect(text.to_pylist(), detectors=NUMERIC_DETECTORS)
        return ()


# --- a declared key ---------------------------------------------------------------------


@dataclass(frozen=True)
class KeyProblem:
    """A declared key's problem: how many rows, and the first one (counting data rows from 1)."""

    problem: str  # "nulls" or "duplicates"
    key: str
    rows: int
    first_row: int

    @property
    def evidence(self) -> Evidence:
        return Evidence(
            f"key.{self.problem}", {"count": self.rows, "key": self.key, "row": self.first_row}
        )


def key_problems(batches: Batches, *, key: str, one_row_per_person: bool) -> list[KeyProblem]:
    """The declared ``key``'s missing values and, in a table of one row per person, its
    repeated ones, read in one pass.

    Duplicates are found exactly for whole-number keys and by 64-bit hashes for any
    other (a false duplicate is less likely than one in 100,000 at 10 million rows);
    memory is about 20 bytes a row while duplicates are looked for (some 200 MB at
    10 million rows), next to nothing otherwise.
    """
    offset = 0
    nulls = 0
    first_null: int | None = None
    hashes: list[npt.NDArray[np.uint64]] = []
    present: list[npt.NDArray[np.bool_]] = []
    for batch in batches:
        index = batch.schema.get_field_index(key)
        if index < 0:
            raise ProfilingError(f"the table has no column {key!r} to check as its key")
        column = _plain(batch.column(index))
        valid = np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        if column.null_count:
            if first_null is None:
                first_null = offset + int(np.argmin(valid)) + 1
            nulls += column.null_count
        if one_row_per_person:
            hashes.append(_key_hashes(column.drop_null() if column.null_count else column))
            present.append(valid)
        offset += batch.num_rows
    problems = []
    if nulls and first_null is not None:
        problems.append(KeyProblem("nulls", key, nulls, first_null))
    if hashes:
        all_hashes = np.concatenate(hashes)
        hashes.clear()
        duplicate = _duplicates(all_hashes, np.concatenate(present))
        if duplicate is not None:
            problems.append(KeyProblem("duplicates", key, *duplicate))
    return problems


def _key_hashes(values: pa.Array) -> npt.NDArray[np.uint64]:
    if pa.types.is_integer(values.type):
        numbers = pc.cast(values, pa.int64(), safe=False)
        return np.asarray(numbers.to_numpy(zero_copy_only=False), dtype=np.int64).view(np.uint64)
    return hash64(values)


def _duplicates(
    hashes: npt.NDArray[np.uint64], present: npt.NDArray[np.bool_]
) -> tuple[int, int] | None:
    """How many values repeat an earlier one, and the data row of the first repeat."""
    ordered = np.sort(hashes)
    same = ordered[1:] == ordered[:-1]
    repeats = int(np.count_nonzero(same))
    if not repeats:
        return None
    repeated = np.unique(ordered[1:][same])
    del ordered, same
    first = _first_repeat(hashes, repeated)
    if not present.all():
        first = int(np.flatnonzero(present)[first])
    return repeats, first + 1


_FIRST_CHUNK = 1 << 16
_LAST_CHUNK = 1 << 21


def _first_repeat(hashes: npt.NDArray[np.uint64], repeated: npt.NDArray[np.uint64]) -> int:
    """The index of the first hash seen before, reading in order, in growing chunks
    (bounded memory) and looking only at the values known to repeat."""
    seen = np.empty(0, dtype=np.uint64)
    start, size = 0, _FIRST_CHUNK
    while start < len(hashes):
        chunk = hashes[start : start + size]
        where = np.minimum(np.searchsorted(repeated, chunk), len(repeated) - 1)
        rows = np.flatnonzero(repeated[where] == chunk)
        values = chunk[rows]
        distinct, first_seen = np.unique(values, return_index=True)
        again = np.ones(len(values), dtype=bool)
        again[first_seen] = False  # repeats within the chunk
        if len(seen):
            known = np.minimum(np.searchsorted(seen, values), len(seen) - 1)
            again |= seen[known] == values  # repeats of an earlier chunk
        if again.any():
            return start + int(rows[int(np.argmax(again))])
        seen = np.union1d(seen, distinct)
        start, size = start + size, min(2 * size, _LAST_CHUNK)
    raise ProfilingError("a repeated key value was counted but not found again")
