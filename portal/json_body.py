"""The JSON body of an API request and its text fields, read alike by every API module."""

from __future__ import annotations

import json
import math
from typing import Any

from flask import request

from sandbox.errors import InvalidRequest

# Numbers any JSON reader agrees on (I-JSON, RFC 7493): Python's reader would also take
# NaN, Infinity and integers of any size, which no column, timedelta or budget can hold.
LARGEST_INTEGER = 2**53 - 1
NOT_A_NUMBER = "Numbers in the request body must be finite, and whole ones within ±2^53."


def json_object() -> dict[str, Any]:
    body = _strict_json() if request.is_json else None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        nul = _holds_nul(body)
    except RecursionError as error:
        raise InvalidRequest("The request body is nested too deeply.", rule="body.depth") from error
    if nul:
        # No PostgreSQL text column can hold it: refused here, not by the driver (a 500).
        raise InvalidRequest(
            "Text in the request body may not hold the NUL character (\\u0000).",
            rule="body.nul",
        )
    return body


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


def _strict_json() -> Any:
    try:
        return json.loads(
            request.get_data(cache=True),
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except (ValueError, RecursionError):  # not JSON (UnicodeDecodeError is a ValueError)
        return None


def _refuse_constant(name: str) -> Any:
    raise InvalidRequest(NOT_A_NUMBER, rule="body.number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidRequest(NOT_A_NUMBER, rule="body.number")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > len(str(LARGEST_INTEGER)) or abs(int(text)) > LARGEST_INTEGER:
        raise InvalidRequest(NOT_A_NUMBER, rule="body.number")
    return int(text)


def text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string.", field=name)
    return value


def optional_text(body: dict[str, Any], name: str) -> str | None:
    return None if body.get(name) is None else text(body, name)
