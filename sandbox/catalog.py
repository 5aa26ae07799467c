"""The catalog: which datasets are published, who owns each, their schemas and mock rows.

A dataset's manifest and policy are those of its current published version
(``dataset_versions``), written by its owner (``sandbox.owners``). Only
manifests and synthetic rows leave here, never a stored value.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from datasets.definition import parse_definition
from datasets.manifest import Manifest
from datasets.mock import mock_view_table
from policies.permissions import Person, user_may_govern_dataset
from policies.policy_file import DatasetPolicy, parse_policy
from sandbox.context import Sandbox
from sandbox.dp.marginals import load_marginals, mock_table
from sandbox.errors import Forbidden, InvalidRequest, NotFound
from sandbox.models import DatasetRecord, DatasetVersion

MAX_MOCK_ROWS = 10_000
PUBLISHED = "published"
RETIRED = "retired"


@dataclass(frozen=True)
class Published:
    """A dataset as jobs read it now: its current version's manifest and policy."""

    name: str
    number: int
    version: str  # the content hash jobs and certificates name
    manifest: Manifest
    policy: DatasetPolicy
    owner_id: int


# Versions never change, so their parsed definitions are kept (by their content's digest).
_PARSED: dict[str, tuple[Manifest, DatasetPolicy]] = {}


def parsed_version(row: DatasetVersion) -> tuple[Manifest, DatasetPolicy]:
    """The manifest and policy of one stored version."""
    digest = hashlib.sha256(
        json.dumps([row.definition, row.policy_text], sort_keys=True, default=str).encode()
    ).hexdigest()
    found = _PARSED.get(digest)
    if found is None:
        source = f"{row.dataset} v{row.number}"
        manifest, _ = parse_definition(row.definition, source=source)
        found = manifest, parse_policy(row.policy_text, manifest, source=source)
        _PARSED[digest] = found
    return found


def published(session: Session, name: str) -> Published:
    """The dataset's current published version; NotFound for none (or a retired one)."""
    record = _record(session, name)
    if record is None or record.status != PUBLISHED:
        raise NotFound(f"There is no dataset {name}.")
    row = session.scalar(
        select(DatasetVersion).where(
            DatasetVersion.dataset == name, DatasetVersion.number == record.current
        )
    )
    if row is None:
        raise NotFound(f"There is no dataset {name}.")
    manifest, policy = parsed_version(row)
    return Published(name, row.number, row.version, manifest, policy, record.owner_id)


def manifest_of(session: Session, name: str) -> Manifest:
    return published(session, name).manifest


def _record(session: Session, name: object) -> DatasetRecord | None:
    if not isinstance(name, str):
        return None
    return session.scalar(select(DatasetRecord).where(DatasetRecord.name == name))


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
    """Every published dataset, newest versions as analysts see them."""
    entries = []
    with sandbox.tx() as session:
        records = session.scalars(
            select(DatasetRecord)
            .where(DatasetRecord.status == PUBLISHED)
            .order_by(DatasetRecord.name)
        )
        for record in records:
            try:
                current = published(session, record.name)
            except NotFound:
                continue
            manifest = current.manifest
            entries.append(
                {
                    "name": manifest.name,
                    "title": manifest.title,
                    "title_en": manifest.title_en,
                    "privacy_unit": manifest.privacy_unit,
                    "tables": [t.name for t in manifest.tables],
                    "available": sandbox.store.exists(manifest.name),
                    "version": current.version,
                    "version_number": current.number,
                    "row_counts": record.row_counts,
                }
            )
    return entries


def dataset_schema(sandbox: Sandbox, name: str) -> dict[str, Any]:
    with sandbox.tx() as session:
        current = published(session, name)
    return {
        **current.manifest.to_dict(),
        "version": current.version,
        "version_number": current.number,
    }


def mock_rows(sandbox: Sandbox, name: str, *, table: str | None, rows: str | None) -> str:
    """The dataset's mock rows as CSV, from its DP marginals when it has them."""
    with sandbox.tx() as session:
        current = published(session, name)
    marginals = load_marginals(sandbox.settings.instance, name)
    if marginals is not None and marginals.get("version") != current.version:
        marginals = None  # another version's: its schema may differ; synthetic rows instead
    return mock_csv(current.manifest, current.policy, table=table, rows=rows, marginals=marginals)


def mock_csv(
    manifest: Manifest,
    policy: DatasetPolicy,
    *,
    table: str | None,
    rows: str | None,
    marginals: dict[str, Any] | None = None,
) -> str:
    """Synthetic rows with the view's schema: from the dataset's DP marginals when it has
    them, else from the synthetic generator (no real data either way)."""
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
    if marginals is not None and table in (marginals.get("tables") or {}):
        frame = mock_table(marginals, manifest, table, count, seed=count)
    else:
        frame = mock_view_table(manifest, table, count, seed=count)
    # The columns a Python job will not see are not in its mock rows either.
    frame = frame[[c for c in frame.columns if not policy.rule(table, c).forbidden]]
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue()
