"""Mock data that looks like the real thing: sampled from DP marginals of the real view.

Once per dataset version, from the owner's budget (never an analyst's), each
table gets noisy histograms: its richest category column (the *root*) —
conditioned on the person's birth decade for tables of events — and every other
column conditioned on the root (diagnosis on ICD-10 code, lab value on test
code, cost on code ...). Counts are bounded per person (the table's
``max_rows_per_person``) and noised with OpenDP; the owner's ε is split evenly
over the histograms. Mock rows are then sampled from these histograms alone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from datasets.manifest import Column, ColumnClass, ColumnType, Manifest, Table
from datasets.views import build_view
from sandbox.dp import mechanisms

BINS = 12
YEARS = (2000, 2030)  # a public range for dates
DECADES = tuple(range(1900, 2030, 10))
NULL = "__null__"
KEYS = (ColumnClass.PERSON_KEY, ColumnClass.RECORD_KEY)


def _buckets(column: Column) -> list[Any] | None:
    """The public buckets of a column's values, or None when it has none."""
    if column.categories:
        return [*column.categories, NULL]
    if column.type is ColumnType.BOOLEAN:
        return [True, False, NULL]
    if column.type in (ColumnType.DATE, ColumnType.TIMESTAMP):
        return [*range(YEARS[0], YEARS[1]), NULL]
    if column.type in (ColumnType.INTEGER, ColumnType.FLOAT) and column.bounds:
        return [*range(BINS), NULL]
    return None


def _bucket_of(column: Column, values: pd.Series) -> pd.Series:
    if column.categories or column.type is ColumnType.BOOLEAN:
        return values.astype(object).where(values.notna(), NULL)
    if column.type in (ColumnType.DATE, ColumnType.TIMESTAMP):
        years = pd.to_datetime(values, errors="coerce").dt.year
        return pd.Series(
            [int(y) if pd.notna(y) and YEARS[0] <= y < YEARS[1] else NULL for y in years],
            index=values.index,
            dtype=object,
        )
    low, high = column.bounds or (0, 1)
    position = np.floor((values.astype(float) - low) / (high - low) * BINS).clip(0, BINS - 1)
    return pd.Series(
        [NULL if pd.isna(p) else int(p) for p in position], index=values.index, dtype=object
    )


def _root(table: Table) -> Column | None:
    categories = [c for c in table.view_columns() if c.categories and c.cls not in KEYS]
    return max(categories, key=lambda c: len(c.categories or ()), default=None)


def _bound(frame: pd.DataFrame, unit: str, limit: int, rng: np.random.Generator) -> pd.DataFrame:
    shuffled = frame.sample(frac=1.0, random_state=rng)
    return shuffled.groupby(unit, sort=False).head(limit)


def compute_marginals(
    view: dict[str, pd.DataFrame], manifest: Manifest, *, epsilon: float
) -> dict[str, Any]:
    unit = manifest.privacy_unit
    # The table of one row per person, if the dataset has one: its birth years condition
    # the other tables' histograms. An owner's dataset may have none.
    persons = next((t for t in manifest.tables if t.max_rows_per_person == 1), None)
    decade_source = next(
        (
            c
            for c in (persons.view_columns() if persons is not None else ())
            if c.cls is ColumnClass.QUASI_IDENTIFIER and c.bounds
        ),
        None,
    )
    plans: list[tuple[Table, Column, Column | None]] = []  # (table, column, condition)
    for table in manifest.tables:
        root = _root(table)
        for column in table.view_columns():
            if column.cls in KEYS or _buckets(column) is None:
                continue
            condition = None if column is root else root
            plans.append((table, column, condition))
    if not plans:  # nothing with buckets to histogram: mock rows come from the manifest
        return {"epsilon": epsilon, "tables": {}}
    each = epsilon / len(plans)
    rng = np.random.default_rng(secrets.randbits(64))  # which rows a person keeps
    bounded = {
        t.name: _bound(view[t.name], unit, t.max_rows_per_person, rng) for t in manifest.tables
    }
    decades = None
    if decade_source is not None and persons is not None:
        years = view[persons.name].set_index(unit)[decade_source.name]
        decades = (years // 10 * 10).astype("Int64")
    result: dict[str, Any] = {"epsilon": epsilon, "tables": {}}
    for table, column, condition in plans:
        frame = bounded[table.name]
        buckets = _buckets(column) or []
        values = _bucket_of(column, frame[column.name])
        if condition is None and table is not persons and decades is not None:
            given_name, given_buckets = "__decade", [*DECADES, NULL]
            given = frame[unit].map(decades).astype(object)
            given = given.where(given.isin(DECADES), NULL)
        elif condition is not None:
            given_name, given_buckets = condition.name, _buckets(condition) or []
            given = _bucket_of(condition, frame[condition.name])
        else:
            given_name, given_buckets = None, [None]
            given = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        # map(str), not astype(str): pandas 3 turns None into a missing value there,
        # which crosstab drops (the unconditioned histograms came out empty).
        joint = pd.crosstab(given.map(str), values.map(str))
        exact = [
            int(joint.at[str(g), str(b)])
            if str(g) in joint.index and str(b) in joint.columns
            else 0
            for g in given_buckets
            for b in buckets
        ]
        noisy = mechanisms.noisy_counts(exact, sensitivity=table.max_rows_per_person, epsilon=each)
        # Post-processing: a cell the noise alone could explain is taken as empty,
        # so ICD-10 codes keep their own diagnoses and tests their own units.
        floor = mechanisms.error95(mechanisms.laplace_scale(table.max_rows_per_person, each))
        counts = [n if n > floor else 0 for n in noisy]
        width = len(buckets)
        result["tables"].setdefault(table.name, {})[column.name] = {
            "given": given_name,
            "given_buckets": [_json(g) for g in given_buckets],
            "buckets": [_json(b) for b in buckets],
            "counts": [counts[i * width : (i + 1) * width] for i in range(len(given_buckets))],
        }
    return result


def _json(value: object) -> object:
    return value.item() if hasattr(value, "item") else value


def mock_table(
    marginals: dict[str, Any], manifest: Manifest, table: str, rows: int, *, seed: int
) -> pd.DataFrame:
    """Rows of one table in its view schema, sampled from the marginals only."""
    spec = manifest.table(table)
    if spec is None:
        raise KeyError(table)
    rng = np.random.default_rng(seed)  # mock values, not privacy noise
    persons = next(t for t in manifest.tables if t.max_rows_per_person == 1)
    pool = rows if spec is persons else max(1, rows // 5)
    people = _sample_table(marginals, persons, pool, rng, None, seed, manifest)
    if spec is persons:
        return people
    return _sample_table(marginals, spec, rows, rng, people, seed, manifest)


def _sample_table(
    marginals: dict[str, Any],
    spec: Table,
    rows: int,
    rng: np.random.Generator,
    people: pd.DataFrame | None,
    seed: int,
    manifest: Manifest,
) -> pd.DataFrame:
    histograms = marginals["tables"].get(spec.name, {})
    unit = manifest.privacy_unit
    frame = pd.DataFrame(index=range(rows))
    if people is None:
        frame[unit] = [_pseudonym(seed, "p", i) for i in range(rows)]
    else:
        picked = rng.integers(0, len(people), size=rows)
        frame[unit] = people[unit].to_numpy()[picked]
        year_column = next((c for c in people.columns if c.endswith("_year")), None)
        if year_column is not None:
            # Spelled as the histogram's given buckets are: "1950", or NULL for no year
            # (a float array would spell "1950.0", which no bucket matches).
            decades = np.array(
                [NULL if pd.isna(y) else str(int(y) // 10 * 10) for y in people[year_column]],
                dtype=object,
            )
            frame["__decade"] = decades[picked]
    root = _root(spec)
    ordered = sorted(histograms, key=lambda name: 0 if root and name == root.name else 1)
    for name in ordered:
        histogram = histograms[name]
        frame[name] = _draw(histogram, frame, rng)
    for column in spec.view_columns():
        if column.cls in KEYS and column.name != unit:
            frame[column.name] = [_pseudonym(seed, column.name, i) for i in range(rows)]
    columns = [c.name for c in spec.view_columns() if c.name in frame.columns]
    return frame[columns].pipe(lambda f: _typed(f, spec, rng))


def _draw(histogram: dict[str, Any], frame: pd.DataFrame, rng: np.random.Generator) -> list[Any]:
    buckets = histogram["buckets"]
    given = histogram["given"]
    lookup = {
        str(g): row for g, row in zip(histogram["given_buckets"], histogram["counts"], strict=True)
    }
    flat = [sum(col) for col in zip(*histogram["counts"], strict=True)]
    keys = (
        frame[given].map(str).to_numpy()
        if given and given in frame.columns
        else np.array(["__all__"] * len(frame))
    )
    out: list[Any] = [None] * len(frame)
    for key in np.unique(keys):
        positions = np.flatnonzero(keys == key)
        weights = np.array(lookup.get(str(key), flat), dtype=float)
        if weights.sum() <= 0:  # the noise emptied this row of the histogram
            weights = _nearest_row(histogram, str(key), flat)
        drawn = rng.choice(len(buckets), size=len(positions), p=weights / weights.sum())
        for position, index in zip(positions, drawn, strict=True):
            out[position] = buckets[index]
    return out


def _nearest_row(histogram: dict[str, Any], key: str, flat: list[float]) -> np.ndarray:
    """The closest non-empty row of the histogram to an emptied one (given buckets are in
    order: decades, bins), else the whole histogram. Post-processing of noisy counts: a
    decade the noise emptied borrows its neighbour's distribution, not everyone's, so
    the relation with age survives (the whole histogram would erase it)."""
    given = [str(g) for g in histogram["given_buckets"]]
    rows = histogram["counts"]
    if key in given and key != NULL:  # no year: no neighbour by age
        at = given.index(key)
        for distance in range(1, len(given)):
            for index in (at - distance, at + distance):
                if 0 <= index < len(rows) and given[index] != NULL and sum(rows[index]) > 0:
                    return np.array(rows[index], dtype=float)
    return np.array(flat, dtype=float) + 1.0


def _typed(frame: pd.DataFrame, spec: Table, rng: np.random.Generator) -> pd.DataFrame:
    for column in spec.view_columns():
        if column.name not in frame.columns or column.cls in KEYS:
            continue
        raw = [None if v == NULL or pd.isna(v) else v for v in frame[column.name]]
        if column.type in (ColumnType.DATE, ColumnType.TIMESTAMP):
            days = rng.integers(0, 365, size=len(raw))
            stamps = [
                None if y is None else dt.date(int(y), 1, 1) + dt.timedelta(days=int(d))
                for y, d in zip(raw, days, strict=True)
            ]
            frame[column.name] = (
                pd.to_datetime(pd.Series(stamps)) if column.type is ColumnType.TIMESTAMP else stamps
            )
        elif column.type in (ColumnType.INTEGER, ColumnType.FLOAT) and column.bounds:
            low, high = column.bounds
            width = (high - low) / BINS
            values = [None if b is None else low + (int(b) + rng.random()) * width for b in raw]
            if column.type is ColumnType.INTEGER:
                frame[column.name] = pd.array(
                    [None if v is None else int(v) for v in values], dtype="Int64"
                )
            else:
                frame[column.name] = pd.array(values, dtype="Float64").round(2)
        else:
            frame[column.name] = pd.Series(raw, index=frame.index, dtype=object)
    return frame


def _pseudonym(seed: int, kind: str, index: int) -> str:
    return hashlib.sha256(f"mock:{seed}:{kind}:{index}".encode()).hexdigest()[:32]


# The owner's ε for one dataset version's mock marginals (never an analyst's budget).
OWNER_EPSILON = 2.0


def marginals_path(instance: Path, dataset: str) -> Path:
    return instance / "mock" / f"{dataset}.json"


def refresh_marginals(
    instance: Path,
    dataset: str,
    version: str,
    tables: dict[str, pd.DataFrame],
    manifest: Manifest,
    *,
    epsilon: float = OWNER_EPSILON,
) -> dict[str, Any]:
    """Compute the marginals of a freshly stored version from its consenting persons."""
    consent_table, _, consent_column = (manifest.consent_column or "..").partition(".")
    consenting = None
    if consent_table in tables and consent_column in tables[consent_table].columns:
        frame = tables[consent_table]
        unit = manifest.privacy_unit
        # eq(True), not the values' truthiness: a missing value or the text "no" never consents.
        consenting = {str(p) for p in frame.loc[frame[consent_column].eq(True), unit]}
    view = build_view(tables, manifest, key=secrets.token_bytes(32), consenting=consenting)
    marginals = compute_marginals(view, manifest, epsilon=epsilon)
    marginals["version"] = version
    path = marginals_path(instance, dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(marginals, ensure_ascii=False), encoding="utf-8")
    return marginals


def load_marginals(instance: Path, dataset: str) -> dict[str, Any] | None:
    path = marginals_path(instance, dataset)
    if not path.exists():
        return None
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded
