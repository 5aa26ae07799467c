"""Publishing a version of a dataset: tables conformed to the owner's definition, stored
encrypted, the definition and policy recorded as version N+1, consent and mock marginals
refreshed, all audited.

Every import ends here (``sandbox.owners.imports``), and so does the demo's health
data. A grant's budget is the dataset's, not a version's: publishing never resets it.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from datasets.checks import DatasetInvalid, check_one_row_per_person
from datasets.definition import definition_of
from datasets.errors import DatasetError
from datasets.manifest import ColumnClass, ColumnType, Manifest, Table
from policies.permissions import Person, user_may_bring_datasets
from policies.policy_file import PolicyFileError, parse_policy
from sandbox.access.consent import seed_consent
from sandbox.catalog import PUBLISHED, RETIRED, check_governs
from sandbox.context import Sandbox
from sandbox.dp import marginals
from sandbox.errors import Conflict, Forbidden, InvalidRequest
from sandbox.integrity import audit
from sandbox.models import DatasetRecord, DatasetVersion, utcnow

TRUE = frozenset({"true", "t", "yes", "y", "1", "是", "真"})
FALSE = frozenset({"false", "f", "no", "n", "0", "否", "假"})


class Mode(StrEnum):
    NEW = "new"  # a dataset that does not exist yet
    APPEND = "append"  # the current version's rows and these
    REPLACE = "replace"  # these rows instead of the current version's


def publish_tables(
    sandbox: Sandbox,
    session: Session,
    *,
    by: Person,
    manifest: Manifest,
    policy_text: str,
    tables: Mapping[str, pd.DataFrame],
    mode: Mode,
) -> DatasetVersion:
    """Publish ``tables`` as the next version of ``manifest.name``, in the caller's
    transaction; InvalidRequest (naming table, column, row and rule) if they do not
    conform. The store is written last, so a refusal leaves the current version."""
    name = manifest.name
    try:
        parse_policy(policy_text, manifest, source=f"{name} policy")
    except PolicyFileError as error:
        raise InvalidRequest(str(error), field="policy", rule="import.policy") from error
    record = session.scalar(select(DatasetRecord).where(DatasetRecord.name == name))
    _check_may_publish(session, by=by, record=record, name=name, mode=mode)
    conformed = {t.name: conform(tables, t, manifest) for t in manifest.tables}
    if mode is Mode.APPEND:
        assert record is not None
        conformed = {
            t: pd.concat([sandbox.store.read_table(name, t), frame], ignore_index=True)
            for t, frame in conformed.items()
        }
    try:
        check_one_row_per_person(conformed, manifest)
    except DatasetInvalid as error:
        raise InvalidRequest(str(error), rule="import.duplicate_person") from error
    counts = {t: len(frame) for t, frame in conformed.items()}
    number = (
        session.scalar(
            select(func.max(DatasetVersion.number)).where(DatasetVersion.dataset == name)
        )
        or 0
    ) + 1
    if record is None:
        record = DatasetRecord(name=name, version="", owner_id=by.id, row_counts=counts)
        session.add(record)
    version = sandbox.store.write(name, conformed)
    record.version, record.row_counts, record.current = version, counts, number
    record.status, record.retired_at = PUBLISHED, None
    definition = definition_of(manifest, policy_text)
    definition.pop("policy", None)
    row = DatasetVersion(
        dataset=name,
        number=number,
        version=version,
        definition=definition,
        policy_text=policy_text,
        row_counts=counts,
        mode=mode.value,
        published_by=by.username,
        published_at=utcnow(),
    )
    session.add(row)
    session.flush()
    audit.append(
        session,
        actor=by.username,
        action="dataset.published",
        subject=name,
        details={"number": number, "version": version, "mode": mode.value, "rows": counts},
    )
    _after_publish(sandbox, session, by=by, manifest=manifest, tables=conformed, version=version)
    return row


def _check_may_publish(
    session: Session, *, by: Person, record: DatasetRecord | None, name: str, mode: Mode
) -> None:
    if record is None:
        if not user_may_bring_datasets(by):
            raise Forbidden("Only data owners bring datasets.", rule="permission.owner")
        if mode is not Mode.NEW:
            raise InvalidRequest(
                f"There is no dataset {name} to {mode.value} to: import it as new.",
                field="mode",
                rule="import.mode",
            )
        return
    check_governs(session, by=by, dataset=name)
    if record.status == RETIRED:
        raise Conflict(
            f"{name} was retired: its data key is destroyed for good. Import the data as a "
            "new dataset under another name.",
            rule="import.retired",
        )
    if mode is Mode.NEW:
        raise Conflict(
            f"A dataset named {name} exists already: publish a new version of it "
            "(append or replace), or choose another name.",
            rule="import.exists",
        )


def _after_publish(
    sandbox: Sandbox,
    session: Session,
    *,
    by: Person,
    manifest: Manifest,
    tables: Mapping[str, pd.DataFrame],
    version: str,
) -> None:
    """Consent records from the consent column, and the mock rows' DP marginals."""
    if manifest.consent_column:
        table, _, _ = manifest.consent_column.partition(".")
        seed_consent(session, manifest=manifest, patients=tables[table], by=by.username)
    # Mock rows come from DP marginals of this version, paid from the owner's ε.
    marginals.refresh_marginals(
        sandbox.settings.instance, manifest.name, version, dict(tables), manifest
    )
    audit.append(
        session,
        actor=by.username,
        action="mock.marginals",
        subject=manifest.name,
        details={"version": version, "epsilon": marginals.OWNER_EPSILON},
    )


# --- conforming a table to its definition --------------------------------------------------


def conform(tables: Mapping[str, pd.DataFrame], table: Table, manifest: Manifest) -> pd.DataFrame:
    """The table's columns in the declared types; InvalidRequest names the first row and
    column that does not convert, or a key that is missing, never a value."""
    frame = tables.get(table.name)
    if frame is None:
        raise InvalidRequest(
            f"The definition declares the table {table.name}, which the import lacks.",
            rule="import.missing_table",
        )
    missing = [c.name for c in table.columns if c.name not in frame.columns]
    if missing:
        raise InvalidRequest(
            f"{table.name}: the definition declares columns the import lacks: "
            f"{', '.join(missing)}.",
            rule="import.missing_column",
        )
    out = pd.DataFrame(index=frame.index)
    for column in table.columns:
        out[column.name] = _converted(
            frame[column.name], column.type, f"{table.name}.{column.name}"
        )
        if column.cls in (ColumnClass.PERSON_KEY, ColumnClass.RECORD_KEY):
            _no_nulls(out[column.name], f"{table.name}.{column.name}")
    return out.reset_index(drop=True)


def _no_nulls(values: pd.Series, where: str) -> None:
    nulls = values.isna().to_numpy()
    if nulls.any():
        first = int(np.argmax(nulls)) + 1
        raise InvalidRequest(
            f"{where}: {int(nulls.sum())} rows have no key (the first is data row {first}); "
            "a declared key may not be empty.",
            rule="import.key_null",
        )


def _converted(values: pd.Series, kind: ColumnType, where: str) -> pd.Series:
    """``values`` as ``kind``; a value that is there but does not convert is an error."""
    try:
        converted = _convert(values, kind)
    except (TypeError, ValueError, OverflowError) as error:
        raise InvalidRequest(
            f"{where}: the values do not convert to {kind.value}.", rule="import.type"
        ) from error
    lost = (values.notna() & ~_blank(values) & converted.isna()).to_numpy()
    if lost.any():
        first = int(np.argmax(lost)) + 1
        raise InvalidRequest(
            f"{where}: {int(lost.sum())} values are not {kind.value}s (the first in data "
            f"row {first}); correct the data or declare the column as text.",
            rule="import.type",
        )
    return converted


def _blank(values: pd.Series) -> pd.Series:
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        return values.astype("string").str.strip().fillna("") == ""
    return pd.Series(False, index=values.index)


def _convert(values: pd.Series, kind: ColumnType) -> pd.Series:
    text = values.dtype == object or pd.api.types.is_string_dtype(values.dtype)
    if kind is ColumnType.STRING:
        if text:
            return values.astype("string").str.strip().replace("", pd.NA).astype(object)
        return values.astype("string").astype(object).where(values.notna(), None)
    if kind is ColumnType.BOOLEAN:
        if pd.api.types.is_bool_dtype(values.dtype):
            return values.astype("boolean")
        lowered = values.astype("string").str.strip().str.lower()
        return lowered.map(
            lambda v: True if v in TRUE else False if v in FALSE else pd.NA, na_action="ignore"
        ).astype("boolean")
    if kind in (ColumnType.INTEGER, ColumnType.FLOAT):
        numbers = pd.to_numeric(
            values.astype("string").str.strip() if text else values, errors="coerce"
        )
        if kind is ColumnType.FLOAT:
            return numbers.astype("float64")
        whole = numbers.dropna()
        if not (whole == np.floor(whole)).all():
            numbers = numbers.where(numbers.isna() | (numbers == np.floor(numbers)), np.nan)
        return numbers.astype("Int64")
    stamps = pd.to_datetime(values, errors="coerce", format="mixed" if text else None)
    if kind is ColumnType.DATE:
        return pd.Series(stamps.dt.date, index=values.index).where(stamps.notna(), None)
    return stamps


def definition_error(error: DatasetError) -> InvalidRequest:
    """A definition's error as the actions report it."""
    return InvalidRequest(str(error), field="definition", rule="import.definition")
