"""A released result's tables as CSV: what the API serves and the certificate hashes."""

from __future__ import annotations

import csv
import io
from typing import Any

from sandbox.errors import InvalidRequest


def result_csv(result: dict[str, Any], *, table: str | None) -> str:
    """One released table as CSV (the first one unless ``table`` names another)."""
    tables = result["tables"]
    chosen = next((t for t in tables if table in (None, t["name"])), None)
    if chosen is None:
        names = ", ".join(t["name"] for t in tables)
        raise InvalidRequest(f"table must be one of {names}.", field="table")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(chosen["columns"])
    writer.writerows(chosen["rows"])
    return buffer.getvalue()
