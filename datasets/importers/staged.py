"""What an import staged: one table's name, size, columns and where it came from."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from datasets.staging import Staging


@dataclass(frozen=True)
class StagedTable:
    name: str
    rows: int
    # (column name, Arrow type as text), in the table's order.
    columns: tuple[tuple[str, str], ...]
    # What was read: file name, format, detected encoding and delimiter, sheet, or the
    # database's host, database and table or query. Never a password.
    source: dict[str, Any]


def staged_table(name: str, schema: pa.Schema, rows: int, source: dict[str, Any]) -> StagedTable:
    columns = tuple((field.name, str(field.type)) for field in schema)
    return StagedTable(name=name, rows=rows, columns=columns, source=source)


@contextmanager
def all_or_nothing(staging: Staging) -> Iterator[list[str]]:
    """Names the tables an import stages; if the import fails, they are removed again.

    Each table's own writer already removes a half-written file; this also removes
    the tables that were complete, so a failed import leaves nothing behind.
    """
    created: list[str] = []
    try:
        yield created
    except BaseException:
        for table in created:
            if table in staging.tables():
                staging.remove_table(table)
        raise
