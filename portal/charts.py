"""A chart of each released table for the job page, drawn as inline SVG without script.

Pure: one released table (its columns, rows and, for a differentially private
result, the ``error95`` and ``error95_units`` it carries) in, the geometry the
template ``_result_chart.html`` draws out. Only released values are drawn: a
suppressed cell (None) is left out and counted, so the page can say so.

Bars for a categorical grouping column; lines for an ordered one (years, months,
dates, numeric bands), one line per value of a second, categorical column. The
value is the first numeric column that is not a grouping column, or the one asked for.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 72
MAX_MARKS = 60  # more bars than this are unreadable at this width
MAX_SERIES = 6  # as many as the stylesheet has colours (.series-0 … .series-5)
MAX_LABEL = 16
ROTATE_AFTER = 8
LEVEL_LABELS = 28  # room below the plot for labels that are not turned
TICKS = 6  # about this many steps up the value axis  # labels turn sideways past this many bars
MAX_X_LABELS = 12
CAP = 4.0  # half-width of an error bar's caps
# Column names that say their values are ordered: birth_year, visit_month, age_band, 年份.
ORDERED_NAMES = re.compile(
    r"(^|_)(year|month|date|day|week|quarter|band|bin|period|age_group)s?($|_)|年|月|日期|季度|年龄段",
    re.IGNORECASE,
)
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
DATE = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?$")
# A band: "[1950, 1980)", "18-29", "18–29岁", "65+", "<18", "≥65", "60以上".
BAND = re.compile(r"^\s*[\[(]?\s*([<>≤≥]=?)?\s*(-?\d+(?:\.\d+)?)\s*(?:[-–~,，]|\+|以上|以下|岁|$)")


@dataclass(frozen=True)
class Tick:
    value: float
    y: float


@dataclass(frozen=True)
class ErrorBar:
    """The 95 % interval of a noisy value, value ± error95."""

    x: float
    y_low: float
    y_high: float
    low: float
    high: float

    @property
    def cap_left(self) -> float:
        return round(self.x - CAP, 1)

    @property
    def cap_right(self) -> float:
        return round(self.x + CAP, 1)


@dataclass(frozen=True)
class Bar:
    label: str
    x: float
    y: float
    width: float
    height: float
    value: float
    error: ErrorBar | None


@dataclass(frozen=True)
class Point:
    label: str
    x: float
    y: float
    value: float
    error: ErrorBar | None


@dataclass(frozen=True)
class Series:
    name: str | None  # the second grouping column's value; None for a single line
    index: int  # its colour, .series-<index>
    points: tuple[Point, ...]

    @property
    def path(self) -> str:
        return " ".join(f"{p.x},{p.y}" for p in self.points)


@dataclass(frozen=True)
class XLabel:
    text: str
    x: float
    rotated: bool


@dataclass(frozen=True)
class TableChart:
    kind: Literal["bar", "line"]
    table: str
    category: str  # the grouping column(s), "district · sex"
    value: str
    choices: tuple[str, ...]  # the numeric columns one may chart instead
    y_ticks: tuple[Tick, ...]
    x_labels: tuple[XLabel, ...]
    bars: tuple[Bar, ...]
    series: tuple[Series, ...]
    zero_y: float
    suppressed: int  # cells of the value column not drawn: suppressed
    omitted: int  # rows past MAX_MARKS, not drawn
    rank_errors: bool  # errors in rows of rank (a quantile): not drawn on the value axis
    width: int = WIDTH
    height: int = HEIGHT
    x0: int = LEFT
    x1: int = WIDTH - RIGHT
    top: int = TOP
    y0: int = HEIGHT - BOTTOM

    @property
    def marks(self) -> tuple[Bar | Point, ...]:
        return (*self.bars, *(p for s in self.series for p in s.points))

    @property
    def error_bars(self) -> bool:
        return any(m.error is not None for m in self.marks)

    @property
    def drawn(self) -> int:
        return len(self.bars) + sum(len(s.points) for s in self.series)


@dataclass(frozen=True)
class _Mark:
    key: tuple[Any, ...]  # the grouping values
    value: float
    error: float | None


def table_chart(table: Mapping[str, Any], *, value: str | None = None) -> TableChart | None:
    """The chart of one released table, or None when it has nothing to chart (no grouping
    column or no numeric value column). ``value`` picks the value column among the
    numeric ones; an unknown name is ignored."""
    columns = [str(c) for c in table.get("columns") or []]
    rows: list[Sequence[Any]] = [r for r in table.get("rows") or [] if len(r) == len(columns)]
    if not rows:
        return None
    numeric = [i for i in range(len(columns)) if _is_numeric(row[i] for row in rows)]
    groups = _grouping_columns(columns, rows, numeric)
    choices = [i for i in numeric if i not in groups]
    if not groups or not choices:
        return None
    picked = next((i for i in choices if columns[i] == value), choices[0])
    units = list(table.get("error95_units") or [])
    rank = len(units) > picked and units[picked] == "rank"
    errors = None if rank else table.get("error95")
    marks: list[_Mark] = []
    suppressed = 0
    for number, row in enumerate(rows):
        cell = row[picked]
        if cell is None:
            suppressed += 1
            continue
        error = _error(errors, number, picked)
        marks.append(_Mark(tuple(row[i] for i in groups), float(cell), error))
    ordered = [i for i in groups if _is_ordered(columns[i], [row[i] for row in rows])]
    chart = _Frame(
        table=str(table.get("name", "")),
        category=" · ".join(columns[i] for i in groups),
        value=columns[picked],
        choices=tuple(columns[i] for i in choices),
        suppressed=suppressed,
        rank=rank,
    )
    lines = _as_lines(groups, ordered, marks)
    if lines is not None:
        return chart.lines(lines)
    return chart.bars(marks)


@dataclass(frozen=True)
class _Frame:
    table: str
    category: str
    value: str
    choices: tuple[str, ...]
    suppressed: int
    rank: bool

    def bars(self, marks: list[_Mark]) -> TableChart:
        shown, omitted = marks[:MAX_MARKS], max(0, len(marks) - MAX_MARKS)
        scale = _Scale.over(shown)
        band = (WIDTH - RIGHT - LEFT) / max(1, len(shown))
        rotated = len(shown) > ROTATE_AFTER
        bars, labels = [], []
        for number, mark in enumerate(shown):
            middle = LEFT + band * (number + 0.5)
            top, bottom = sorted((scale.y(mark.value), scale.y(0.0)))
            label = _label(mark.key)
            bars.append(
                Bar(
                    label=label,
                    x=round(middle - band * 0.35, 1),
                    y=top,
                    width=round(band * 0.7, 1),
                    height=round(bottom - top, 1),
                    value=mark.value,
                    error=scale.error_bar(round(middle, 1), mark),
                )
            )
            labels.append(XLabel(label, round(middle, 1), rotated))
        return self._chart("bar", scale, tuple(labels), tuple(bars), (), omitted)

    def lines(self, lines: list[tuple[Any, list[_Mark]]]) -> TableChart:
        xs = sorted({m.key[0] for _, marks in lines for m in marks}, key=_order_key)
        shown, omitted = xs[:MAX_MARKS], max(0, len(xs) - MAX_MARKS)
        place = {x: n for n, x in enumerate(shown)}
        kept = [(name, [m for m in marks if m.key[0] in place]) for name, marks in lines]
        scale = _Scale.over([m for _, marks in kept for m in marks])
        step = (WIDTH - RIGHT - LEFT) / max(1, len(shown))
        at = {x: round(LEFT + step * (n + 0.5), 1) for x, n in place.items()}
        series = []
        for index, (name, marks) in enumerate(kept):
            points = tuple(
                Point(
                    label=_text(m.key[0]),
                    x=at[m.key[0]],
                    y=scale.y(m.value),
                    value=m.value,
                    error=scale.error_bar(at[m.key[0]], m),
                )
                for m in sorted(marks, key=lambda m: _order_key(m.key[0]))
            )
            series.append(Series(None if name is None else _text(name), index, points))
        every = max(1, math.ceil(len(shown) / MAX_X_LABELS))
        labels = tuple(XLabel(_text(x), at[x], False) for x in shown[::every])
        return self._chart("line", scale, labels, (), tuple(series), omitted)

    def _chart(
        self,
        kind: Literal["bar", "line"],
        scale: _Scale,
        labels: tuple[XLabel, ...],
        bars: tuple[Bar, ...],
        series: tuple[Series, ...],
        omitted: int,
    ) -> TableChart:
        return TableChart(
            kind=kind,
            table=self.table,
            category=self.category,
            value=self.value,
            choices=self.choices,
            y_ticks=scale.ticks(),
            x_labels=labels,
            bars=bars,
            series=series,
            zero_y=scale.y(0.0),
            suppressed=self.suppressed,
            omitted=omitted,
            rank_errors=self.rank,
            # Sideways labels need the whole margin below the plot; level ones a line.
            height=HEIGHT if any(x.rotated for x in labels) else HEIGHT - BOTTOM + LEVEL_LABELS,
        )


@dataclass(frozen=True)
class _Scale:
    low: float
    high: float
    step: float

    @classmethod
    def over(cls, marks: Sequence[_Mark]) -> _Scale:
        """From zero (bars stand on it) to past the highest interval, in round steps."""
        lows = [m.value - (m.error or 0.0) for m in marks]
        highs = [m.value + (m.error or 0.0) for m in marks]
        low, high = min([0.0, *lows]), max([0.0, *highs])
        if high == low:
            high = low + 1.0
        step = _nice_step((high - low) / TICKS)
        return cls(math.floor(low / step) * step, math.ceil(high / step) * step, step)

    def y(self, value: float) -> float:
        span = HEIGHT - BOTTOM - TOP
        return round(TOP + (self.high - value) / (self.high - self.low) * span, 1)

    def ticks(self) -> tuple[Tick, ...]:
        count = round((self.high - self.low) / self.step)
        values = [_tidy(self.low + self.step * n) for n in range(count + 1)]
        return tuple(Tick(v, self.y(v)) for v in values)

    def error_bar(self, x: float, mark: _Mark) -> ErrorBar | None:
        if mark.error is None:
            return None
        low, high = mark.value - mark.error, mark.value + mark.error
        return ErrorBar(x=x, y_low=self.y(low), y_high=self.y(high), low=low, high=high)


def _as_lines(
    groups: list[int], ordered: list[int], marks: list[_Mark]
) -> list[tuple[Any, list[_Mark]]] | None:
    """Lines along the ordered column, one per value of the other one; None for bars."""
    if not ordered or len(groups) > 2:
        return None
    along = groups.index(ordered[0])
    if len(groups) == 1:
        return [(None, [_Mark((m.key[0],), m.value, m.error) for m in marks])]
    other = 1 - along
    names = list(dict.fromkeys(m.key[other] for m in marks))
    if len(names) > MAX_SERIES:
        return None
    return [
        (name, [_Mark((m.key[along],), m.value, m.error) for m in marks if m.key[other] == name])
        for name in names
    ]


def _grouping_columns(
    columns: list[str], rows: list[Sequence[Any]], numeric: list[int]
) -> list[int]:
    """The columns the rows are grouped by: the non-numeric ones and the numeric ones whose
    names say they are ordered keys (birth_year); failing those, a first column of distinct
    whole numbers (length_of_stay beside its count)."""
    found = [
        i
        for i in range(len(columns))
        if i not in numeric or (ORDERED_NAMES.search(columns[i]) and _whole(rows, i))
    ]
    if found or len(numeric) < 2:
        return found
    first = [row[0] for row in rows]
    if _whole(rows, 0) and len(set(first)) == len(first):
        return [0]
    return []


def _is_numeric(values: Any) -> bool:
    """Numbers, or nothing at all: a column every cell of which was suppressed."""
    return all(
        value is None
        or not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        for value in values
    )


def _whole(rows: list[Sequence[Any]], index: int) -> bool:
    return all(isinstance(r[index], int) and not isinstance(r[index], bool) for r in rows)


def _is_ordered(name: str, values: list[Any]) -> bool:
    present = [v for v in values if v is not None]
    if not present:
        return False
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return True  # a numeric key (birth_year, length_of_stay) is ordered by nature
    if ORDERED_NAMES.search(name):
        return all(_order_key(v) != _UNORDERED for v in present)
    # Without a telling name only dates and bands are ordered: a code ("110101") is not.
    return all(isinstance(v, str) and (DATE.match(v) or _is_band(v)) for v in present)


def _is_band(value: str) -> bool:
    return BAND.match(value) is not None and not NUMBER.fullmatch(value.strip())


_UNORDERED = (2, 0.0, "")


def _order_key(value: Any) -> tuple[int, float, str]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    text = str(value)
    date = DATE.match(text)
    if date:
        year, month, day = (int(part or 0) for part in date.groups())
        return (0, year * 10_000 + month * 100 + day, "")
    band = BAND.match(text)
    if band:
        below = band.group(1) in ("<", "<=", "≤")
        return (0, float(band.group(2)) - (0.5 if below else 0.0), text)
    return _UNORDERED


def _error(errors: Any, row: int, column: int) -> float | None:
    if not isinstance(errors, list) or row >= len(errors) or column >= len(errors[row]):
        return None
    found = errors[row][column]
    if isinstance(found, bool) or not isinstance(found, int | float) or not math.isfinite(found):
        return None
    return abs(float(found))


def _nice_step(raw: float) -> float:
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


def _tidy(value: float) -> float:
    """A tick without float dust: 0.30000000000000004 is 0.3."""
    return float(f"{value:.10g}")


def _label(key: tuple[Any, ...]) -> str:
    return " · ".join(_text(v) for v in key)


def _text(value: Any) -> str:
    text = "—" if value is None else str(value)
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def result_charts(
    result: Mapping[str, Any] | None, picks: Mapping[str, str]
) -> dict[str, TableChart | None]:
    """Each released table's chart by name; ``picks`` holds ``chart.<table>=<column>``
    (the page's query string) for a value column other than the first."""
    if not result:
        return {}
    tables = [t for t in result.get("tables") or [] if isinstance(t, Mapping)]
    return {
        str(t.get("name")): table_chart(t, value=picks.get(f"chart.{t.get('name')}"))
        for t in tables
    }
