"""Whether an owner's query is one SELECT that neither writes nor locks.

Fails closed: a query sqlglot cannot read is refused. This guards against
mistakes, not against the owner (it is their database and their credentials);
the query also runs in a read-only transaction where the database has one.
"""

from __future__ import annotations

from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from datasets.errors import SourceError

Dialect = Literal["postgres", "mysql"]

# Nodes that write, define, lock or reach outside the query's result: a CTE may
# hold a DELETE … RETURNING, and SELECT … INTO creates a table.
_FORBIDDEN = (exp.DML, exp.DDL, exp.Into, exp.Lock, exp.Command, exp.Merge)


def check_single_select(query: str, *, dialect: Dialect, database: str) -> None:
    """Refuse ``query`` unless it is a single SELECT (``import.not_select``)."""
    try:
        statements = [s for s in sqlglot.parse(query, read=dialect) if s is not None]
    except SqlglotError:
        raise _not_select(database, "the query cannot be read as a SELECT") from None
    if len(statements) != 1:
        raise _not_select(database, f"the query holds {len(statements)} statements, not one")
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        raise _not_select(database, f"the query is a {statement.key.upper()} statement")
    forbidden = next((node for node in statement.walk() if isinstance(node, _FORBIDDEN)), None)
    if forbidden is not None:
        raise _not_select(database, f"the query holds a {forbidden.key.upper()} clause")


def _not_select(database: str, why: str) -> SourceError:
    return SourceError("import.not_select", f"{why}: only a single SELECT is run", file=database)
