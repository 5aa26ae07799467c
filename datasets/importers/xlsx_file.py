"""An .xlsx workbook streamed into staged tables, one per sheet, every value as text.

Values are staged as strings like a CSV's (the profiler infers types): numbers
as written (an integral float without ``.0``), dates in ISO 8601, booleans as
``true``/``false``, empty cells as null. A sheet holding a formula or merged
cells is refused: a formula's cached value may be stale or missing, and a merged
range holds its value in one cell only, so either would be staged wrong.

The first non-empty row is the header; the header's last named column ends the
table (a sheet's formatted but empty columns are not columns), and a value
beyond it is refused. A sheet without any value is left out.
"""

from __future__ import annotations

import datetime as dt
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO
from xml.etree.ElementTree import ParseError
from xml.parsers.expat import ExpatError

import openpyxl
import pyarrow as pa
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException

from datasets.errors import SourceError
from datasets.importers.names import MAX_TABLE_NAME, column_names, numbered_names, table_name_from
from datasets.importers.options import FileOptions
from datasets.importers.staged import StagedTable, all_or_nothing, staged_table
from datasets.importers.xlsx_merges import first_merged_range
from datasets.staging import Staging, check_table_name

BATCH_ROWS = 8_192
# Beyond 2**53 a float no longer holds every integer: write it as Python does.
_EXACT_INTEGERS = 2.0**53
_UNREADABLE = (zipfile.BadZipFile, KeyError, OSError, InvalidFileException, ParseError, ExpatError)


def stage_xlsx(
    handle: BinaryIO, *, filename: str, staging: Staging, table: str | None, options: FileOptions
) -> list[StagedTable]:
    """Stage each sheet of the workbook in ``handle`` (seekable), all of them or none."""
    start = handle.tell()
    try:
        merged = first_merged_range(handle)
    except _UNREADABLE as error:
        raise _unreadable(filename, error) from None
    if merged is not None:
        sheet, ref = merged
        raise SourceError(
            "import.merged_cells",
            f"sheet {sheet!r} has merged cells ({ref}): unmerge them and fill in every cell",
            file=filename,
        )
    handle.seek(start)
    with warnings.catch_warnings():
        # openpyxl warns of workbook features it drops (data validation, styles);
        # none of them is data.
        warnings.filterwarnings("ignore", category=UserWarning, module="openpyxl")
        try:
            workbook = openpyxl.load_workbook(handle, read_only=True, data_only=False)
        except _UNREADABLE as error:
            raise _unreadable(filename, error) from None
        try:
            return _stage_sheets(workbook, filename, staging, table, options)
        finally:
            workbook.close()


def _stage_sheets(
    workbook: Any, filename: str, staging: Staging, table: str | None, options: FileOptions
) -> list[StagedTable]:
    sheets = list(workbook.worksheets)
    names = sheet_table_names([sheet.title for sheet in sheets], table)
    staged = []
    with all_or_nothing(staging) as created:
        for sheet, name in zip(sheets, names, strict=True):
            result = _stage_sheet(sheet, filename, staging, name, options)
            if result is not None:
                created.append(result.name)
                staged.append(result)
        if not staged:
            raise SourceError("import.empty", "the workbook has no values", file=filename)
    return staged


def sheet_table_names(titles: Sequence[str], table: str | None) -> list[str]:
    """A table name per sheet: from its title (``sheet_N`` when it has no a-z), unique.

    With ``table`` given, a workbook of one sheet is staged as ``table`` and one of
    several as ``<table>_<sheet name>``.
    """
    names: list[str] = []
    for position, title in enumerate(titles, start=1):
        name = table_name_from(title, f"sheet_{position}")
        if table is not None:
            name = table if len(titles) == 1 else f"{table}_{name}"[:MAX_TABLE_NAME].rstrip("_")
        if name in names:
            name = f"{name[: MAX_TABLE_NAME - 8]}_{position}"
        check_table_name(name)
        names.append(name)
    return names


def _stage_sheet(
    sheet: Any, filename: str, staging: Staging, table: str, options: FileOptions
) -> StagedTable | None:
    rows = _values(sheet, filename)
    first = next(rows, None)
    if first is None:
        return None
    number, header = first
    header = _trimmed(header)
    if options.header:
        names = column_names(header, file=filename, row=number)
    else:
        names = numbered_names(len(header))
        rows = _chained(first, rows)
    schema = pa.schema([(name, pa.string()) for name in names])
    with staging.table_writer(table, schema) as writer:
        pending: list[list[str | None]] = []
        for number, values in rows:
            pending.append(_fitted(values, len(names), filename, sheet.title, number))
            if len(pending) == BATCH_ROWS:
                writer.write(_batch(pending, schema))
                pending = []
        if pending:
            writer.write(_batch(pending, schema))
        if writer.rows == 0:
            raise SourceError(
                "import.empty", f"sheet {sheet.title!r} has a header but no rows", file=filename
            )
        count = writer.rows
    return staged_table(
        table,
        schema,
        count,
        {"file": filename, "format": "xlsx", "sheet": sheet.title, "header": options.header},
    )


def _values(sheet: Any, filename: str) -> Iterator[tuple[int, list[str | None]]]:
    """Each non-empty row's number and its values as text; a formula is refused."""
    for number, cells in enumerate(sheet.iter_rows(), start=1):
        values = [_cell_text(cell, sheet.title, filename) for cell in cells]
        if any(value is not None for value in values):
            yield number, values


def _chained(
    first: tuple[int, list[str | None]], rest: Iterator[tuple[int, list[str | None]]]
) -> Iterator[tuple[int, list[str | None]]]:
    yield first
    yield from rest


def _trimmed(values: list[str | None]) -> list[str | None]:
    end = len(values)
    while end and values[end - 1] is None:
        end -= 1
    return values[:end]


def _fitted(
    values: list[str | None], width: int, filename: str, sheet: str, number: int
) -> list[str | None]:
    if len(values) > width:
        extra = next((i for i in range(width, len(values)) if values[i] is not None), None)
        if extra is not None:
            raise SourceError(
                "import.malformed_row",
                f"the row of sheet {sheet!r} has a value beyond the header's {width} columns",
                file=filename,
                row=number,
                column=get_column_letter(extra + 1),
            )
        return values[:width]
    return values + [None] * (width - len(values))


def _batch(rows: list[list[str | None]], schema: pa.Schema) -> pa.RecordBatch:
    columns = [pa.array(column, type=pa.string()) for column in zip(*rows, strict=True)]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _cell_text(cell: Any, sheet: str, filename: str) -> str | None:
    if cell.data_type == "f":
        raise SourceError(
            "import.formula",
            f"cell {cell.coordinate} of sheet {sheet!r} holds a formula: "
            "replace the formulas by their values",
            file=filename,
            row=cell.row,
            column=cell.column_letter,
        )
    return cell_text(cell.value, getattr(cell, "number_format", None))


def cell_text(value: object, number_format: str | None = None) -> str | None:
    """A cell's value as the text staged for it."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            str(int(value)) if value.is_integer() and abs(value) < _EXACT_INTEGERS else repr(value)
        )
    if isinstance(value, dt.datetime):
        # Excel has no date type: a date is a datetime at midnight shown without a time.
        shows_time = number_format is not None and "h" in number_format.lower()
        if value.time() == dt.time() and not shows_time:
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):  # a duration format such as [h]:mm
        seconds = value.total_seconds()
        return f"PT{int(seconds) if seconds.is_integer() else seconds}S"
    return str(value)


def _unreadable(filename: str, error: Exception) -> SourceError:
    return SourceError(
        "import.format",
        f"the file cannot be read as an .xlsx workbook ({type(error).__name__})",
        file=filename,
    )
