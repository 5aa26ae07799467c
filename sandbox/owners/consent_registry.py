"""Importing an owner's consent registry (个人授权): who consented to which purpose, when,
and who withdrew, from a file (CSV, XLSX) with the columns
``person_id, purpose, given_at[, withdrawn_at]``.

The file is read through the same importers as data (encoding, delimiter, size cap),
staged encrypted under a key of its own, checked whole — every person must be one of
the dataset's, every date a date, no pair twice — and only then merged, in one
transaction: a record the file withdraws ends; a consent it gives starts, unless the
person withdrew in the sandbox after the file's date. Errors name the file, the row,
the column and the rule, never a value.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from datasets.definition import NAME
from datasets.errors import DatasetError, SourceError
from datasets.importers import FileOptions, stage_file
from datasets.staging import Staging
from policies.permissions import Person
from sandbox.access.consent import person_texts
from sandbox.actions import transaction
from sandbox.catalog import check_governs, published
from sandbox.context import Sandbox
from sandbox.errors import InvalidRequest
from sandbox.integrity import audit
from sandbox.models import ConsentRecord, utcnow
from sandbox.owners.imports import refused_source

COLUMNS = ("person_id", "purpose", "given_at")
OPTIONAL = ("withdrawn_at",)
MAX_FIELD_CHARS = 64


@dataclass(frozen=True)
class ConsentRow:
    person: str
    purpose: str
    given_at: pd.Timestamp
    withdrawn_at: pd.Timestamp | None


def import_consent(
    sandbox: Sandbox,
    *,
    by: Person,
    dataset: str,
    source: Path | BinaryIO,
    filename: str,
) -> dict[str, int]:
    """Merge the registry file into the dataset's consent records; counts of what changed."""
    with transaction(sandbox, by=by, action="consent.import", subject=dataset) as session:
        check_governs(session, by=by, dataset=dataset)
        current = published(session, dataset)
        manifest = current.manifest
        if not manifest.consent_column:
            raise InvalidRequest(
                f"Dataset {dataset} declares no consent column: its definition names none.",
                rule="consent.none",
            )
        frame = _read(sandbox, source, filename)
        table, _, _ = manifest.consent_column.partition(".")
        known = set(person_texts(sandbox.store.read_table(dataset, table)[manifest.privacy_unit]))
        rows = _checked(frame, filename=filename, known=known)
        counts = _merge(session, dataset=dataset, rows=rows)
        audit.append(
            session,
            actor=by.username,
            action="consent.imported",
            subject=dataset,
            details={"file": filename[:100], **counts},
        )
        return counts


def _read(sandbox: Sandbox, source: Path | BinaryIO, filename: str) -> pd.DataFrame:
    folder = sandbox.settings.instance / "staging" / f"consent-{secrets.token_hex(8)}"
    staging = Staging(folder, secrets.token_bytes(32))
    try:
        (staged, *more) = stage_file(
            source,
            filename=filename,
            staging=staging,
            table="consent",
            options=FileOptions(max_bytes=sandbox.settings.max_import_bytes),
        )
        if more:
            raise InvalidRequest(
                f"{filename}: the consent registry is one table; the file holds several.",
                file=filename,
                rule="consent.columns",
            )
        return staging.read_table(staged.name).to_pandas()
    except SourceError as error:
        raise refused_source(error) from error
    except DatasetError as error:
        raise InvalidRequest(str(error), file=filename, rule="consent.file") from error
    finally:
        staging.destroy()
        shutil.rmtree(folder, ignore_errors=True)


def _checked(frame: pd.DataFrame, *, filename: str, known: set[str]) -> list[ConsentRow]:
    columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in COLUMNS if c not in columns]
    unknown = [c for c in columns if c not in (*COLUMNS, *OPTIONAL)]
    if missing or unknown:
        wrong = f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(unknown)}"
        raise InvalidRequest(
            f"{filename}: the columns must be {', '.join(COLUMNS)} and optionally "
            f"withdrawn_at; {wrong}.",
            file=filename,
            rule="consent.columns",
        )
    frame = frame.set_axis(columns, axis=1)
    rows: list[ConsentRow] = []
    seen: dict[tuple[str, str], int] = {}
    for number, record in enumerate(frame.itertuples(index=False), start=2):
        values = record._asdict()
        person = _field(values.get("person_id"), filename, number, "person_id")
        purpose = _field(values.get("purpose"), filename, number, "purpose")
        if not NAME.match(purpose):
            _refuse(filename, number, "purpose", "consent.purpose", "is not a purpose name")
        if person not in known:
            _refuse(
                filename,
                number,
                "person_id",
                "consent.person_unknown",
                "is no person of the dataset",
            )
        given = _date(values.get("given_at"), filename, number, "given_at", required=True)
        withdrawn = _date(values.get("withdrawn_at"), filename, number, "withdrawn_at")
        assert given is not None
        if withdrawn is not None and withdrawn < given:
            _refuse(filename, number, "withdrawn_at", "consent.order", "is before given_at")
        if (person, purpose) in seen:
            _refuse(
                filename,
                number,
                "person_id",
                "consent.duplicate",
                f"repeats the person and purpose of row {seen[(person, purpose)]}",
            )
        seen[(person, purpose)] = number
        rows.append(ConsentRow(person, purpose, given, withdrawn))
    if not rows:
        raise InvalidRequest(
            f"{filename}: the registry has no rows.", file=filename, rule="import.empty"
        )
    return rows


def _field(value: object, filename: str, row: int, column: str) -> str:
    text = "" if value is None or value != value else str(value).strip()
    if not text or len(text) > MAX_FIELD_CHARS:
        _refuse(
            filename, row, column, "consent.field", f"must be 1 to {MAX_FIELD_CHARS} characters"
        )
    return text


def _date(
    value: object, filename: str, row: int, column: str, *, required: bool = False
) -> pd.Timestamp | None:
    text = "" if value is None or value != value else str(value).strip()
    if not text:
        if required:
            _refuse(filename, row, column, "consent.date", "is empty")
        return None
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError):
        _refuse(filename, row, column, "consent.date", "is not a date (YYYY-MM-DD)")
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp


def _refuse(filename: str, row: int, column: str, rule: str, why: str) -> None:
    raise InvalidRequest(
        f"{filename}, row {row}, column {column}: the value {why}.",
        file=filename,
        row=row,
        column=column,
        rule=rule,
    )


def _merge(session: Session, *, dataset: str, rows: list[ConsentRow]) -> dict[str, int]:
    purposes = sorted({r.purpose for r in rows})
    existing: dict[tuple[str, str], list[ConsentRecord]] = {}
    for record in session.scalars(
        select(ConsentRecord).where(
            ConsentRecord.dataset == dataset, ConsentRecord.purpose.in_(purposes)
        )
    ):
        existing.setdefault((record.person_id, record.purpose), []).append(record)
    given = withdrawn = kept = unchanged = 0
    now = utcnow()
    for row in rows:
        records = existing.get((row.person, row.purpose), [])
        active = [r for r in records if r.withdrawn_at is None]
        if row.withdrawn_at is not None:
            for record in active:
                record.withdrawn_at = row.withdrawn_at.to_pydatetime()
                withdrawn += 1
            unchanged += not active
            continue
        if active:
            unchanged += 1
            continue
        later = [r.withdrawn_at for r in records if r.withdrawn_at is not None]
        if later and max(_aware(w) for w in later) > row.given_at.to_pydatetime():
            kept += 1  # withdrawn here after the registry's consent: the withdrawal stands
            continue
        session.add(
            ConsentRecord(
                dataset=dataset,
                person_id=row.person,
                purpose=row.purpose,
                given_at=min(row.given_at.to_pydatetime(), now),
            )
        )
        given += 1
    session.flush()
    return {
        "rows": len(rows),
        "given": given,
        "withdrawn": withdrawn,
        "withdrawals_kept": kept,
        "unchanged": unchanged,
    }


def _aware(stamp: object) -> pd.Timestamp:
    value = pd.Timestamp(stamp)  # type: ignore[arg-type]
    return value if value.tzinfo is not None else value.tz_localize("UTC")
