"""What an owner may say about a source: a file's encoding and delimiter, limits."""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1 << 30


@dataclass(frozen=True)
class FileOptions:
    """How to read an owner's file; ``None`` means "detect it"."""

    # A Python codec name ("gbk", "gb18030", "utf-8"); None tries UTF-8, then GB18030.
    encoding: str | None = None
    # One of , \t ; | (or any one character); None sniffs it from the first lines.
    delimiter: str | None = None
    # Checked while the file is read, so a stream of unknown length is cut off early.
    max_bytes: int = 2 * GIB
    # False: the first row is data and the columns are named col_1, col_2, …
    header: bool = True


@dataclass(frozen=True)
class DatabaseOptions:
    """How to read an owner's database."""

    # Seconds to wait for the server before it counts as unreachable.
    connect_timeout: int = 5
    # Rows fetched from the server-side cursor, and staged, at a time.
    batch_rows: int = 50_000
