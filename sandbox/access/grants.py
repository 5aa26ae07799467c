"""Grants: a data owner's authorization of one analyst on one dataset (集中授权)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from policies.permissions import (
    Person,
    user_may_govern_dataset,
    user_may_list_grants,
    user_may_read_budgets,
    user_may_receive_grant,
)
from policies.policy_file import DatasetPolicy, PolicyFileError
from sandbox.access.users import user_named
from sandbox.actions import transaction
from sandbox.catalog import check_governs, dataset_owners, published
from sandbox.context import Sandbox
from sandbox.errors import Forbidden, InvalidRequest, NoActiveGrant, NotFound
from sandbox.integrity import audit
from sandbox.models import Grant, User, iso, utcnow

MODES = ("dp", "masked")
# Beyond these a grant is a mistake, and its expiry or threshold overflows what is stored.
MAX_GRANT_DAYS = 3650
MAX_K_THRESHOLD = 1_000_000


@dataclass(frozen=True)
class GrantTerms:
    """What a grant allows: the one place its defaults are written."""

    modes: tuple[str, ...] = MODES
    epsilon_total: float = 10.0
    max_epsilon_per_job: float = 2.0
    delta_total: float = 0.0
    max_delta_per_job: float = 1e-5
    max_rows_per_person: int | None = None
    k_threshold: int = 10
    days: int = 90
    purpose: str = "research"
    requires_consent: bool = True
    requires_review: bool = False
    columns: tuple[str, ...] = ()
    column_rules: Mapping[str, object] = field(default_factory=dict)

    def checked(self, policy: DatasetPolicy) -> GrantTerms:
        """The terms with names normalised, or InvalidRequest naming the field."""
        numbers = (self.epsilon_total, self.max_epsilon_per_job, self.k_threshold, self.days)
        if any(isinstance(n, bool) or not isinstance(n, int | float) for n in numbers):
            raise InvalidRequest("epsilon, k and days must be numbers.")
        bad = [m for m in self.modes if m not in MODES]
        if not self.modes or bad:
            raise InvalidRequest(f"modes must be a non-empty list of {', '.join(MODES)}.")
        if (
            not math.isfinite(self.epsilon_total)
            or not math.isfinite(self.max_epsilon_per_job)
            or self.epsilon_total < 0
            or self.max_epsilon_per_job <= 0
            or not 2 <= self.k_threshold <= MAX_K_THRESHOLD
            or not 1 <= self.days <= MAX_GRANT_DAYS
        ):
            raise InvalidRequest(
                f"epsilon must be a finite positive number, k from 2 to {MAX_K_THRESHOLD} "
                f"and days from 1 to {MAX_GRANT_DAYS}."
            )
        if self.max_rows_per_person is not None and not 1 <= self.max_rows_per_person <= 1000:
            raise InvalidRequest("max_rows_per_person must be from 1 to 1000.")
        columns = tuple(c.strip().lower() for c in self.columns)
        rules = {str(k).strip().lower(): v for k, v in self.column_rules.items()}
        if columns or rules:
            check_narrowing(policy, columns=list(columns), column_rules=rules)
        return replace(
            self,
            modes=tuple(m for m in MODES if m in self.modes),
            epsilon_total=float(self.epsilon_total),
            max_epsilon_per_job=float(self.max_epsilon_per_job),
            k_threshold=int(self.k_threshold),
            days=int(self.days),
            columns=columns,
            column_rules=rules,
        )


def grant_access(
    sandbox: Sandbox, *, by: Person, dataset: str, analyst: str, terms: GrantTerms
) -> dict[str, Any]:
    """The owner of ``dataset`` authorizes the analyst named ``analyst`` (集中授权)."""
    with transaction(sandbox, by=by, action="grant.create", subject=dataset) as session:
        return grant_view(
            add_grant(
                session, by=by, dataset=dataset, analyst=user_named(session, analyst), terms=terms
            )
        )


def add_grant(
    session: Session, *, by: Person, dataset: str, analyst: User, terms: GrantTerms
) -> Grant:
    """Record a grant in the caller's transaction (an action's, e.g. an approval's)."""
    current = published(session, dataset)
    check_governs(session, by=by, dataset=dataset)
    if not user_may_receive_grant(analyst):
        raise InvalidRequest(f"{analyst.username} is not an analyst.")
    terms = terms.checked(current.policy)
    grant = Grant(
        dataset=dataset,
        analyst_id=analyst.id,
        purpose=terms.purpose,
        modes=",".join(terms.modes),
        epsilon_total=terms.epsilon_total,
        delta_total=terms.delta_total,
        max_delta_per_job=terms.max_delta_per_job,
        max_rows_per_person=terms.max_rows_per_person,
        max_epsilon_per_job=terms.max_epsilon_per_job,
        k_threshold=terms.k_threshold,
        requires_consent=terms.requires_consent,
        requires_review=terms.requires_review,
        columns=list(terms.columns),
        column_rules=dict(terms.column_rules),
        created_by=by.id,
        expires_at=utcnow() + dt.timedelta(days=terms.days),
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
            "modes": list(terms.modes),
            "epsilon_total": terms.epsilon_total,
            "k": terms.k_threshold,
            "days": terms.days,
            "columns": list(terms.columns),
            "column_rules": dict(terms.column_rules),
        },
    )
    return grant


def check_narrowing(
    policy: DatasetPolicy, *, columns: list[str], column_rules: dict[str, Any]
) -> None:
    """Refuse a grant's columns or rules that the dataset policy cannot narrow to."""
    try:
        policy.narrowed(column_rules, columns)
    except PolicyFileError as error:
        field = "columns" if str(error).startswith("grant columns") else "column_rules"
        raise InvalidRequest(str(error), field=field) from error


def revoke_grant(sandbox: Sandbox, *, by: Person, grant_id: str) -> dict[str, Any]:
    """The dataset's owner ends a grant at once; jobs not yet released under it are not."""
    with transaction(sandbox, by=by, action="grant.revoke", subject=grant_id) as session:
        grant = session.get(Grant, grant_id)
        if grant is None:
            raise NotFound(f"There is no grant {grant_id}.")
        check_governs(session, by=by, dataset=grant.dataset)
        if grant.revoked_at is None:
            grant.revoked_at = utcnow()
            audit.append(session, actor=by.username, action="grant.revoked", subject=grant.id)
        return grant_view(grant)


def list_grants(sandbox: Sandbox, *, by: Person) -> list[dict[str, Any]]:
    """The grants on the datasets ``by`` governs (every grant for an admin)."""
    if not user_may_list_grants(by):
        raise Forbidden("Only data owners and admins see grants.")
    with sandbox.tx() as session:
        found = session.scalars(select(Grant).order_by(Grant.created_at))
        owners = dataset_owners(session)
        return [
            grant_view(g)
            for g in found
            if user_may_govern_dataset(by, owner_id=owners.get(g.dataset))
        ]


def active_grant(session: Session, *, analyst: Person, dataset: str, mode: str) -> Grant:
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


def budgets(sandbox: Sandbox, *, by: Person) -> list[dict[str, Any]]:
    """The analyst's grants with ε and δ spent and left; nothing for other roles."""
    if not user_may_read_budgets(by):
        return []
    with sandbox.tx() as session:
        return _budgets(session, analyst_id=by.id)


def _budgets(session: Session, *, analyst_id: int) -> list[dict[str, Any]]:
    grants = session.scalars(select(Grant).where(Grant.analyst_id == analyst_id))
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
