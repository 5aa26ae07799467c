"""The datasets package's exceptions; every message is meant for people."""

from __future__ import annotations


class DatasetError(Exception):
    """Base of every error raised by the datasets package."""


class StorageError(DatasetError):
    """A stored dataset is missing, unreadable or fails authentication."""


class ViewError(DatasetError):
    """A job's view cannot be built as asked (unknown table, missing column, no consent data)."""
