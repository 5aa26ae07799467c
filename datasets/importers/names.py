"""Table names made from file and sheet names, and column names from header rows."""

from __future__ import annotations

import re
from collections.abc import Sequence

from datasets.errors import SourceError

_NOT_NAME = re.compile(r"[^a-z0-9]+")
MAX_TABLE_NAME = 63


def table_name_from(text: str, fallback: str) -> str:
    """``text`` as a table name (``Visits 2024`` → ``visits_2024``), else ``fallback``.

    Letters outside a-z (Chinese, for one) cannot be part of a table name, so a name
    made only of them falls back; the original is kept in the staged table's source.
    """
    name = _NOT_NAME.sub("_", text.lower()).strip("_")
    if not name:
        return fallback
    if not name[0].isalpha():
        name = f"t_{name}"
    return name[:MAX_TABLE_NAME].rstrip("_")


def column_names(header: Sequence[object], *, file: str, row: int = 1) -> list[str]:
    """The header's names, stripped; a blank one becomes ``col_N`` (N its position from 1).

    Blank headers are common (a trailing delimiter, an unlabelled index column), so
    they are named rather than refused. Two columns of one name are refused: which
    one a later rule or query meant could not be told.
    """
    names = []
    for position, value in enumerate(header, start=1):
        name = "" if value is None else str(value).strip()
        names.append(name or f"col_{position}")
    seen: set[str] = set()
    for position, name in enumerate(names, start=1):
        if name in seen:
            raise SourceError(
                "import.header",
                f"column {position} has the same name as an earlier column",
                file=file,
                row=row,
                column=name,
            )
        seen.add(name)
    return names


def numbered_names(count: int) -> list[str]:
    """Names for a file without a header row."""
    return [f"col_{position}" for position in range(1, count + 1)]
