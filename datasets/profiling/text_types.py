"""The type of a column that arrives as text (CSV, XLSX): the narrowest that reads it all.

A reader tries to read a whole batch as one type with one vectorised Arrow call
and either succeeds for every value or fails. A column starts with the first
reader, in :data:`READERS`' order, that reads its first batch; when a later
batch fails, it moves to the next reader that reads every value the current one
reads (:data:`WIDER`) and this batch too, so the earlier batches need not be
read again; text reads anything. Numbers with a leading zero (``007``) and runs
of 16 digits or more (resident ID numbers, card numbers) are codes: they stay
text, as do ``0``/``1`` unless the column holds exactly those two.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datasets.manifest import ColumnType

Bound = int | float | date | datetime
# Longest run of digits still read as a number: longer ones are ids, never quantities.
MAX_NUMBER_DIGITS = 15
PROBE_VALUES = 256
BOOLEAN_PAIRS = (
    frozenset({"是", "否"}),
    frozenset({"true", "false"}),
    frozenset({"t", "f"}),
    frozenset({"yes", "no"}),
    frozenset({"y", "n"}),
    frozenset({"0", "1"}),
)


@dataclass(frozen=True)
class Lengths:
    """The shortest and longest value of a batch, in characters."""

    shortest: int
    longest: int


@dataclass(frozen=True)
class Reader:
    name: str
    type: ColumnType
    read: Callable[[pa.Array, Lengths], pa.Array | None]


def _cast(target: pa.DataType) -> Callable[[pa.Array, Lengths], pa.Array | None]:
    def read(values: pa.Array, lengths: Lengths) -> pa.Array | None:
        try:
            return pc.cast(values, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None

    return read


def _parsed(
    pattern: str, *, as_date: bool, length: int | None = None
) -> Callable[[pa.Array, Lengths], pa.Array | None]:
    def read(values: pa.Array, lengths: Lengths) -> pa.Array | None:
        if length is not None and not lengths.shortest == lengths.longest == length:
            return None
        parsed = pc.strptime(values, format=pattern, unit="us", error_is_null=True)
        if parsed.null_count:
            return None
        if length is not None and not _plausible_years(parsed):
            return None
        return pc.cast(parsed, pa.date32()) if as_date else parsed

    return read


def _plausible_years(parsed: pa.Array) -> bool:
    # Eight digits are a compact date (20240105) only if every year is plausible.
    years = pc.min_max(pc.year(parsed))
    return bool(1900 <= years["min"].as_py() and years["max"].as_py() <= 2100)


def _number(target: pa.DataType) -> Callable[[pa.Array, Lengths], pa.Array | None]:
    cast = _cast(target)

    def read(values: pa.Array, lengths: Lengths) -> pa.Array | None:
        if _looks_like_codes(values, lengths):
            return None
        return cast(values, lengths)

    return read


def _looks_like_codes(values: pa.Array, lengths: Lengths) -> bool:
    zeros = pc.or_(pc.starts_with(values, "0"), pc.starts_with(values, "-0"))
    if (
        pc.any(zeros).as_py()
        and pc.any(pc.match_substring_regex(pc.filter(values, zeros), r"^-?0[0-9]")).as_py()
    ):
        return True
    if lengths.longest > MAX_NUMBER_DIGITS:
        return bool(pc.any(pc.match_substring_regex(values, r"^[+-]?[0-9]{16,}$")).as_py())
    return False


def _text(values: pa.Array, lengths: Lengths) -> pa.Array | None:
    return values


READERS = (
    Reader("date_iso", ColumnType.DATE, _cast(pa.date32())),
    Reader("date_dash", ColumnType.DATE, _parsed("%Y-%m-%d", as_date=True)),
    Reader("date_slash", ColumnType.DATE, _parsed("%Y/%m/%d", as_date=True)),
    Reader("date_chinese", ColumnType.DATE, _parsed("%Y年%m月%d日", as_date=True)),
    Reader("date_compact", ColumnType.DATE, _parsed("%Y%m%d", as_date=True, length=8)),
    Reader("timestamp_iso", ColumnType.TIMESTAMP, _cast(pa.timestamp("us"))),
    Reader("timestamp_slash", ColumnType.TIMESTAMP, _parsed("%Y/%m/%d %H:%M:%S", as_date=False)),
    Reader(
        "timestamp_slash_minutes", ColumnType.TIMESTAMP, _parsed("%Y/%m/%d %H:%M", as_date=False)
    ),
    Reader("integer", ColumnType.INTEGER, _number(pa.int64())),
    Reader("float", ColumnType.FLOAT, _number(pa.float64())),
    Reader("text", ColumnType.STRING, _text),
)
_BY_NAME = {reader.name: reader for reader in READERS}
# The readers that read every value a reader reads, in the order they are tried.
WIDER: dict[str, tuple[str, ...]] = {
    "date_iso": ("date_dash", "timestamp_iso", "text"),
    "date_dash": ("text",),
    "date_slash": ("text",),
    "date_chinese": ("text",),
    "date_compact": ("integer", "float", "text"),
    "timestamp_iso": ("text",),
    "timestamp_slash": ("text",),
    "timestamp_slash_minutes": ("text",),
    "integer": ("float", "text"),
    "float": ("text",),
    "text": (),
}


class TextTypes:
    """The type of one text column so far, with the smallest and largest value read."""

    def __init__(self) -> None:
        self.reader: Reader | None = None
        self.minimum: Bound | None = None
        self.maximum: Bound | None = None
        # Whole numbers that only ever grow are distinct without counting them.
        self.increasing = True
        self._last: int | None = None

    @property
    def type(self) -> ColumnType:
        return ColumnType.STRING if self.reader is None else self.reader.type

    def add(self, values: pa.Array, lengths: Lengths) -> None:
        """Read a batch's non-null values."""
        if self.reader is not None and self.reader.name == "text":
            return
        tried = (
            READERS
            if self.reader is None
            else (self.reader, *(_BY_NAME[name] for name in WIDER[self.reader.name]))
        )
        for reader in tried:
            # A failing Arrow cast costs as much as reading the whole batch, value by
            # value: another reader is first tried on the batch's head.
            probe = reader is not self.reader and len(values) > PROBE_VALUES
            if probe and reader.read(values.slice(0, PROBE_VALUES), lengths) is None:
                continue
            parsed = reader.read(values, lengths)
            if parsed is None:
                continue
            if reader is not self.reader:
                self._widen(reader)
            self._bounds(parsed)
            return

    def _widen(self, reader: Reader) -> None:
        if self.reader is not None:
            self.minimum = _converted(self.minimum, reader.type)
            self.maximum = _converted(self.maximum, reader.type)
        if reader.type is not ColumnType.INTEGER:
            self.increasing = False
        self.reader = reader

    def _bounds(self, parsed: pa.Array) -> None:
        if self.reader is None or self.reader.type is ColumnType.STRING:
            return
        extremes = pc.min_max(parsed)
        low, high = extremes["min"].as_py(), extremes["max"].as_py()
        if low is not None and (self.minimum is None or low < self.minimum):
            self.minimum = low
        if high is not None and (self.maximum is None or high > self.maximum):
            self.maximum = high
        if self.reader.type is ColumnType.INTEGER and self.increasing:
            self._check_increasing(parsed)

    def _check_increasing(self, parsed: pa.Array) -> None:
        numbers = np.asarray(parsed.to_numpy(zero_copy_only=False))
        grows = bool(np.all(numbers[1:] > numbers[:-1]))
        if self._last is not None and len(numbers):
            grows = grows and int(numbers[0]) > self._last
        self.increasing = grows
        if len(numbers):
            self._last = int(numbers[-1])


def _converted(bound: Bound | None, to: ColumnType) -> Bound | None:
    if bound is None or to is ColumnType.STRING:
        return None
    if isinstance(bound, date) and not isinstance(bound, datetime):
        if to is ColumnType.TIMESTAMP:
            return datetime.combine(bound, time())
        if to in (ColumnType.INTEGER, ColumnType.FLOAT):
            # Only a compact date (20240105) widens to a number.
            number = bound.year * 10_000 + bound.month * 100 + bound.day
            return float(number) if to is ColumnType.FLOAT else number
        return bound
    if to is ColumnType.FLOAT and isinstance(bound, int):
        return float(bound)
    return bound


def boolean_pair(distinct_values: list[object]) -> bool:
    """True when the column holds exactly the two values of a yes/no vocabulary, in any
    letter case (``TRUE``, ``true``, ``False``)."""
    return frozenset(str(value).strip().lower() for value in distinct_values) in BOOLEAN_PAIRS
