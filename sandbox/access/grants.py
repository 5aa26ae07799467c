"""Grants: a data owner's authorization of one analyst on one dataset (集中授权)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from datasets.health_manifest import MANIFESTS
from policies.policy_file import PolicyFileError, load_policy
from sandbox.errors import Forbidden, InvalidRequest, NoActiveGrant, NotFound
from sandbox.integrity import audit
from sandbox.models import Grant, Role, User, iso, utcnow

MODES = ("dp", "masked")


def grant_access(
    session: Session,
    *,
    by: User,
    dataset: str,
    analyst: User,
    modes: list[str],
    epsilon_total: float = 10.0,
    max_epsilon_per_job: float = 2.0,
    delta_total: float = 0.0,
    max_delta_per_job: float = 1e-5,
    max_rows_per_person: int | None = None,
    k_threshold: int = 10,
    days: int = 90,
    purpose: str = "research",
    requires_consent: bool = True,
    requires_review: bool = False,
    columns: list[str] | None = None,
    column_rules: dict[str, Any] | None = None,
) -> Grant:
    if by.role not in (Role.OWNER, Role.ADMIN):
        raise Forbidden("Only a data owner can grant access.")
    if dataset not in MANIFESTS:
        raise NotFound(f"There is no dataset {dataset}.")
    if analyst.role != Role.ANALYST:
        raise InvalidRequest(f"{analyst.username} is not an analyst.")
    bad = [m for m in modes if m not in MODES]
    if not modes or bad:
        raise InvalidRequest(f"modes must be a non-empty list of {', '.join(MODES)}.")
    if epsilon_total < 0 or max_epsilon_per_job <= 0 or k_threshold < 2 or days <= 0:
        raise InvalidRequest("epsilon must be positive, k at least 2 and days at least 1.")
    if max_rows_per_person is not None and not 1 <= max_rows_per_person <= 1000:
        raise InvalidRequest("max_rows_per_person must be from 1 to 1000.")
    columns = [c.strip().lower() for c in columns or []]
    column_rules = {str(k).strip().lower(): v for k, v in (column_rules or {}).items()}
    if columns or column_rules:
        check_narrowing(dataset, columns=columns, column_rules=column_rules)
    grant = Grant(
        dataset=dataset,
        analyst_id=analyst.id,
        purpose=purpose,
        modes=",".join(modes),
        epsilon_total=epsilon_total,
        delta_total=delta_total,
        max_delta_per_job=max_delta_per_job,
        max_rows_per_person=max_rows_per_person,
        max_epsilon_per_job=max_epsilon_per_job,
        k_threshold=k_threshold,
        requires_consent=requires_consent,
        requires_review=requires_review,
        columns=columns,
        column_rules=column_rules,
        created_by=by.id,
        expires_at=utcnow() + dt.timedelta(days=days),
    )
    session.add(grant)
    session.flush()
    audit.append(
        session,
        actor=by.username,
        action="grant.created",
        subject=grant.id,
        details={
            "dataset": dataset,
            "analyst": analyst.username,
            "modes": modes,
            "epsilon_total": epsilon_total,
            "k": k_threshold,
            "days": days,
            "columns": columns,
            "column_rules": column_rules,
        },
    )
    return grant


def check_narrowing(dataset: str, *, columns: list[str], column_rules: dict[str, Any]) -> None:
    """Refuse a grant's columns or rules that the dataset policy cannot narrow to."""
    try:
        load_policy(MANIFESTS[dataset]).narrowed(column_rules, columns)
    except PolicyFileError as error:
        field = "columns" if str(error).startswith("grant columns") else "column_rules"
        raise InvalidRequest(str(error), field=field) from error


def revoke_grant(session: Session, *, by: User, grant_id: str) -> Grant:
    grant = session.get(Grant, grant_id)
    if grant is None:
        raise NotFound(f"There is no grant {grant_id}.")
    if by.role not in (Role.OWNER, Role.ADMIN):
        raise Forbidden("Only a data owner can revoke a grant.")
    if grant.revoked_at is None:
        grant.revoked_at = utcnow()
        audit.append(session, actor=by.username, action="grant.revoked", subject=grant.id)
    return grant


def active_grant(session: Session, *, analyst: User, dataset: str, mode: str) -> Grant:
    grants = session.scalars(
        select(Grant)
        .where(Grant.analyst_id == analyst.id, Grant.dataset == dataset)
        .order_by(Grant.created_at.desc())
    )
    for grant in grants:
        if grant.is_active() and mode in grant.mode_list:
            return grant
    raise NoActiveGrant(f"You have no active grant for {mode} jobs on {dataset}.")


def charge_budget(session: Session, *, grant_id: str, epsilon: float, delta: float = 0.0) -> bool:
    """Spend ε (and δ) from the grant's ledger in one atomic update; False if it would overspend."""
    result = session.execute(
        update(Grant)
        .where(
            Grant.id == grant_id,
            Grant.epsilon_spent + epsilon <= Grant.epsilon_total + 1e-9,
            Grant.delta_spent + delta <= Grant.delta_total + 1e-15,
        )
        .values(epsilon_spent=Grant.epsilon_spent + epsilon, delta_spent=Grant.delta_spent + delta)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def refund_budget(session: Session, *, grant_id: str, epsilon: float, delta: float = 0.0) -> None:
    """Give back ε and δ for a job that failed before any noisy value was drawn."""
    session.execute(
        update(Grant)
        .where(Grant.id == grant_id)
        .values(epsilon_spent=Grant.epsilon_spent - epsilon, delta_spent=Grant.delta_spent - delta)
        .execution_options(synchronize_session=False)
    )


def budgets(session: Session, *, user_id: int) -> list[dict[str, Any]]:
    grants = session.scalars(select(Grant).where(Grant.analyst_id == user_id))
    return [
        {
            "grant": g.id,
            "dataset": g.dataset,
            "modes": g.mode_list,
            "active": g.is_active(),
            "epsilon_total": g.epsilon_total,
            "epsilon_spent": round(g.epsilon_spent, 9),
            "epsilon_remaining": round(g.epsilon_remaining, 9),
            "delta_total": g.delta_total,
            "delta_spent": g.delta_spent,
            "max_delta_per_job": g.max_delta_per_job,
            "max_rows_per_person": g.max_rows_per_person,
            "max_epsilon_per_job": g.max_epsilon_per_job,
            "k_threshold": g.k_threshold,
            "expires_at": iso(g.expires_at),
        }
        for g in grants
    ]


def grant_view(grant: Grant) -> dict[str, Any]:
    return {
        "id": grant.id,
        "dataset": grant.dataset,
        "analyst": grant.analyst.username,
        "modes": grant.mode_list,
        "purpose": grant.purpose,
        "epsilon_total": grant.epsilon_total,
        "epsilon_spent": grant.epsilon_spent,
        "max_epsilon_per_job": grant.max_epsilon_per_job,
        "k_threshold": grant.k_threshold,
        "requires_consent": grant.requires_consent,
        "requires_review": grant.requires_review,
        "expires_at": iso(grant.expires_at),
        "revoked_at": iso(grant.revoked_at),
        "active": grant.is_active(),
    }
