"""TODO docstring."""

from __future__ import annotations

import io
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from datasets.health_manifest import MANIFESTS
from datasets.manifest import Manifest
from datasets.mock import mock_view_table
from policies.policy_file import load_policy
from sandbox.dp.marginals import mock_table
from sandbox.errors import (
    InvalidRequest,
    NotFound,
)
from sandbox.models import (
    DatasetRecord,
)


def manifest_for(dataset: str) -> Manifest:
    manifest = MANIFESTS.get(dataset)
    if manifest is None:
        raise NotFound(f"There is no dataset {dataset}.")
    return manifest


MAX_MOCK_ROWS = 10_000


def catalog(session: Session) -> list[dict[str, Any]]:
    records = {r.name: r for r in session.scalars(select(DatasetRecord))}
    return [
        {
            "name": m.name,
            "title": m.title,
            "title_en": m.title_en,
            "privacy_unit": m.privacy_unit,
            "tables": [t.name for t in m.tables],
            "available": m.name in records,
            "version": records[m.name].version if m.name in records else None,
            "row_counts": records[m.name].row_counts if m.name in records else None,
        }
        for m in MANIFESTS.values()
    ]


def manifest_of(name: str) -> Manifest:
    manifest = MANIFESTS.get(name)
    if manifest is None:
        raise NotFound(f"There is no dataset {name}.")
    return manifest


def dataset_schema(name: str) -> dict[str, Any]:
    return manifest_of(name).to_dict()


def mock_csv(
    name: str, *, table: str | None, rows: str | None, marginals: dict[str, Any] | None = None
) -> str:
    """Synthetic rows with the view's schema: from the dataset's DP marginals when it has
    them, else from the synthetic generator (no real data either way)."""
    manifest = manifest_of(name)
    if not table or manifest.table(table) is None:
        raise InvalidRequest(
            f"table must be one of {', '.join(manifest.table_names)}.", field="table"
        )
    try:
        count = int(rows or 100)
    except ValueError as error:
        raise InvalidRequest("rows must be a whole number.", field="rows") from error
    if not 1 <= count <= MAX_MOCK_ROWS:
        raise InvalidRequest(f"rows must be between 1 and {MAX_MOCK_ROWS}.", field="rows")
    if marginals is not None:
        frame = mock_table(marginals, manifest, table, count, seed=count)
    else:
        frame = mock_view_table(manifest, table, count, seed=count)
    # The columns a Python job will not see are not in its mock rows either.
    policy = load_policy(manifest)
    frame = frame[[c for c in frame.columns if not policy.rule(table, c).forbidden]]
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue()
