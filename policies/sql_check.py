"""The SQL checker: one query over the dataset's tables, every column resolved, every use allowed.

The statement is parsed with sqlglot, every node must be on an allowlist, and
sqlglot's qualifier resolves every column reference — through aliases, CTEs,
subqueries, set operations, joins and ``*`` — to its source column in the
job's view. Each reference's *use* (join key, inside an aggregate, filter,
GROUP BY key, output) is checked against the column's rule in the owner's
policy. The released output must be aggregated. What cannot be analysed is
rejected (fail closed); each rejection names the rule, the column or
construct, and where it stands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError, SqlglotError, TokenError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, traverse_scope

from datasets.manifest import ColumnClass, Manifest, Masking, Table
from policies.decision import Decision, Finding, template
from policies.policy_file import DatasetPolicy, Use, load_policy

Mode = Literal["dp", "masked"]
DIALECT = "duckdb"
MAX_SQL_CHARS = 20_000


def _classes(*names: str) -> frozenset[type[exp.Expr]]:
    return frozenset(getattr(exp, n) for n in names if hasattr(exp, n))


AGGREGATES = _classes(
    "Count",
    "Sum",
    "Avg",
    "Min",
    "Max",
    "Stddev",
    "StddevSamp",
    "StddevPop",
    "Variance",
    "VariancePop",
    "Median",
    "Quantile",
    "PercentileCont",
    "PercentileDisc",
    "ApproxQuantile",
)
AGGREGATE_NAMES = {
    "Count": "COUNT",
    "Sum": "SUM",
    "Avg": "AVG",
    "Min": "MIN",
    "Max": "MAX",
    "Stddev": "STDDEV",
    "StddevSamp": "STDDEV",
    "StddevPop": "STDDEV",
    "Variance": "VARIANCE",
    "VariancePop": "VARIANCE",
    "Median": "MEDIAN",
    "Quantile": "QUANTILE",
    "PercentileCont": "QUANTILE",
    "PercentileDisc": "QUANTILE",
    "ApproxQuantile": "QUANTILE",
}
# One person's exact value: refused in masked mode (dp mode releases them noisily).
EXTREMES = _classes(
    "Min", "Max", "Median", "Quantile", "PercentileCont", "PercentileDisc", "ApproxQuantile"
)
SCALAR_FUNCTIONS = _classes(
    "Round",
    "Abs",
    "Cast",
    "TryCast",
    "Coalesce",
    "Year",
    "Month",
    "Quarter",
    "Extract",
    "Floor",
    "Ceil",
    "Lower",
    "Upper",
    "Greatest",
    "Least",
    "Nullif",
    "DateTrunc",
    "TimestampTrunc",
    "Case",
    "If",
    "Substring",
    "Left",
    "Right",
    "Length",
    "Trim",
)
STRUCTURE = _classes(
    "Select",
    "From",
    "Table",
    "TableAlias",
    "Join",
    "Where",
    "Group",
    "Having",
    "Order",
    "Ordered",
    "Limit",
    "Offset",
    "Column",
    "Identifier",
    "Literal",
    "Boolean",
    "Null",
    "Alias",
    "Paren",
    "Distinct",
    "And",
    "Or",
    "Not",
    "EQ",
    "NEQ",
    "GT",
    "GTE",
    "LT",
    "LTE",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "IntDiv",
    "Mod",
    "Neg",
    "Is",
    "In",
    "Between",
    "Like",
    "ILike",
    "DataType",
    "DataTypeParam",
    "Var",
    "Star",
    "Tuple",
    "Interval",
    "With",
    "CTE",
    "Subquery",
    "Union",
    "Intersect",
    "Except",
    "Exists",
    "WithinGroup",
)
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
DUCKDB_TYPES = {
    "integer": "BIGINT",
    "float": "DOUBLE",
    "string": "VARCHAR",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "boolean": "BOOLEAN",
}


@dataclass(frozen=True)
class TableRef:
    alias: str
    table: Table


@dataclass(frozen=True)
class CheckedQuery:
    """The decision; for an allowed query also the qualified statement and its base tables."""

    decision: Decision
    statement: exp.Query | None = None
    tables: tuple[TableRef, ...] = field(default=())
    policy_version: str = ""

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    @property
    def is_simple(self) -> bool:
        """One SELECT over base tables: no CTE, subquery or set operation."""
        return (
            isinstance(self.statement, exp.Select)
            and not (self.statement.args.get("with_") or self.statement.args.get("with"))
            and not any(isinstance(n, exp.Subquery) for n in self.statement.walk())
        )


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


@cache
def _default_policy(manifest: Manifest) -> DatasetPolicy:
    return load_policy(manifest)


def check_sql(
    sql: str, manifest: Manifest, *, mode: Mode, policy: DatasetPolicy | None = None
) -> CheckedQuery:
    """Check one analyst SQL statement against the dataset's manifest and policy."""
    policy = policy or _default_policy(manifest)
    if len(sql) > MAX_SQL_CHARS:
        return _deny(
            Finding.of(
                "sql.too_long",
                "The query is longer than %(limit)s characters.",
                limit=MAX_SQL_CHARS,
            )
        )
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except (ParseError, TokenError) as error:
        return _deny(_parse_finding(error))
    if len(statements) != 1:
        return _deny(
            Finding.of(
                "sql.single_statement",
                "Submit exactly one SELECT statement; this has %(count)s.",
                count=len(statements),
            )
        )
    statement = statements[0]
    if not isinstance(statement, exp.Select | exp.SetOperation):
        return _deny(_statement_finding(statement))
    _lowercase_identifiers(statement)

    findings = _check_nodes(statement)
    tables, table_findings = _resolve_tables(statement, manifest)
    findings += table_findings
    findings += _check_raw_names(statement, manifest)
    if mode == "masked":
        findings += _check_masked(statement)
    if findings:
        return _deny(*findings)

    original_outputs = [p.copy() for p in _branches(statement)[0].expressions]
    try:
        qualified = qualify(
            statement,
            schema=_schema(manifest),
            dialect=DIALECT,
            validate_qualify_columns=True,
            quote_identifiers=False,
            expand_stars=True,
        )
    except OptimizeError as error:
        return _deny(_qualify_finding(error, statement, tables))
    except SqlglotError as error:  # anything else it cannot analyse: fail closed
        return _deny(
            Finding.of(
                "sql.unanalysable",
                "The query cannot be analysed: %(error)s.",
                message_id="sql.unanalysable.error",
                error=str(error),
            )
        )
    _restore_output_names(qualified, original_outputs)

    findings += _check_uses(qualified, manifest, policy)
    for branch in _branches(qualified):
        findings += _check_aggregation(branch)
    if findings:
        return _deny(*findings)
    return CheckedQuery(Decision.allow(), qualified, tuple(tables), policy.version)


def _deny(*findings: Finding) -> CheckedQuery:
    # One finding per rule and place is enough for a person to act on.
    return CheckedQuery(Decision.deny(*dict.fromkeys(findings)))


def _branches(statement: exp.Expr) -> list[exp.Select]:
    """The SELECTs whose rows are released: the statement, or each side of a set operation."""
    if isinstance(statement, exp.SetOperation):
        return _branches(statement.this) + _branches(statement.expression)
    if isinstance(statement, exp.Subquery):
        return _branches(statement.this)
    assert isinstance(statement, exp.Select)
    return [statement]


_PLAIN_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def _lowercase_identifiers(statement: exp.Expr) -> None:
    # DuckDB resolves identifiers case-insensitively, quoted or not.
    for identifier in statement.find_all(exp.Identifier):
        name = identifier.name.lower()
        identifier.set("this", name)
        if _PLAIN_NAME.match(name):
            identifier.set("quoted", False)  # "Dept" and dept are one column


def _schema(manifest: Manifest) -> dict[str, object]:
    return {
        t.name: {c.name: DUCKDB_TYPES[c.type.value] for c in t.view_columns()}
        for t in manifest.tables
    }


def _restore_output_names(statement: exp.Query, originals: list[exp.Expr]) -> None:
    """Keep the names DuckDB would give unaliased outputs (qualify invents _col_N)."""
    first = _branches(statement)[0]
    for projection, original in zip(first.expressions, originals, strict=False):
        if not original.alias and not isinstance(original, exp.Column | exp.Star):
            projection.set("alias", exp.to_identifier(original.sql(dialect=DIALECT)))


def _parse_finding(error: Exception) -> Finding:
    details = getattr(error, "errors", None) or []
    location = None
    if details:
        first = details[0]
        if first.get("line") is not None:
            location = f"line {first['line']}, column {first.get('col')}"
    if location is None:
        return Finding("sql.parse", "The query is not valid SQL.")
    return Finding.of(
        "sql.parse",
        "The query is not valid SQL near %(near)s.",
        location,
        message_id="sql.parse.near",
        near=location,
    )


def _statement_finding(statement: exp.Expr) -> Finding:
    kind = type(statement).__name__
    if kind in STATEMENTS_NAMED:
        return Finding.of(
            "sql.statement_not_allowed",
            "%(statement)s statements are not allowed; submit one SELECT.",
            statement=STATEMENTS_NAMED[kind],
        )
    return Finding("sql.select_only", "Only a single SELECT statement is allowed.")


def _check_nodes(statement: exp.Expr) -> list[Finding]:
    findings = []
    for node in statement.walk():
        if isinstance(node, exp.Star) and not isinstance(node.parent, exp.Count | exp.Select):
            where = location_of(node.parent or node)
            findings.append(Finding("sql.star", "* is allowed only in COUNT(*).", where))
        if type(node) in ALLOWED:
            continue
        if isinstance(node, exp.Window):
            findings.append(
                Finding(
                    "sql.window_not_allowed",
                    "Window functions (OVER ...) return one value per row and are not allowed.",
                    location_of(node),
                )
            )
        elif isinstance(node, exp.Func):
            findings.append(
                Finding.of(
                    "sql.function_not_allowed",
                    "The function %(function)s is not on the allowlist.",
                    location_of(node),
                    function=_name_of(node),
                )
            )
        else:
            findings.append(
                Finding.of(
                    "sql.construct_not_allowed",
                    "The construct %(construct)s is not allowed here.",
                    location_of(node),
                    construct=node.key.upper(),
                )
            )
    return findings


def _cte_names(statement: exp.Expr) -> set[str]:
    return {cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)}


def _resolve_tables(
    statement: exp.Expr, manifest: Manifest
) -> tuple[list[TableRef], list[Finding]]:
    refs: list[TableRef] = []
    findings: list[Finding] = []
    ctes = _cte_names(statement)
    for node in statement.find_all(exp.Table):
        if not isinstance(node.this, exp.Identifier):
            findings.append(
                Finding.of(
                    "sql.table_function",
                    "Table functions and file reads are not allowed; "
                    "query the tables of %(dataset)s: %(tables)s.",
                    location_of(node),
                    dataset=manifest.name,
                    tables=", ".join(manifest.table_names),
                )
            )
            continue
        qualified = node.args.get("db") or node.args.get("catalog")
        if not qualified and node.name.lower() in ctes:
            continue
        table = manifest.table(node.name)
        if qualified or table is None:
            findings.append(
                Finding.of(
                    "sql.unknown_table",
                    "%(table)s is not a table of %(dataset)s; its tables are %(tables)s.",
                    location_of(node),
                    table=node.sql(dialect=DIALECT),
                    dataset=manifest.name,
                    tables=", ".join(manifest.table_names),
                )
            )
            continue
        refs.append(TableRef((node.alias or node.name).lower(), table))
    if not refs and not findings:
        findings.append(Finding("sql.no_table", "The query reads no table of the dataset."))
    return refs, findings


def _check_raw_names(statement: exp.Expr, manifest: Manifest) -> list[Finding]:
    """Negative-list and generalised columns, by name, wherever they stand."""
    forbidden = {c.name: c for t in manifest.tables for c in t.columns if c.forbidden}
    generalised = {
        c.name: c for t in manifest.tables for c in t.columns if c.masking is Masking.YEAR
    }
    findings = []
    for node in statement.find_all(exp.Column):
        name = node.name.lower()
        if name in forbidden:
            findings.append(
                Finding.of(
                    "column.forbidden",
                    "The column %(column)s (%(description)s) is on the negative list "
                    "(负面清单) and may not appear anywhere in a query.",
                    location_of(node),
                    column=name,
                    description=forbidden[name].description,
                )
            )
        elif name in generalised:
            view_name = generalised[name].view_name
            findings.append(
                Finding.of(
                    "column.generalised",
                    "The column %(column)s is generalised in the view; use %(view_column)s.",
                    location_of(node),
                    suggestion=f"use {view_name} (or a 5-year band of it) instead of {name}",
                    column=name,
                    view_column=view_name,
                )
            )
        elif node.args.get("db") or node.args.get("catalog"):
            findings.append(
                Finding.of(
                    "column.unknown",
                    "%(column)s is not resolvable.",
                    location_of(node),
                    message_id="column.unknown.unresolvable",
                    column=node.sql(dialect=DIALECT),
                )
            )
    return findings


_UNRESOLVED = re.compile(r"Column '([^']+)' could not be resolved|Unknown column: ([\w.\"]+)")
_AMBIGUOUS = re.compile(r"[Aa]mbiguous column '?([\w.]+)'?")


def _qualify_finding(error: OptimizeError, statement: exp.Expr, tables: list[TableRef]) -> Finding:
    message = str(error)
    unresolved = _UNRESOLVED.search(message)
    raw = (unresolved.group(1) or unresolved.group(2)) if unresolved else None
    name = raw.split(".")[-1].strip('"') if raw else None
    node = next((c for c in statement.find_all(exp.Column) if c.name == name), None)
    where = location_of(node) if node is not None else None
    if unresolved:
        holders = sorted({r.alias for r in tables if name and r.table.view_column(name)})
        if len(holders) > 1:
            return Finding.of(
                "column.ambiguous",
                "The column %(column)s is in several tables of this query; qualify it "
                "(%(tables)s).",
                where,
                message_id="column.ambiguous.tables",
                column=str(name),
                tables=", ".join(holders),
            )
        return Finding.of(
            "column.unknown",
            "No table in scope has a column %(column)s.",
            where,
            column=str(name),
        )
    ambiguous = _AMBIGUOUS.search(message)
    if ambiguous:
        return Finding.of(
            "column.ambiguous",
            "The column %(column)s is in several tables of this query; qualify it.",
            where,
            column=ambiguous.group(1),
        )
    if "mbiguous" in message:
        return Finding(
            "column.ambiguous",
            "A column is in several tables of this query; qualify it.",
            where,
            message_id="column.ambiguous.unnamed",
        )
    return Finding("sql.unanalysable", "The query's columns cannot be resolved.", where)


# --- uses -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaseColumn:
    table: Table
    name: str


def _check_uses(statement: exp.Query, manifest: Manifest, policy: DatasetPolicy) -> list[Finding]:
    findings: list[Finding] = []
    resolver = _Resolver(manifest)
    for scope in traverse_scope(statement):
        for column in scope.columns:
            use, aggregate = _use_of(column, scope)
            if use is None:
                continue  # passed through a derived table: its use is judged where it is used
            where = location_of(column) or location_of(scope.expression)
            for base in resolver.base_columns(column, scope):
                finding = _judge(base, use, aggregate, column, policy, where)
                if finding:
                    findings.append(finding)
    return findings


class _Resolver:
    """Maps a column reference in a scope to the view columns it is computed from."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest

    def base_columns(self, column: exp.Column, scope: Scope) -> list[BaseColumn]:
        source = scope.sources.get(column.table)
        if isinstance(source, exp.Table):
            table = self.manifest.table(source.name)
            return [BaseColumn(table, column.name)] if table else []
        if isinstance(source, Scope):
            branches = _branches(source.expression)
            names = [p.alias_or_name for p in branches[0].expressions]
            if column.name not in names:
                return []
            # A set operation matches columns by position: the first branch names them.
            position = names.index(column.name)
            found: list[BaseColumn] = []
            for branch in branches:
                if position >= len(branch.expressions):
                    continue
                inner = _scope_of(source, branch)
                for ref in branch.expressions[position].find_all(exp.Column):
                    found += self.base_columns(ref, inner)
            return found
        return []


def _scope_of(scope: Scope, select: exp.Select) -> Scope:
    """The scope of one branch of a (possibly nested) set operation."""
    if scope.expression is select:
        return scope
    for child in scope.set_operation_scopes:
        found = _scope_of(child, select)
        if found.expression is select:
            return found
    return scope


def _use_of(column: exp.Column, scope: Scope) -> tuple[Use | None, str | None]:
    """How a column reference is used where it stands in its scope."""
    node: exp.Expr = column
    compared = False  # only the truth of a comparison with literals flows on
    while node.parent is not None and node is not scope.expression:
        parent = node.parent
        if isinstance(parent, COMPARISONS) and _other_operands_literal(parent, node):
            compared = True
        if isinstance(parent, exp.Order) and isinstance(parent.parent, exp.WithinGroup):
            parent = parent.parent.this  # PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY x)
        if type(parent) in AGGREGATES:
            if compared:  # SUM(CASE WHEN icd10 = 'C34' THEN 1 END): a filter inside a count
                return Use.FILTER, None
            return Use.AGGREGATE, AGGREGATE_NAMES[type(parent).__name__]
        if isinstance(parent, exp.Join | exp.Where | exp.Having):
            joined = _is_column_equality(column) or _is_semi_join(column)
            return (Use.JOIN if joined else Use.FILTER), None
        if isinstance(parent, exp.Group):
            return Use.GROUP, None
        if isinstance(parent, exp.Order):
            return Use.OUTPUT, None
        if parent is scope.expression and node in scope.expression.expressions:
            return _projection_use(scope.expression), None
        node = parent
    return Use.OUTPUT, None


COMPARISONS = (
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.In,
    exp.Like,
    exp.ILike,
    exp.Between,
    exp.Is,
)


def _other_operands_literal(comparison: exp.Expr, operand: exp.Expr) -> bool:
    others = [child for child in comparison.iter_expressions() if child is not operand]
    return bool(others) and all(
        isinstance(o, exp.Literal | exp.Null | exp.Boolean | exp.Tuple)
        or (isinstance(o, exp.Neg) and isinstance(o.this, exp.Literal))
        for o in others
    )


def _is_column_equality(column: exp.Column) -> bool:
    parent = column.parent
    while isinstance(parent, exp.Paren):
        parent = parent.parent
    return (
        isinstance(parent, exp.EQ)
        and isinstance(parent.this, exp.Column)
        and isinstance(parent.expression, exp.Column)
    )


def _projection_use(select: exp.Expr) -> Use | None:
    """What a SELECT's own output is for: released, passed to an outer query, or a predicate."""
    node = select
    while isinstance(node.parent, exp.SetOperation):
        node = node.parent
    holder = node.parent
    if holder is None:
        return Use.OUTPUT  # the released result
    if isinstance(holder, exp.CTE):
        return None  # judged where the CTE's columns are used
    if isinstance(holder, exp.Subquery):
        outer = holder.parent
        if isinstance(outer, exp.From | exp.Join):
            return None  # a derived table: judged where its columns are used
        if isinstance(outer, exp.In):
            return Use.JOIN  # key IN (SELECT key ...)
        if isinstance(outer, exp.SetOperation):
            return _projection_use(holder)
    if isinstance(holder, exp.In):
        return Use.JOIN
    return Use.FILTER  # EXISTS, scalar comparisons: the values feed a predicate


def _is_semi_join(column: exp.Column) -> bool:
    """``key IN (SELECT key FROM ...)``: a join written as a predicate."""
    parent = column.parent
    return isinstance(parent, exp.In) and parent.this is column and bool(parent.args.get("query"))


def _judge(
    base: BaseColumn,
    use: Use,
    aggregate: str | None,
    node: exp.Column,
    policy: DatasetPolicy,
    where: str | None,
) -> Finding | None:
    rule = policy.rule(base.table.name, base.name)
    if rule.allows(use, aggregate):
        return None
    qualified = f"{base.table.name}.{base.name}"
    view_column = base.table.view_column(base.name)
    if rule.forbidden:
        return Finding.of(
            "column.forbidden",
            "The column %(column)s is forbidden by the dataset policy and may not appear "
            "anywhere in a query.",
            where,
            message_id="column.forbidden.policy",
            column=qualified,
        )
    if use in (Use.GROUP, Use.OUTPUT) and view_column and view_column.cls in KEY_CLASSES:
        counted = f"count them instead: COUNT(DISTINCT {base.name})"
        if use is Use.GROUP:
            return Finding.of(
                "output.identifier_group",
                "GROUP BY %(column)s would release one row per person or record.",
                where,
                counted,
                column=base.name,
            )
        return Finding.of(
            "output.identifier_group",
            "Releasing %(column)s would release one row per person or record.",
            where,
            counted,
            message_id="output.identifier_group.output",
            column=base.name,
        )
    suggestion = None
    allowed = sorted(rule.allowed_aggregates())
    if use in (Use.GROUP, Use.OUTPUT) and allowed:
        suggestion = f"aggregate it, e.g. {allowed[0]}({base.name}); allowed: {', '.join(allowed)}"
    rule_id = f"column.{use.value}_not_allowed"
    params = {"column": qualified, "rule": rule.describe()}
    if use is Use.AGGREGATE:
        params["aggregate"] = str(aggregate)
    return Finding.of(rule_id, NOT_ALLOWED[use], where, suggestion, **params)


# One wording per use, so that each language puts the use where its grammar wants it.
NOT_ALLOWED = {
    Use.JOIN: template(
        "column.join_not_allowed",
        "The column %(column)s may not be a JOIN key; its rule is %(rule)s.",
    ),
    Use.AGGREGATE: template(
        "column.aggregate_not_allowed",
        "The column %(column)s may not be inside %(aggregate)s; its rule is %(rule)s.",
    ),
    Use.FILTER: template(
        "column.filter_not_allowed",
        "The column %(column)s may not be a filter; its rule is %(rule)s.",
    ),
    Use.GROUP: template(
        "column.group_not_allowed",
        "The column %(column)s may not be a GROUP BY key; its rule is %(rule)s.",
    ),
    Use.OUTPUT: template(
        "column.output_not_allowed",
        "The column %(column)s may not be an output column; its rule is %(rule)s.",
    ),
}


# --- output ------------------------------------------------------------------------------------


def _is_aggregate(node: exp.Expr) -> bool:
    if isinstance(node, exp.WithinGroup):  # PERCENTILE_CONT(a) WITHIN GROUP (ORDER BY x)
        return type(node.this) in AGGREGATES
    return type(node) in AGGREGATES


def _check_aggregation(select: exp.Select) -> list[Finding]:
    findings = []
    group = select.args.get("group")
    keys = list(group.expressions) if group else []
    key_sql = {_text(k) for k in keys}
    has_aggregate = any(_is_aggregate(n) for p in select.expressions for n in p.walk())
    if not has_aggregate:
        findings.append(
            Finding(
                "output.no_aggregate",
                "The output must be aggregated: use COUNT, SUM, AVG ... with GROUP BY.",
                location_of(select),
            )
        )
    for projection in select.expressions:
        inner = projection.unalias()
        if _text(inner) in key_sql:
            continue
        for column in _columns_outside_aggregates(inner):
            if _text(column) not in key_sql:
                findings.append(
                    Finding.of(
                        "output.not_aggregated",
                        "The output column %(output)s uses %(column)s outside an aggregate; "
                        "it must be an aggregate or a GROUP BY key.",
                        location_of(column),
                        output=projection.alias_or_name,
                        column=column.name,
                    )
                )
    return findings


def _text(node: exp.Expr) -> str:
    """An expression's SQL for comparison: comments are not part of it."""
    return node.sql(dialect=DIALECT, comments=False)


def _columns_outside_aggregates(node: exp.Expr) -> list[exp.Column]:
    if _is_aggregate(node):
        return []
    if isinstance(node, exp.Column):
        return [node]
    found = []
    for child in node.iter_expressions():
        found += _columns_outside_aggregates(child)
    return found


def _check_masked(statement: exp.Expr) -> list[Finding]:
    return [
        Finding.of(
            "masked.min_max",
            "%(function)s releases one person's exact value; not allowed in masked mode.",
            location_of(node),
            "use AVG, a percentile band or dp mode",
            function=_name_of(node),
        )
        for node in statement.walk()
        if type(node) in EXTREMES
    ]
