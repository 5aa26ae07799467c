"""An owner's PostgreSQL or MySQL/MariaDB table, or query, streamed into a staged table.

PostgreSQL writes the rows itself as CSV (``COPY (…) TO STDOUT``), read like an
owner's CSV file: every column staged as text, typed later by the owner's
definition. MySQL's rows come through an unbuffered (server-side) cursor a batch
at a time, with their native types. Either way a table of any size is staged in
bounded memory. The transaction is read-only (PostgreSQL's ``READ ONLY``,
MySQL's ``SET SESSION TRANSACTION READ ONLY``) and a query must be a single
SELECT besides.

Nothing the database says reaches a message: its error text may quote a value
(``invalid input syntax for type integer: "3204…"``), so an error names only
its class and code (SQLSTATE, or MySQL's error number). The URL's password
appears nowhere: messages and ``source`` name the database by user, host, port
and name.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from sqlalchemy import create_engine, literal_column, select
from sqlalchemy import table as table_clause
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from datasets.errors import SourceError
from datasets.importers.database_types import Backend, declared_types, settled_types, to_batch
from datasets.importers.options import DatabaseOptions
from datasets.importers.select_check import Dialect, check_single_select
from datasets.importers.staged import StagedTable, staged_table
from datasets.staging import Staging, check_table_name

_DRIVERS: dict[str, tuple[Backend, str]] = {
    "postgresql": ("postgresql", "postgresql+psycopg"),
    "postgresql+psycopg": ("postgresql", "postgresql+psycopg"),
    "postgres": ("postgresql", "postgresql+psycopg"),
    "mysql": ("mysql", "mysql+pymysql"),
    "mysql+pymysql": ("mysql", "mysql+pymysql"),
    "mariadb": ("mysql", "mysql+pymysql"),
    "mariadb+pymysql": ("mysql", "mysql+pymysql"),
}
# Error codes that mean "who you are was refused", not "nothing answered".
_LOGIN_SQLSTATE_CLASS = "28"
_MYSQL_LOGIN_ERRORS = (1044, 1045, 1698)
_APPLICATION = "open-data-sandbox import"


@dataclass(frozen=True)
class _Database:
    url: URL
    backend: Backend
    # user@host:port/database, for messages: never the password or the URL's options.
    label: str


def stage_database(
    url: str,
    *,
    staging: Staging,
    name: str,
    table: str | None = None,
    query: str | None = None,
    options: DatabaseOptions = DatabaseOptions(),  # noqa: B008 - frozen, so shared safely
) -> StagedTable:
    """Stage ``table`` (``name`` or ``schema.name``) or the SELECT ``query`` as table ``name``."""
    check_table_name(name)
    database = _database(url)
    if (table is None) == (query is None):
        raise SourceError(
            "import.table_or_query", "give either a table or a query", file=database.label
        )
    if query is not None:
        dialect: Dialect = "postgres" if database.backend == "postgresql" else "mysql"
        check_single_select(query, dialect=dialect, database=database.label)
    source: dict[str, Any] = {
        "format": database.backend,
        "host": database.url.host,
        "port": database.url.port,
        "database": database.url.database,
        "user": database.url.username,
        **({"table": table} if table is not None else {"query": query}),
    }
    engine = _engine(database, options)
    try:
        connection = _connect(engine, database)
        try:
            if database.backend == "postgresql":
                schema, rows = _stage_copy(connection, database, staging, name, table, query)
            else:
                schema, rows = _stage_rows(
                    connection, database, staging, name, table, query, options
                )
        except BaseException:
            # Closing an unbuffered MySQL cursor reads what is left of the result first.
            connection.invalidate()
            raise
        finally:
            connection.close()
    finally:
        engine.dispose()
    return staged_table(name, schema, rows, source)


def _database(url: str) -> _Database:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        raise SourceError("import.url", "the database URL cannot be read") from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise SourceError(
            "import.url",
            f"{parsed.drivername!r} databases are not read: give a postgresql:// or mysql:// URL",
        )
    backend, drivername = driver
    shown = URL.create(
        backend,
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
    )
    return _Database(parsed.set(drivername=drivername), backend, shown.render_as_string())


def _engine(database: _Database, options: DatabaseOptions) -> Engine:
    connect_args: dict[str, Any] = {"connect_timeout": options.connect_timeout}
    if database.backend == "postgresql":
        connect_args["application_name"] = _APPLICATION
    elif "charset" not in database.url.query:
        connect_args["charset"] = "utf8mb4"  # Chinese text, whatever the server's default
    try:
        return create_engine(
            database.url, poolclass=NullPool, connect_args=connect_args, hide_parameters=True
        )
    except (ArgumentError, SQLAlchemyError, ImportError, TypeError, ValueError) as error:
        raise SourceError(
            "import.url",
            f"the database URL cannot be used ({type(error).__name__})",
            file=database.label,
        ) from None


def _connect(engine: Engine, database: _Database) -> Connection:
    try:
        connection = engine.connect()
    except (SQLAlchemyError, OSError) as error:
        code = error_code(error)
        if _is_login_refusal(error):
            raise SourceError(
                "import.login_refused",
                f"the database refused the login ({code})",
                file=database.label,
            ) from None
        raise SourceError(
            "import.unreachable", f"the database cannot be reached ({code})", file=database.label
        ) from None
    try:
        if database.backend == "postgresql":
            # Set before the transaction begins: psycopg then opens it READ ONLY.
            return connection.execution_options(postgresql_readonly=True)
        connection.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")
        connection.rollback()  # the next statement starts a transaction of its own
        return connection
    except SQLAlchemyError as error:
        connection.invalidate()
        connection.close()
        raise _refused(database, error) from None


def _stage_rows(
    connection: Connection,
    database: _Database,
    staging: Staging,
    name: str,
    table: str | None,
    query: str | None,
    options: DatabaseOptions,
) -> tuple[pa.Schema, int]:
    streaming = connection.execution_options(yield_per=options.batch_rows, no_parameters=True)
    try:
        if query is not None:
            result = streaming.exec_driver_sql(query)
        else:
            result = streaming.execute(
                select(literal_column("*")).select_from(_table(table, database))
            )
        names = list(result.keys())
        declared = declared_types(database.backend, result.cursor.description)
        partitions = result.partitions()
        first = next(partitions, None)
        if first is None:
            what = "table" if table is not None else "query"
            raise SourceError("import.empty", f"the {what} has no rows", file=database.label)
        _check_unique(names, database)
        schema = pa.schema(list(zip(names, settled_types(declared, first), strict=True)))
        with staging.table_writer(name, schema) as writer:
            writer.write(to_batch(first, schema, database=database.label, first_row=1))
            for part in partitions:
                writer.write(
                    to_batch(part, schema, database=database.label, first_row=writer.rows + 1)
                )
            return schema, writer.rows
    except SQLAlchemyError as error:
        raise _refused(database, error) from None


def _stage_copy(
    connection: Connection,
    database: _Database,
    staging: Staging,
    name: str,
    table: str | None,
    query: str | None,
) -> tuple[pa.Schema, int]:
    """PostgreSQL: the rows as CSV from ``COPY (…) TO STDOUT``, read like an owner's CSV
    file (every column as text, the types inferred by the profiler): the server writes
    the CSV, so no Python object is made per value. Same read-only transaction."""
    from datasets.importers.csv_file import stage_csv
    from datasets.importers.options import FileOptions

    try:
        if query is None:
            statement: Any = select(literal_column("*")).select_from(_table(table, database))
            query = str(statement.compile(dialect=connection.dialect))
        connection.exec_driver_sql("SET LOCAL client_encoding TO 'UTF8'")
        raw = connection.connection.driver_connection
        with raw.cursor() as cursor:  # type: ignore[union-attr]
            with cursor.copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER true)") as copy:
                staged = stage_csv(
                    _CopyStream(copy),  # type: ignore[arg-type]
                    head=b"",
                    filename=database.label,
                    staging=staging,
                    table=name,
                    options=FileOptions(encoding="utf-8", delimiter=",", max_bytes=1 << 62),
                )
    except SourceError:
        raise
    except Exception as error:  # psycopg's own errors (the COPY runs past SQLAlchemy)
        if type(error).__module__.startswith(("psycopg", "sqlalchemy")):
            raise _refused(database, error) from None
        raise
    return staging.schema(staged.name), staged.rows


class _CopyStream(io.RawIOBase):
    """The chunks of a ``COPY … TO STDOUT`` as a readable byte stream."""

    def __init__(self, copy: Any) -> None:
        self._chunks = iter(copy)
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        # PostgreSQL sends a message a row: gather rows until the reader's buffer is full.
        view = memoryview(buffer).cast("B")
        parts, size = [self._rest] if self._rest else [], len(self._rest)
        while size < len(view):
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            parts.append(chunk)
            size += len(chunk)
        data = b"".join(parts)
        count = min(len(view), len(data))
        view[:count] = data[:count]
        self._rest = data[count:]
        return count


def _table(table: str | None, database: _Database) -> Any:
    parts = (table or "").split(".")
    if len(parts) > 2 or not all(part.strip() for part in parts):
        raise SourceError(
            "import.table_name",
            "the table must be given as name or schema.name",
            file=database.label,
        )
    return table_clause(parts[-1], schema=parts[0] if len(parts) == 2 else None)


def _check_unique(names: list[str], database: _Database) -> None:
    seen: set[str] = set()
    for position, column in enumerate(names, start=1):
        if column in seen:
            raise SourceError(
                "import.header",
                f"column {position} has the same name as an earlier column: give it an alias",
                file=database.label,
                column=column,
            )
        seen.add(column)


def _refused(database: _Database, error: BaseException) -> SourceError:
    return SourceError(
        "import.query_refused",
        f"the database refused the query: {error_code(error)}",
        file=database.label,
    )


def error_code(error: BaseException) -> str:
    """The error's class and code (SQLSTATE or MySQL error number), never its text."""
    original = getattr(error, "orig", None) or error
    parts = []
    sqlstate = getattr(original, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        parts.append(f"SQLSTATE {sqlstate}")
    arguments = getattr(original, "args", ())
    if arguments and isinstance(arguments[0], int):  # MySQL's error number
        parts.append(f"error {arguments[0]}")
    return ", ".join([*parts, type(original).__name__])


def _is_login_refusal(error: BaseException) -> bool:
    original = getattr(error, "orig", None) or error
    sqlstate = getattr(original, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(_LOGIN_SQLSTATE_CLASS):
        return True
    arguments: tuple[Any, ...] = getattr(original, "args", ())
    return bool(arguments) and arguments[0] in _MYSQL_LOGIN_ERRORS
