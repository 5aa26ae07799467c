"""Consent (个人授权): each person's consent to each purpose of use, until withdrawn.

A grant that requires consent sees only the persons with an active record for
its purpose; the dataset's owner may authorise some purposes centrally (集中授权,
``central_authorization`` in the policy file), and then no record is needed.
The records are seeded from the consent flag the data arrives with; the owner
withdraws or gives consent person by person afterwards, and every job that
starts later sees the change.

Audit entries never hold a person's id: it is the raw key of the data, and the
log is read by people who must not learn who withdrew.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from datasets.manifest import Manifest
from policies.permissions import Person
from sandbox.actions import transaction
from sandbox.catalog import Published, check_governs
from sandbox.context import Sandbox
from sandbox.errors import Conflict, InvalidRequest, NotFound
from sandbox.integrity import audit
from sandbox.models import ConsentRecord, DatasetRecord, Grant, utcnow

MAX_FIELD_CHARS = 64  # the width of ConsentRecord.person_id and .purpose


def seed_consent(session: Session, *, manifest: Manifest, patients: pd.DataFrame, by: str) -> int:
    """Record consent for every person whose consent flag is true; return how many.

    Re-seeding replaces the active records of the seeded purposes; withdrawals
    already recorded stay in force (a person who withdrew is not seeded again),
    so storing the data anew cannot bring consent back.
    """
    dataset = manifest.name
    flag = _consent_flag(manifest)
    unit = manifest.privacy_unit
    if unit not in patients.columns or flag not in patients.columns:
        raise InvalidRequest(f"The {dataset} data lacks the column {unit} or {flag}.")
    given = patients[flag].astype("boolean").fillna(False).to_numpy(dtype=bool)
    persons = sorted(set(person_texts(patients[unit][given].dropna())))
    purposes = tuple(manifest.consent_purposes)

    now = utcnow()
    rows: list[dict[str, object]] = []
    kept_withdrawn = 0
    for purpose in purposes:
        withdrawn = _withdrawn_only(session, dataset=dataset, purpose=purpose)
        session.execute(
            delete(ConsentRecord)
            .where(
                ConsentRecord.dataset == dataset,
                ConsentRecord.purpose == purpose,
                ConsentRecord.withdrawn_at.is_(None),
            )
            .execution_options(synchronize_session=False)
        )
        seeded = [p for p in persons if p not in withdrawn]
        kept_withdrawn += len(persons) - len(seeded)
        rows.extend(
            {"dataset": dataset, "person_id": p, "purpose": purpose, "given_at": now}
            for p in seeded
        )
    if rows:
        # One executemany: about a second for 100,000 persons, where ORM objects take ten.
        session.execute(insert(ConsentRecord), rows)
    audit.append(
        session,
        actor=by,
        action="consent.seeded",
        subject=dataset,
        details={
            "purposes": list(purposes),
            "persons": int(patients[unit].nunique()),
            "consenting": len(persons),
            "records": len(rows),
            "withdrawals_kept": kept_withdrawn,
        },
    )
    return len(rows)


def withdraw_consent(
    sandbox: Sandbox, *, by: Person, dataset: str, person_id: object, purpose: object
) -> int:
    """End the person's active consent to ``purpose``; return how many records it ended."""
    with transaction(sandbox, by=by, action="consent.withdraw", subject=dataset) as session:
        _check_owner(session, by=by, dataset=dataset)
        return _withdraw(session, by=by, dataset=dataset, person_id=person_id, purpose=purpose)


def _withdraw(
    session: Session, *, by: Person, dataset: str, person_id: object, purpose: object
) -> int:
    person, use = _text(person_id, "person_id"), _text(purpose, "purpose")
    result = session.execute(
        update(ConsentRecord)
        .where(
            ConsentRecord.dataset == dataset,
            ConsentRecord.person_id == person,
            ConsentRecord.purpose == use,
            ConsentRecord.withdrawn_at.is_(None),
        )
        .values(withdrawn_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    ended = int(result.rowcount)  # type: ignore[attr-defined]
    if ended == 0:
        raise NotFound(f"That person has no active consent to {use} in {dataset}.")
    audit.append(
        session,
        actor=by.username,
        action="consent.withdrawn",
        subject=dataset,
        details={"purpose": use, "records": ended},
    )
    return ended


def give_consent(
    sandbox: Sandbox, *, by: Person, dataset: str, person_id: object, purpose: object
) -> int:
    """Record the person's consent to ``purpose``; return how many records it added (1)."""
    with transaction(sandbox, by=by, action="consent.give", subject=dataset) as session:
        _check_owner(session, by=by, dataset=dataset)
        person, use = _text(person_id, "person_id"), _text(purpose, "purpose")
        return _give(session, by=by, dataset=dataset, person_id=person, purpose=use)


def _give(session: Session, *, by: Person, dataset: str, person_id: str, purpose: str) -> int:
    active = session.scalar(
        select(ConsentRecord.id).where(
            ConsentRecord.dataset == dataset,
            ConsentRecord.person_id == person_id,
            ConsentRecord.purpose == purpose,
            ConsentRecord.withdrawn_at.is_(None),
        )
    )
    if active is not None:
        raise Conflict(f"That person already consents to {purpose} in {dataset}.")
    session.add(ConsentRecord(dataset=dataset, person_id=person_id, purpose=purpose))
    session.flush()
    audit.append(
        session,
        actor=by.username,
        action="consent.given",
        subject=dataset,
        details={"purpose": purpose, "records": 1},
    )
    return 1


def consent_basis(
    session: Session, *, dataset: str, grant: Grant, current: Published
) -> tuple[str, frozenset[str] | None]:
    """Why a view under ``grant`` is or is not filtered by consent, and the persons it keeps.

    A dataset whose owner declared no consent source (no consent column in its
    definition) holds no per-person consent to filter by: the owner opened it by
    central authorization as a whole. Read in the transaction that starts a run,
    so a withdrawal committed before it counts and the run sees one snapshot.
    """
    if current.manifest.consent_column is None:
        return "no_consent_source", None
    if grant.purpose in current.policy.central_authorization_purposes:
        return "central_authorization", None
    if not grant.requires_consent:
        return "not_required", None
    return "consent", frozenset(consenting_persons(session, dataset=dataset, purpose=grant.purpose))


def apply_consent(
    session: Session,
    *,
    dataset: str,
    grant: Grant,
    current: Published,
    actor: str,
    run: dict[str, str],
) -> frozenset[str] | None:
    """The persons a run's view keeps (None: no filter), audited as ``consent.applied``
    with why and for which ``run`` (``{"job": id}``, ``{"submission": id}``)."""
    basis, consenting = consent_basis(session, dataset=dataset, grant=grant, current=current)
    audit.append(
        session,
        actor=actor,
        action="consent.applied",
        subject=dataset,
        details={
            **run,
            "grant": grant.id,
            "purpose": grant.purpose,
            "basis": basis,
            "persons": None if consenting is None else len(consenting),
        },
    )
    return consenting


def consenting_persons(session: Session, *, dataset: str, purpose: str) -> set[str]:
    """The raw person ids (as text) with active consent to ``purpose``."""
    return set(
        session.scalars(
            select(ConsentRecord.person_id).where(
                ConsentRecord.dataset == dataset,
                ConsentRecord.purpose == purpose,
                ConsentRecord.withdrawn_at.is_(None),
            )
        )
    )


def person_texts(values: pd.Series) -> Iterable[str]:
    """Person ids as consent records hold them: the raw key as text (``7``, not ``7.0``)."""
    if pd.api.types.is_integer_dtype(values.dtype):
        return map(str, values.tolist())
    return (
        str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in values.tolist()
    )


# --- building blocks ------------------------------------------------------------------


def _consent_flag(manifest: Manifest) -> str:
    if not manifest.consent_column or "." not in manifest.consent_column:
        raise InvalidRequest(f"Dataset {manifest.name} declares no consent column.")
    return manifest.consent_column.split(".", 1)[1]


def _withdrawn_only(session: Session, *, dataset: str, purpose: str) -> set[str]:
    """Persons with a withdrawn record for ``purpose`` and no active one."""
    rows = session.execute(
        select(ConsentRecord.person_id, ConsentRecord.withdrawn_at.is_(None)).where(
            ConsentRecord.dataset == dataset, ConsentRecord.purpose == purpose
        )
    )
    withdrawn: set[str] = set()
    active: set[str] = set()
    for person, is_active in rows:
        (active if is_active else withdrawn).add(person)
    return withdrawn - active


def _check_owner(session: Session, *, by: Person, dataset: str) -> None:
    if session.scalar(select(DatasetRecord.id).where(DatasetRecord.name == dataset)) is None:
        raise NotFound(f"There is no dataset {dataset}.")
    check_governs(session, by=by, dataset=dataset)


def _text(value: object, name: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > MAX_FIELD_CHARS:
        raise InvalidRequest(f"{name} must be 1 to {MAX_FIELD_CHARS} characters.", field=name)
    return value.strip()
