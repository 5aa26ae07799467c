"""What every request must be before any view sees it: its path and query string hold no
NUL character, and an ``<int:...>`` path parameter is a row id that can exist."""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from werkzeug.routing import IntegerConverter, Map

from sandbox.errors import InvalidRequest

# PostgreSQL's integer: the largest row id there can be.
LARGEST_ROW_ID = 2**31 - 1


class RowId(IntegerConverter):
    """``<int:...>`` in every route: a whole number up to the largest row id, so that a
    larger one is answered 404 (no such row) instead of overflowing the database driver."""

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", LARGEST_ROW_ID)
        super().__init__(map, *args, **kwargs)


def init_app(app: Flask) -> None:
    """Call before any route is added: the converter is read as each rule is compiled."""
    app.url_map.converters["int"] = RowId
    app.before_request(refuse_nul)


def refuse_nul() -> None:
    """No text column of PostgreSQL can hold NUL: a name or filter with one names nothing,
    and is refused here rather than by the database driver (a 500)."""
    query = request.query_string
    if "\x00" in request.path or b"%00" in query or b"\x00" in query:
        raise InvalidRequest(
            "The address may not hold the NUL character (%00).", rule="request.nul"
        )
