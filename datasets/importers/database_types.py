"""Arrow types for the columns of a PostgreSQL or MySQL/MariaDB result, and its rows as batches.

A column's type comes from the driver's description of the result (PostgreSQL
type OIDs from psycopg, MySQL field types from PyMySQL), so a query's columns
are typed as the database types them, before any row is seen. Where the
description does not tell (MySQL sends text and binary strings alike), the
first batch's values do. Types with no Arrow counterpart (JSON, UUID, arrays,
enums) are staged as text.

* A decimal with a declared precision stays a decimal; PostgreSQL's ``numeric``
  without one becomes float64, since its scale may change from row to row.
* MySQL's BOOLEAN is a TINYINT(1), and stays an integer: the description does
  not tell it from a small number.
* MySQL's zero dates (``0000-00-00``), which no calendar holds and PyMySQL
  returns as text, become null.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Literal

import pyarrow as pa

from datasets.errors import SourceError

Backend = Literal["postgresql", "mysql"]

_POSTGRES: dict[int, pa.DataType] = {
    16: pa.bool_(),
    17: pa.binary(),
    18: pa.string(),  # "char"
    19: pa.string(),  # name
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    25: pa.string(),
    26: pa.int64(),  # oid
    700: pa.float32(),
    701: pa.float64(),
    1042: pa.string(),  # char(n)
    1043: pa.string(),  # varchar
    1082: pa.date32(),
    1083: pa.time64("us"),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
    1186: pa.duration("us"),  # interval
}
_POSTGRES_NUMERIC = 1700

# PyMySQL's FIELD_TYPE codes.
_MYSQL: dict[int, pa.DataType] = {
    1: pa.int64(),  # TINYINT: signed or not, the description does not say
    2: pa.int64(),
    3: pa.int64(),
    4: pa.float32(),
    5: pa.float64(),
    6: pa.string(),  # NULL
    7: pa.timestamp("us"),
    8: pa.int64(),
    9: pa.int64(),
    10: pa.date32(),
    11: pa.duration("us"),  # TIME may be negative or past 24 hours
    12: pa.timestamp("us"),
    13: pa.int64(),  # YEAR
    14: pa.date32(),
    16: pa.binary(),  # BIT
    245: pa.string(),  # JSON
    247: pa.string(),  # ENUM
    248: pa.string(),  # SET
    255: pa.binary(),  # GEOMETRY
}
_MYSQL_DECIMALS = (0, 246)
# VARCHAR, the BLOB family, VAR_STRING, STRING: text or bytes by their character set.
_MYSQL_STRINGS = (15, 249, 250, 251, 252, 253, 254)
_TEMPORAL = (pa.types.is_timestamp, pa.types.is_date)


def declared_types(
    backend: Backend, description: Sequence[Sequence[Any]]
) -> list[pa.DataType | None]:
    """Each column's Arrow type from the driver's description (None: decided by its values)."""
    return [
        _postgres_type(column) if backend == "postgresql" else _mysql_type(column)
        for column in description
    ]


def _postgres_type(column: Sequence[Any]) -> pa.DataType:
    code, precision, scale = column[1], column[4], column[5]
    if code == _POSTGRES_NUMERIC:
        return _decimal(precision, scale) if precision else pa.float64()
    return _POSTGRES.get(code, pa.string())


def _mysql_type(column: Sequence[Any]) -> pa.DataType | None:
    code, length, scale = column[1], column[4], column[5]
    if code in _MYSQL_DECIMALS:
        # PyMySQL gives the display length (digits, sign and point), not the precision;
        # at least the precision, so every value fits.
        return _decimal(length, scale)
    if code in _MYSQL_STRINGS:
        return None
    return _MYSQL.get(code, pa.string())


def _decimal(precision: int | None, scale: int | None) -> pa.DataType:
    digits, places = int(precision or 0), int(scale or 0)
    if 0 < digits <= 38:
        return pa.decimal128(digits, places)
    if 0 < digits <= 76:
        return pa.decimal256(digits, places)
    return pa.float64()


def settled_types(
    declared: list[pa.DataType | None], rows: Sequence[Sequence[Any]]
) -> list[pa.DataType]:
    """The declared types, with each undecided one taken from its first non-null value."""
    settled = []
    for index, kind in enumerate(declared):
        if kind is None:
            value = next((row[index] for row in rows if row[index] is not None), None)
            kind = pa.binary() if isinstance(value, (bytes, bytearray, memoryview)) else pa.string()
        settled.append(kind)
    return settled


def to_batch(
    rows: Sequence[Sequence[Any]], schema: pa.Schema, *, database: str, first_row: int
) -> pa.RecordBatch:
    """``rows`` as one batch of ``schema``; a value its column's type cannot hold is refused."""
    arrays = []
    # Columns at once (one transposition), and Arrow's own conversion first: the
    # per-value converters run only for a column Arrow cannot take as it comes.
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    for values, field in zip(columns, schema, strict=True):
        convert = _converter(field.type)
        try:
            try:
                arrays.append(pa.array(values, type=field.type))
                continue
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                if convert is None:
                    raise
            converted = [None if value is None else convert(value) for value in values]
            arrays.append(pa.array(converted, type=field.type))
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            raise SourceError(
                "import.column_type",
                f"a value between rows {first_row} and {first_row + len(rows) - 1} "
                f"does not fit the column's type {field.type}",
                file=database,
                column=field.name,
            ) from None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _converter(kind: pa.DataType) -> Callable[[Any], Any] | None:
    if pa.types.is_string(kind):
        return _text
    if pa.types.is_binary(kind):
        return bytes
    if pa.types.is_floating(kind):
        return float  # numeric without a precision comes as Decimal
    if any(test(kind) for test in _TEMPORAL):
        return _date_or_null
    return None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        # A text column whose first batch was all null, now holding bytes: refused
        # by the type check rather than decoded by a guess.
        raise TypeError("bytes in a text column")
    return str(value)


def _date_or_null(value: Any) -> Any:
    return None if isinstance(value, str) else value
