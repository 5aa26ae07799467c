"""Owners' own tables into an import's staging: files (CSV, .xlsx, Parquet) and databases.

Each importer streams its source into a :class:`~datasets.staging.Staging` and
returns what it staged (:class:`StagedTable`), or raises
:class:`~datasets.errors.SourceError` with a rule id, the file or database, and
the row or column, leaving nothing of that import staged.

Rules: ``import.empty``, ``import.too_large``, ``import.format``,
``import.not_seekable``, ``import.encoding``, ``import.delimiter``,
``import.header``, ``import.malformed_row``, ``import.unreadable``,
``import.formula``, ``import.merged_cells``, ``import.url``,
``import.unreachable``, ``import.login_refused``, ``import.table_or_query``,
``import.table_name``, ``import.not_select``, ``import.query_refused``,
``import.column_type``.
"""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import BinaryIO

from datasets.errors import SourceError
from datasets.importers.csv_file import stage_csv
from datasets.importers.database import stage_database
from datasets.importers.formats import file_format
from datasets.importers.names import table_name_from
from datasets.importers.options import DatabaseOptions, FileOptions
from datasets.importers.parquet_file import stage_parquet
from datasets.importers.source import SourceBytes, opened, peek_head, remaining_size, too_large
from datasets.importers.staged import StagedTable
from datasets.importers.xlsx_file import stage_xlsx
from datasets.staging import Staging, check_table_name

__all__ = [
    "DatabaseOptions",
    "FileOptions",
    "SourceError",
    "StagedTable",
    "stage_database",
    "stage_file",
]


def stage_file(
    source: Path | BinaryIO,
    *,
    filename: str,
    staging: Staging,
    table: str | None = None,
    options: FileOptions = FileOptions(),  # noqa: B008 - frozen, so shared safely
) -> list[StagedTable]:
    """Stage the file ``source`` (a path, or a binary stream) named ``filename``.

    The format comes from the file's first bytes (a zip is a workbook, ``PAR1`` is
    Parquet), else from its name (``.csv``, ``.tsv``, ``.txt``). A CSV or Parquet file
    is one table, named ``table`` or after the file; a workbook is a table per sheet
    (see :func:`~datasets.importers.xlsx_file.sheet_table_names`). A workbook or a
    Parquet file is read out of order, so a stream of one must be seekable.
    """
    if table is not None:
        check_table_name(table)
    with opened(source) as handle:
        head, rewound = peek_head(handle)
        kind = file_format(filename, head)
        # Known at once when the file can be measured; a stream is measured as it is read.
        if rewound and remaining_size(handle) > options.max_bytes:
            raise too_large(filename, options.max_bytes)
        name = table or table_name_from(PurePath(filename).stem, "table")
        if kind == "csv":
            csv_head = b"" if rewound else head
            return [
                stage_csv(
                    handle,
                    head=csv_head,
                    filename=filename,
                    staging=staging,
                    table=name,
                    options=options,
                )
            ]
        if rewound:
            return _stage_random_access(handle, kind, filename, staging, table, name, options)
        # An upload: copied, sealed, into the staging first (still cut off at the cap).
        counted = SourceBytes(handle, head=head, limit=options.max_bytes, file=filename)
        with staging.spooled(counted) as spool:  # type: ignore[arg-type]
            return _stage_random_access(spool, kind, filename, staging, table, name, options)


def _stage_random_access(
    handle: BinaryIO,
    kind: str,
    filename: str,
    staging: Staging,
    table: str | None,
    name: str,
    options: FileOptions,
) -> list[StagedTable]:
    """A workbook or a Parquet file, from a stream that can seek."""
    if kind == "xlsx":
        return stage_xlsx(handle, filename=filename, staging=staging, table=table, options=options)
    return [stage_parquet(handle, filename=filename, staging=staging, table=name)]
