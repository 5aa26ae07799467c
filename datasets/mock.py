"""Mock data: synthetic rows shaped exactly like a job's view of a table.

Analysts write and test their code against these before submitting it. The
rows come from the synthetic generator (or, for a manifest it does not know,
from each column's type, bounds and categories) and go through the same
``build_view`` as real data, under a throwaway random key: no real record is
involved and pseudonyms differ from call to call.
"""

from __future__ import annotations

import math
import secrets

import numpy as np
import pandas as pd

from datasets.errors import ViewError
from datasets.health import generate_health
from datasets.health_manifest import HEALTH
from datasets.manifest import Column, ColumnClass, ColumnType, Manifest, Table
from datasets.views import build_view

MAX_MOCK_ROWS = 10_000
# Rough rows per synthetic person of each health table, to size the population.
_HEALTH_ROWS_PER_PERSON = {"patients": 1.0, "visits": 5.0, "labs": 15.0}


def mock_view_table(manifest: Manifest, table: str, rows: int, *, seed: int = 0) -> pd.DataFrame:
    """Up to ``rows`` (at most 10,000) synthetic rows of ``table`` in its view schema."""
    spec = manifest.table(table)
    if spec is None:
        raise ViewError(f"dataset {manifest.name!r} has no table {table!r}")
    if rows < 0:
        raise ViewError("the number of mock rows must not be negative")
    rows = min(int(rows), MAX_MOCK_ROWS)
    raw = _synthetic_tables(manifest, spec, rows, seed)
    view = build_view(
        raw,
        manifest,
        key=secrets.token_bytes(32),
        table_names=[spec.name],
    )
    return view[spec.name].head(rows).reset_index(drop=True)


def mock_view(
    manifest: Manifest, tables: list[str], persons: int, *, seed: int = 0
) -> dict[str, pd.DataFrame]:
    """Synthetic views of ``tables`` made together for about ``persons`` persons, so that
    they join on the person (and record) keys as a real view's tables do: one
    population, one throwaway key."""
    specs = []
    for name in tables:
        spec = manifest.table(name)
        if spec is None:
            raise ViewError(f"dataset {manifest.name!r} has no table {name!r}")
        specs.append(spec)
    persons = max(1, min(int(persons), MAX_MOCK_ROWS))
    if all(_generator_knows(manifest, spec) for spec in specs):
        raw = generate_health(persons, seed=seed)
    else:
        raw = {
            spec.name: _table_from_manifest(spec, persons * 3, seed + i)
            for i, spec in enumerate(specs)
        }
    return build_view(raw, manifest, key=secrets.token_bytes(32), table_names=tables)


def _synthetic_tables(
    manifest: Manifest, spec: Table, rows: int, seed: int
) -> dict[str, pd.DataFrame]:
    if not _generator_knows(manifest, spec):
        return {spec.name: _table_from_manifest(spec, rows, seed)}
    patients = math.ceil(rows / _HEALTH_ROWS_PER_PERSON.get(spec.name, 1.0) * 1.3) + 20
    while True:
        tables = generate_health(patients, seed=seed)
        if len(tables[spec.name]) >= rows or patients > 4 * MAX_MOCK_ROWS:
            return tables
        patients *= 2


def _generator_knows(manifest: Manifest, spec: Table) -> bool:
    health = HEALTH.table(spec.name)
    if manifest.name != HEALTH.name or health is None:
        return False
    return {c.name for c in spec.columns} <= {c.name for c in health.columns}


def _table_from_manifest(spec: Table, rows: int, seed: int) -> pd.DataFrame:
    """Plausible values from each column's declaration alone."""
    rng = np.random.default_rng(seed)
    persons = max(1, rows // 3)
    return pd.DataFrame(
        {c.name: _column_values(c, rows, persons, rng) for c in spec.columns if not c.forbidden}
    )


def _column_values(column: Column, rows: int, persons: int, rng: np.random.Generator) -> object:
    if column.cls is ColumnClass.PERSON_KEY:
        return rng.integers(1, persons + 1, size=rows)
    if column.cls is ColumnClass.RECORD_KEY:
        return np.arange(1, rows + 1, dtype=np.int64)
    if column.categories:
        return np.array(column.categories)[rng.integers(0, len(column.categories), size=rows)]
    low, high = column.bounds or (0.0, 100.0)
    match column.type:
        case ColumnType.INTEGER:
            return rng.integers(int(low), int(high) + 1, size=rows)
        case ColumnType.FLOAT:
            return np.round(rng.uniform(low, high, size=rows), 2)
        case ColumnType.BOOLEAN:
            share = 0.85 if column.cls is ColumnClass.CONSENT else 0.5
            return rng.random(rows) < share
        case ColumnType.DATE:
            first, last = _day_range(column)
            days = first + rng.integers(0, (last - first).astype(np.int64) + 1, size=rows)
            return days.astype(object)
        case ColumnType.TIMESTAMP:
            start = np.datetime64("2022-01-01T00:00:00", "us")
            seconds = rng.integers(0, 3 * 365 * 86_400, size=rows)
            return start + (seconds * 1_000_000).astype("timedelta64[us]")
    return np.array([f"示例{i + 1}" for i in range(rows)])


def _day_range(column: Column) -> tuple[np.datetime64, np.datetime64]:
    if column.bounds:  # a date's bounds are years
        low, high = (int(b) for b in column.bounds)
        return np.datetime64(f"{low:04d}-01-01", "D"), np.datetime64(f"{high:04d}-12-31", "D")
    return np.datetime64("2022-01-01", "D"), np.datetime64("2024-12-31", "D")
