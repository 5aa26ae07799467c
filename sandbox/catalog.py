"""The catalog: which datasets there are, who owns each, their schemas and mock rows.

Only manifests and synthetic rows leave here, never a stored value.
"""

from __future__ import annotations

import io
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from datasets.health_manifest import MANIFESTS
from datasets.manifest import Manifest
from datasets.mock import mock_view_table
from policies.permissions import Person, user_may_govern_dataset
from policies.policy_file import load_policy
from sandbox.context import Sandbox
from sandbox.dp.marginals import load_marginals, mock_table
from sandbox.errors import Forbidden, InvalidRequest, NotFound
from sandbox.models import DatasetRecord

MAX_MOCK_ROWS = 10_000


def manifest_of(name: str) -> Manifest:
    manifest = MANIFESTS.get(name) if isinstance(name, str) else None
    if manifest is None:
        raise NotFound(f"There is no dataset {name}.")
    return manifest


def dataset_owners(session: Session) -> dict[str, int]:
    """Each stored dataset's owner (user id), by dataset name."""
    rows = session.execute(select(DatasetRecord.name, DatasetRecord.owner_id))
    return {name: owner_id for name, owner_id in rows}


def check_governs(session: Session, *, by: Person, dataset: str) -> None:
    """Refuse, as Forbidden, anyone but the dataset's owner (or an admin)."""
    owner_id = session.scalar(select(DatasetRecord.owner_id).where(DatasetRecord.name == dataset))
    if not user_may_govern_dataset(by, owner_id=owner_id):
        raise Forbidden(
            f"Only the data owner of {dataset} (or an admin) may do this.",
            rule="permission.dataset_owner",
        )


def list_datasets(sandbox: Sandbox) -> list[dict[str, Any]]:
    with sandbox.tx() as session:
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


def dataset_schema(name: str) -> dict[str, Any]:
    return manifest_of(name).to_dict()


def mock_rows(sandbox: Sandbox, name: str, *, table: str | None, rows: str | None) -> str:
    """The dataset's mock rows as CSV, from its DP marginals when it has them."""
    return mock_csv(
        name, table=table, rows=rows, marginals=load_marginals(sandbox.settings.instance, name)
    )


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
