"""The datasets package's exceptions; every message is meant for people."""

from __future__ import annotations


class DatasetError(Exception):
    """Base of every error raised by the datasets package."""


class StorageError(DatasetError):
    """A stored dataset is missing, unreadable or fails authentication."""


class ViewError(DatasetError):
    """A job's view cannot be built as asked (unknown table, missing column, no consent data)."""


class StagingError(DatasetError):
    """An import's staged table cannot be written or read, or fails authentication."""


class SourceError(DatasetError):
    """An owner's file or database cannot be imported as it is.

    ``rule`` is a stable id (``import.malformed_row``, ``import.encoding``, …) that
    the portal words in the reader's language; ``file`` names the file or the
    database (never with its password), ``row`` and ``column`` say where. The
    message is English and never holds a data value, only names and numbers.
    """

    def __init__(
        self,
        rule: str,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        where = ", ".join(
            part
            for part in (
                file,
                f"row {row}" if row is not None else None,
                f"column {column!r}" if column is not None else None,
            )
            if part
        )
        super().__init__(f"{where}: {message} ({rule})" if where else f"{message} ({rule})")
        self.rule = rule
        self.message = message
        self.file = file
        self.row = row
        self.column = column

    def to_dict(self) -> dict[str, str | int | None]:
        return {
            "rule": self.rule,
            "message": str(self),
            "file": self.file,
            "row": self.row,
            "column": self.column,
        }
