"""The SQL checker: one SELECT over the dataset's tables, aggregated, and nothing else.

Every node of the parsed statement must be on an allowlist, every column must
resolve to a column of the job's view, and the output must be aggregated. What
cannot be analysed is rejected (fail closed). A rejection names the rule, the
column or construct, and where it stands in the query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from datasets.manifest import Column, ColumnClass, Manifest, Masking, Table
from policies.decision import Decision, Finding

Mode = Literal["dp", "masked"]
DIALECT = "duckdb"
MAX_SQL_CHARS = 20_000


def _classes(*names: str) -> frozenset[type[exp.Expr]]:
    return frozenset(getattr(exp, n) for n in names if hasattr(exp, n))


AGGREGATES = _classes(
    "Count", "Sum", "Avg", "Min", "Max", "Stddev", "StddevSamp", "StddevPop",
    "Variance", "VariancePop",
)  # fmt: skip
EXTREMES = _classes("Min", "Max")
SCALAR_FUNCTIONS = _classes(
    "Round", "Abs", "Cast", "TryCast", "Coalesce", "Year", "Month", "Quarter", "Extract",
    "Floor", "Ceil", "Lower", "Upper", "Greatest", "Least", "Nullif", "DateTrunc",
    "TimestampTrunc", "Case", "If",
)  # fmt: skip
STRUCTURE = _classes(
    "Select", "From", "Table", "TableAlias", "Join", "Where", "Group", "Having", "Order",
    "Ordered", "Limit", "Offset", "Column", "Identifier", "Literal", "Boolean", "Null", "Alias",
    "Paren", "Distinct", "And", "Or", "Not", "EQ", "NEQ", "GT", "GTE", "LT", "LTE", "Add", "Sub",
    "Mul", "Div", "IntDiv", "Mod", "Neg", "Is", "In", "Between", "Like", "ILike", "DataType",
    "DataTypeParam", "Var", "Star", "Tuple", "Interval",
)  # fmt: skip
ALLOWED = AGGREGATES | SCALAR_FUNCTIONS | STRUCTURE
STATEMENTS_NAMED = {
    "Pragma": "PRAGMA",
    "Attach": "ATTACH",
    "Detach": "DETACH",
    "Copy": "COPY",
    "Set": "SET",
    "Install": "INSTALL",
    "Command": "this command",
    "Insert": "INSERT",
    "Update": "UPDATE",
    "Delete": "DELETE",
    "Create": "CREATE",
    "Drop": "DROP",
    "Alter": "ALTER",
    "Use": "USE",
}
KEY_CLASSES = (ColumnClass.PERSON_KEY, ColumnClass.RECORD_KEY)


@dataclass(frozen=True)
class TableRef:
    alias: str
    table: Table


@dataclass(frozen=True)
class CheckedQuery:
    """The decision, and for an allowed query the parsed statement and its tables."""

    decision: Decision
    statement: exp.Select | None = None
    tables: tuple[TableRef, ...] = field(default=())

    @property
    def allowed(self) -> bool:
        return self.decision.allowed


def location_of(node: exp.Expr) -> str | None:
    """'line L, column C' of a node, from the first identifier that carries a position."""
    for candidate in node.walk():
        meta = getattr(candidate, "meta", None) or {}
        if "line" in meta and "col" in meta:
            # sqlglot's col is where the token ends; people want where it starts.
            width = meta.get("end", 0) - meta.get("start", 0)
            return f"line {meta['line']}, column {max(1, meta['col'] - width)}"
    return None


def _name_of(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).upper()
    if isinstance(node, exp.Func):
        return node.sql_name()
    return node.key.upper()


def check_sql(sql: str, manifest: Manifest, *, mode: Mode) -> CheckedQuery:
    """Check one analyst SQL statement against the dataset's manifest."""
    if len(sql) > MAX_SQL_CHARS:
        return CheckedQuery(
            Decision.deny(
                Finding("sql.too_long", f"The query is longer than {MAX_SQL_CHARS} characters.")
            )
        )
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except (ParseError, TokenError) as error:
        return CheckedQuery(Decision.deny(_parse_finding(error)))
    if len(statements) != 1:
        return CheckedQuery(
            Decision.deny(
                Finding(
                    "sql.single_statement",
                    f"Submit exactly one SELECT statement; this has {len(statements)}.",
                )
            )
        )
    statement = statements[0]
    if not isinstance(statement, exp.Select):
        return CheckedQuery(Decision.deny(_statement_finding(statement)))

    findings: list[Finding] = []
    findings += _check_nodes(statement)
    tables, table_findings = _resolve_tables(statement, manifest)
    findings += table_findings
    if not table_findings:
        findings += _check_columns(statement, manifest, tables)
    findings += _check_aggregation(statement, tables)
    if mode == "masked":
        findings += _check_masked(statement)
    # One finding per rule and place is enough for a person to act on.
    unique = list(dict.fromkeys(findings))
    if unique:
        return CheckedQuery(Decision.deny(*unique))
    return CheckedQuery(Decision.allow(), statement, tuple(tables))


def _parse_finding(error: Exception) -> Finding:
    details = getattr(error, "errors", None) or []
    location = None
    if details:
        first = details[0]
        if first.get("line") is not None:
            location = f"line {first['line']}, column {first.get('col')}"
    return Finding(
        "sql.parse",
        "The query is not valid SQL" + (f" near {location}." if location else "."),
        location,
    )


def _statement_finding(statement: exp.Expr) -> Finding:
    kind = type(statement).__name__
    if kind in STATEMENTS_NAMED:
        return Finding(
            "sql.statement_not_allowed",
            f"{STATEMENTS_NAMED[kind]} statements are not allowed; submit one SELECT.",
        )
    if isinstance(statement, exp.SetOperation):
        return Finding(
            "sql.unsupported",
            f"{statement.key.upper()} of several SELECTs is not supported yet; submit one SELECT.",
        )
    return Finding("sql.select_only", "Only a single SELECT statement is allowed.")


def _check_nodes(statement: exp.Select) -> list[Finding]:
    findings = []
    for node in statement.walk():
        if isinstance(node, exp.Star) and not isinstance(node.parent, exp.Count | exp.Select):
            findings.append(
                Finding(
                    "sql.star",
                    "* is allowed only in COUNT(*).",
                    location_of(node.parent or node),
                )
            )
        if type(node) in ALLOWED:
            if isinstance(node, exp.Select) and node is not statement:
                findings.append(_subquery_finding(node))
            continue
        if isinstance(node, exp.Window):
            findings.append(
                Finding(
                    "sql.window_not_allowed",
                    "Window functions (OVER ...) return one value per row and are not allowed.",
                    location_of(node),
                )
            )
        elif isinstance(node, exp.With | exp.CTE | exp.Subquery | exp.SetOperation):
            findings.append(_subquery_finding(node))
        elif isinstance(node, exp.Func):
            findings.append(
                Finding(
                    "sql.function_not_allowed",
                    f"The function {_name_of(node)} is not on the allowlist.",
                    location_of(node),
                )
            )
        else:
            findings.append(
                Finding(
                    "sql.construct_not_allowed",
                    f"The construct {node.key.upper()} is not allowed here.",
                    location_of(node),
                )
            )
    return findings


def _subquery_finding(node: exp.Expr) -> Finding:
    return Finding(
        "sql.unsupported",
        "Subqueries, CTEs (WITH) and set operations are not supported yet.",
        location_of(node),
    )


def _resolve_tables(
    statement: exp.Select, manifest: Manifest
) -> tuple[list[TableRef], list[Finding]]:
    refs: list[TableRef] = []
    findings: list[Finding] = []
    for node in statement.find_all(exp.Table):
        if not isinstance(node.this, exp.Identifier):
            findings.append(
                Finding(
                    "sql.table_function",
                    "Table functions and file reads are not allowed; "
                    f"query the tables of {manifest.name}: {', '.join(manifest.table_names)}.",
                    location_of(node),
                )
            )
            continue
        table = manifest.table(node.name)
        if node.args.get("db") or node.args.get("catalog") or table is None:
            findings.append(
                Finding(
                    "sql.unknown_table",
                    f"{node.sql(dialect=DIALECT)} is not a table of {manifest.name}; "
                    f"its tables are {', '.join(manifest.table_names)}.",
                    location_of(node),
                )
            )
            continue
        alias = (node.alias or node.name).lower()
        if any(ref.alias == alias for ref in refs):
            findings.append(
                Finding(
                    "sql.duplicate_alias",
                    f"The name {alias} is used for two tables; give each an alias.",
                    location_of(node),
                )
            )
            continue
        refs.append(TableRef(alias, table))
    if not refs and not findings:
        findings.append(Finding("sql.no_table", "The query reads no table of the dataset."))
    return refs, findings


def _forbidden_columns(manifest: Manifest) -> dict[str, Column]:
    return {c.name: c for t in manifest.tables for c in t.columns if c.forbidden}


def _check_columns(
    statement: exp.Select, manifest: Manifest, tables: list[TableRef]
) -> list[Finding]:
    findings = []
    forbidden = _forbidden_columns(manifest)
    output_aliases = {p.alias.lower() for p in statement.expressions if p.alias}
    by_alias = {ref.alias: ref.table for ref in tables}
    for node in statement.find_all(exp.Column):
        name = node.name.lower()
        where = location_of(node)
        if name in forbidden:
            findings.append(
                Finding(
                    "column.forbidden",
                    f"The column {name} ({forbidden[name].description}) is on the negative list "
                    "(负面清单) and may not appear anywhere in a query.",
                    where,
                )
            )
            continue
        qualifier = node.table.lower() if node.table else None
        if node.args.get("db") or node.args.get("catalog"):
            findings.append(
                Finding("column.unknown", f"{node.sql(dialect=DIALECT)} is not resolvable.", where)
            )
            continue
        if qualifier is not None:
            if qualifier not in by_alias:
                findings.append(
                    Finding(
                        "column.unknown",
                        f"{qualifier}.{name}: {qualifier} is not a table in this query.",
                        where,
                    )
                )
                continue
            candidates = [by_alias[qualifier]]
        else:
            candidates = list(by_alias.values())
        holders = [t for t in candidates if t.view_column(name) is not None]
        if len(holders) == 1:
            continue
        if len(holders) > 1:
            findings.append(
                Finding(
                    "column.ambiguous",
                    f"The column {name} is in several tables of this query; qualify it "
                    f"({', '.join(sorted(r.alias for r in tables if r.table in holders))}).",
                    where,
                )
            )
            continue
        raw = next((t.column(name) for t in candidates if t.column(name) is not None), None)
        if raw is not None and raw.masking is Masking.YEAR:
            findings.append(
                Finding(
                    "column.generalised",
                    f"The column {name} is generalised in the view; use {raw.view_name}.",
                    where,
                    suggestion=f"use {raw.view_name} (or a 5-year band of it) instead of {name}",
                )
            )
        elif qualifier is None and name in output_aliases:
            continue
        else:
            findings.append(
                Finding(
                    "column.unknown",
                    f"No table of this query has a column {name}.",
                    where,
                )
            )
    return findings


def _is_aggregate(node: exp.Expr) -> bool:
    return type(node) in AGGREGATES


def _group_keys(statement: exp.Select) -> list[exp.Expr]:
    group = statement.args.get("group")
    if not group:
        return []
    keys = []
    projections = [p.unalias() for p in statement.expressions]
    aliases = {p.alias.lower(): p.unalias() for p in statement.expressions if p.alias}
    for key in group.expressions:
        if isinstance(key, exp.Literal) and key.is_int and 1 <= int(key.name) <= len(projections):
            keys.append(projections[int(key.name) - 1])
        elif isinstance(key, exp.Column) and not key.table and key.name.lower() in aliases:
            keys.append(aliases[key.name.lower()])
        else:
            keys.append(key)
    return keys


def _key_columns(tables: list[TableRef]) -> set[str]:
    return {c.name for ref in tables for c in ref.table.view_columns() if c.cls in KEY_CLASSES}


def _check_aggregation(statement: exp.Select, tables: list[TableRef]) -> list[Finding]:
    findings = []
    keys = _group_keys(statement)
    key_sql = {k.sql(dialect=DIALECT).lower() for k in keys}
    identifiers = _key_columns(tables)
    for key in keys:
        for column in key.find_all(exp.Column):
            if column.name.lower() in identifiers:
                findings.append(
                    Finding(
                        "output.identifier_group",
                        f"GROUP BY {column.name} would release one row per person or record.",
                        location_of(column),
                    )
                )
    has_aggregate = any(_is_aggregate(n) for p in statement.expressions for n in p.walk())
    if not has_aggregate:
        findings.append(
            Finding(
                "output.no_aggregate",
                "The output must be aggregated: use COUNT, SUM, AVG ... with GROUP BY.",
                location_of(statement),
            )
        )
    for projection in statement.expressions:
        inner = projection.unalias()
        if isinstance(inner, exp.Star):
            findings.append(
                Finding(
                    "output.not_aggregated",
                    "SELECT * returns rows; select aggregates and GROUP BY keys.",
                    location_of(projection),
                )
            )
            continue
        if inner.sql(dialect=DIALECT).lower() in key_sql:
            continue
        for column in _columns_outside_aggregates(inner):
            if column.sql(dialect=DIALECT).lower() not in key_sql:
                findings.append(
                    Finding(
                        "output.not_aggregated",
                        f"The output column {projection.alias_or_name} uses {column.name} "
                        "outside an aggregate; it must be an aggregate or a GROUP BY key.",
                        location_of(column),
                    )
                )
    return findings


def _columns_outside_aggregates(node: exp.Expr) -> list[exp.Column]:
    if _is_aggregate(node):
        return []
    if isinstance(node, exp.Column):
        return [node]
    found = []
    for child in node.iter_expressions():
        found += _columns_outside_aggregates(child)
    return found


def _check_masked(statement: exp.Select) -> list[Finding]:
    return [
        Finding(
            "masked.min_max",
            f"{_name_of(node)} releases one person's exact value; not allowed in masked mode.",
            location_of(node),
            suggestion="use AVG, a percentile band or dp mode",
        )
        for node in statement.walk()
        if type(node) in EXTREMES
    ]
