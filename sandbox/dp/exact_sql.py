"""The exact aggregates a plan asks for, as the SQL the runner executes.

One DuckDB pass inside the runner bounds each person's rows, clamps the values
and aggregates; its answers never leave the worker unnoised
(:mod:`sandbox.dp.noise`).
"""

from __future__ import annotations

import secrets

from sqlglot import exp

from datasets.manifest import ColumnClass, Table
from policies.sql_check import DIALECT
from sandbox.dp.plan import Key, Measure


def build_exact_sql(
    statement: exp.Select,
    tables: dict[str, Table],
    keys: list[Key],
    measures: tuple[Measure, ...],
    unit: str,
    rows_per_person: int,
) -> str:
    """One pass in DuckDB: bound each person's rows, clamp, aggregate.

    Only persons with more rows than the bound are ranked; which of their rows
    they keep is decided by a keyed hash of each row's identity with a fresh
    secret salt: not by data order, and not predictable by the analyst. Tables
    that hold one row per person (checked when a dataset is stored) need no
    bounding, and a query of row and person counts without groups has a closed
    form: each person adds min(rows, bound).
    """
    source = statement.copy()
    where = source.args.get("where")
    where_sql = f" WHERE {where.this.sql(dialect=DIALECT)}" if where else ""
    from_sql = source.args["from_"].sql(dialect=DIALECT)
    joins_sql = " ".join(j.sql(dialect=DIALECT) for j in source.args.get("joins") or [])
    first = next(iter(tables))
    inner = [f"{k.sql} AS __dp_k{i}" for i, k in enumerate(keys)]
    inner += [f"{m.value} AS __dp_v{m.index}" for m in measures if m.value is not None]
    inner += [f"{first}.{unit} AS __dp_person"]
    body = f"{from_sql} {joins_sql}{where_sql}"
    rows_sql = f"SELECT {', '.join(inner)} {body}"
    if all(t.max_rows_per_person == 1 for t in tables.values()):
        kept = f"__dp_kept AS ({rows_sql})"
    elif not keys and all(m.kind == "persons" or m.value is None for m in measures):
        hashed = [*inner[:-1], f"hash({first}.{unit}) AS __dp_person"]
        return _closed_form_counts(f"SELECT {', '.join(hashed)} {body}", measures, rows_per_person)
    else:
        identity = " || '|' || ".join(
            _row_identity(alias, table, unit) for alias, table in tables.items()
        )
        salt = secrets.token_hex(16)
        bound = rows_per_person
        # Persons are grouped by a 64-bit hash of their key (a collision would only merge
        # two persons' rows under one bound); each row gets a keyed random priority, and
        # only the few persons above the bound are ranked by it.
        bounded = [
            *inner[:-1],
            f"hash({first}.{unit}) AS __dp_person",
            f"hash({identity} || '{salt}') AS __dp_u",
        ]
        kept = (
            f"__dp_rows AS MATERIALIZED (SELECT {', '.join(bounded)} {body}), "
            f"__dp_heavy AS (SELECT __dp_person FROM __dp_rows GROUP BY __dp_person "
            f"HAVING COUNT(*) > {bound}), "
            f"__dp_kept AS (SELECT * FROM __dp_rows ANTI JOIN __dp_heavy USING (__dp_person) "
            f"UNION ALL SELECT * EXCLUDE (__dp_rank) FROM (SELECT r.*, row_number() "
            f"OVER (PARTITION BY r.__dp_person ORDER BY r.__dp_u) AS __dp_rank "
            f"FROM __dp_rows AS r SEMI JOIN __dp_heavy USING (__dp_person)) "
            f"WHERE __dp_rank <= {bound})"
        )
    outer = [f"__dp_k{i}" for i in range(len(keys))]
    for m in measures:
        if m.kind == "count":
            counted = "*" if m.value is None else f"__dp_v{m.index}"
            outer.append(f'COUNT({counted}) AS "{m.alias}"')
        elif m.kind == "persons":
            outer.append(f'COUNT(DISTINCT __dp_v{m.index}) AS "{m.alias}"')
        elif m.kind == "quantile":
            outer.append(f'{_bucket_histogram(m)} AS "{m.alias}"')
        else:
            low, high = m.bounds or (0.0, 0.0)
            value = f"CAST(__dp_v{m.index} AS DOUBLE)"
            outer.append(f'SUM(LEAST(GREATEST({value}, {low!r}), {high!r})) AS "{m.alias}"')
    group_sql = f" GROUP BY {', '.join(f'__dp_k{i}' for i in range(len(keys)))}" if keys else ""
    return f"WITH {kept} SELECT {', '.join(outer)} FROM __dp_kept{group_sql}"


def _closed_form_counts(rows_sql: str, measures: tuple[Measure, ...], bound: int) -> str:
    """COUNT(*) and COUNT(DISTINCT person) without groups: every person adds min(rows, bound)
    rows and one person, whichever rows a random bounding would keep."""
    outer = [
        f'CAST(SUM(LEAST(__dp_n, {bound})) AS BIGINT) AS "{m.alias}"'
        if m.kind == "count"
        else f'COUNT(*) AS "{m.alias}"'
        for m in measures
    ]
    return (
        f"WITH __dp_rows AS ({rows_sql}), __dp_persons AS (SELECT __dp_person, COUNT(*) AS __dp_n "
        f"FROM __dp_rows GROUP BY __dp_person) SELECT {', '.join(outer)} FROM __dp_persons"
    )


def _bucket_histogram(measure: Measure) -> str:
    """Counts of clamped values at and between a quantile's candidates, as JSON.

    Bucket 2i holds the values equal to candidate i, bucket 2i+1 those strictly
    between candidates i and i+1: all the exponential mechanism's scores need.
    """
    candidates = measure.candidates
    low, high = candidates[0], candidates[-1]
    value = f"LEAST(GREATEST(CAST(__dp_v{measure.index} AS DOUBLE), {low!r}), {high!r})"
    if len(candidates) == 1:
        return f"to_json(histogram(CASE WHEN {value} IS NOT NULL THEN 0 END))::VARCHAR"
    step = (high - low) / (len(candidates) - 1)
    position = f"(({value} - {low!r}) / {step!r})"
    bucket = (
        f"CASE WHEN {position} = floor({position}) THEN 2 * CAST({position} AS BIGINT) "
        f"ELSE 2 * CAST(floor({position}) AS BIGINT) + 1 END"
    )
    return f"to_json(histogram({bucket}))::VARCHAR"


def _row_identity(alias: str, table: Table, unit: str) -> str:
    """What tells one row of a table from another: its record key where it has one."""
    record = next((c.name for c in table.view_columns() if c.cls is ColumnClass.RECORD_KEY), None)
    if record is not None:
        return f"CAST({alias}.{record} AS VARCHAR)"
    if table.max_rows_per_person == 1:
        return f"CAST({alias}.{unit} AS VARCHAR)"
    return f"CAST({alias} AS VARCHAR)"
