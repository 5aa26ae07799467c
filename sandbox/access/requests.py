"""Access requests: an analyst asks for a grant; a data owner approves, narrows or denies it.

An approval can only narrow what was asked for (fewer columns and modes, less
epsilon, fewer days, a higher k, stricter column rules), never widen it, so
the analyst's request is the most the grant can ever hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from datasets.manifest import Manifest
from policies.permissions import (
    Person,
    user_may_list_access_requests,
    user_may_request_access,
    user_may_see_access_request,
)
from policies.policy_file import DatasetPolicy
from sandbox.access.grants import MODES, GrantTerms, add_grant, grant_view
from sandbox.actions import transaction
from sandbox.catalog import check_governs, dataset_owners, published
from sandbox.context import Sandbox
from sandbox.errors import Conflict, Forbidden, InvalidRequest, NotFound
from sandbox.integrity import audit
from sandbox.models import AccessRequest, AccessRequestStatus, Grant, User, iso, utcnow

MAX_PURPOSE_CHARS = 64
MAX_TEXT_CHARS = 4000
MAX_DAYS = 365


@dataclass(frozen=True)
class AccessAsk:
    """What an analyst asks for, as sent: every field is checked by :func:`request_access`."""

    dataset: str
    purpose: object = ""
    columns: object = field(default_factory=list)
    modes: object = field(default_factory=list)
    epsilon: object = 0.0
    days: object = 90
    justification: object = ""


@dataclass(frozen=True)
class Approval:
    """An owner's answer to a request: ``None`` keeps what was asked for; the rest narrows."""

    comment: object = ""
    columns: object = None
    modes: object = None
    epsilon: object = None
    days: object = None
    k_threshold: object = None
    column_rules: object = None


def request_access(sandbox: Sandbox, *, by: Person, ask: AccessAsk) -> dict[str, Any]:
    """File a pending request; an empty ``columns`` asks for every column the policy allows."""
    subject = ask.dataset if isinstance(ask.dataset, str) else ""
    with transaction(sandbox, by=by, action="access.request", subject=subject) as session:
        return access_request_view(session, _file_request(session, by=by, ask=ask))


def _file_request(session: Session, *, by: Person, ask: AccessAsk) -> AccessRequest:
    if not user_may_request_access(by):
        raise Forbidden("Only analysts request access.")
    current = published(session, ask.dataset)
    manifest = current.manifest
    dataset = manifest.name
    purpose = _text(ask.purpose, "purpose", limit=MAX_PURPOSE_CHARS, required=True)
    justification = _text(ask.justification, "justification", limit=MAX_TEXT_CHARS)
    wanted_columns = _checked_columns(manifest, current.policy, ask.columns)
    wanted_modes = _checked_modes(ask.modes)
    epsilon = _checked_epsilon(ask.epsilon, wanted_modes)
    days = _checked_days(ask.days, limit=MAX_DAYS)
    duplicate = session.scalar(
        select(AccessRequest.id).where(
            AccessRequest.analyst_id == by.id,
            AccessRequest.dataset == dataset,
            AccessRequest.purpose == purpose,
            AccessRequest.status == AccessRequestStatus.PENDING.value,
        )
    )
    if duplicate is not None:
        raise Conflict(
            f"You have a pending request for {dataset} with this purpose already.",
            request=duplicate,
        )
    request = AccessRequest(
        analyst_id=by.id,
        dataset=dataset,
        purpose=purpose,
        justification=justification,
        columns=wanted_columns,
        modes=",".join(wanted_modes),
        epsilon=epsilon,
        days=days,
        status=AccessRequestStatus.PENDING.value,
    )
    session.add(request)
    session.flush()
    audit.append(
        session,
        actor=by.username,
        action="access.requested",
        subject=request.id,
        details={
            "dataset": dataset,
            "purpose": purpose,
            "columns": wanted_columns,
            "modes": wanted_modes,
            "epsilon": epsilon,
            "days": days,
        },
    )
    return request


def approve_request(
    sandbox: Sandbox, *, by: Person, request_id: str, approval: Approval
) -> dict[str, Any]:
    """Grant what was asked for, or less of it; a field left ``None`` keeps the request's."""
    with transaction(sandbox, by=by, action="access.approve", subject=request_id) as session:
        request = _pending(session, request_id, by=by)
        _approve(session, by=by, request=request, approval=approval)
        return access_request_view(session, request)


def _approve(session: Session, *, by: Person, request: AccessRequest, approval: Approval) -> Grant:
    comment = _text(approval.comment, "comment", limit=MAX_TEXT_CHARS)
    columns, modes, epsilon = approval.columns, approval.modes, approval.epsilon
    days, k_threshold, column_rules = approval.days, approval.k_threshold, approval.column_rules
    current = published(session, request.dataset)
    manifest, policy = current.manifest, current.policy
    requested_modes = [m for m in request.modes.split(",") if m]

    approved_columns = list(request.columns)
    if columns is not None:
        approved_columns = _checked_columns(manifest, policy, columns)
        if request.columns:
            extra = [c for c in approved_columns if c not in request.columns]
            if extra or not approved_columns:
                raise InvalidRequest(
                    "An approval can only narrow the request's columns; not requested: "
                    f"{', '.join(extra) or 'every column'}.",
                    field="columns",
                )
    approved_modes = requested_modes
    if modes is not None:
        approved_modes = _checked_modes(modes)
        extra = [m for m in approved_modes if m not in requested_modes]
        if extra:
            raise InvalidRequest(f"Mode {', '.join(extra)} was not requested.", field="modes")
    approved_epsilon = request.epsilon
    if epsilon is not None:
        approved_epsilon = _checked_epsilon(epsilon, approved_modes)
        if approved_epsilon > request.epsilon:
            raise InvalidRequest(
                f"epsilon may be at most the requested {request.epsilon}.", field="epsilon"
            )
    approved_days = request.days if days is None else _checked_days(days, limit=request.days)
    k = policy.k_threshold if k_threshold is None else _checked_k(k_threshold, policy)
    if column_rules is not None and not isinstance(column_rules, dict):
        raise InvalidRequest(
            'column_rules must map "table.column" to a rule.', field="column_rules"
        )

    asked_for: dict[str, Any] = {
        "columns": sorted(request.columns),
        "modes": requested_modes,
        "epsilon": request.epsilon,
        "days": request.days,
    }
    given: dict[str, Any] = {
        "columns": sorted(approved_columns),
        "modes": approved_modes,
        "epsilon": approved_epsilon,
        "days": approved_days,
    }
    narrowed: dict[str, Any] = {
        name: {"requested": asked_for[name], "approved": given[name]}
        for name in asked_for
        if asked_for[name] != given[name]
    }
    if k_threshold is not None:
        narrowed["k_threshold"] = k

    default_cap = GrantTerms.max_epsilon_per_job
    terms = GrantTerms(
        modes=tuple(approved_modes),
        epsilon_total=approved_epsilon,
        # A small grant's per-job cap is the grant itself; the cap must stay above 0.
        max_epsilon_per_job=min(default_cap, approved_epsilon)
        if approved_epsilon > 0
        else default_cap,
        k_threshold=k,
        days=approved_days,
        purpose=request.purpose,
        columns=tuple(approved_columns),
        column_rules=column_rules or {},
    )
    grant = add_grant(
        session,
        by=by,
        dataset=request.dataset,
        analyst=session.get_one(User, request.analyst_id),
        terms=terms,
    )
    if grant.column_rules:
        narrowed["column_rules"] = grant.column_rules
    _decide(request, by=by, status=AccessRequestStatus.APPROVED, comment=comment)
    request.grant_id = grant.id
    audit.append(
        session,
        actor=by.username,
        action="access.approved",
        subject=request.id,
        details={
            "grant": grant.id,
            "dataset": request.dataset,
            "analyst": grant.analyst.username,
            "narrowed": narrowed,
            "comment": comment,
        },
    )
    return grant


def deny_request(
    sandbox: Sandbox, *, by: Person, request_id: str, comment: object
) -> dict[str, Any]:
    """Refuse the request; the analyst reads the comment, so it is required."""
    with transaction(sandbox, by=by, action="access.deny", subject=request_id) as session:
        request = _pending(session, request_id, by=by)
        _deny(session, by=by, request=request, comment=comment)
        return access_request_view(session, request)


def _deny(session: Session, *, by: Person, request: AccessRequest, comment: object) -> None:
    text = _text(comment, "comment", limit=MAX_TEXT_CHARS, required=True)
    _decide(request, by=by, status=AccessRequestStatus.DENIED, comment=text)
    audit.append(
        session,
        actor=by.username,
        action="access.denied",
        subject=request.id,
        details={
            "dataset": request.dataset,
            "analyst": request.analyst.username,
            "comment": text,
        },
    )


def list_requests(
    sandbox: Sandbox, *, by: Person, status: str | None = None
) -> list[dict[str, Any]]:
    """An analyst's own requests; an owner's, those on their datasets; newest first."""
    if not user_may_list_access_requests(by):
        raise Forbidden("Only analysts and data owners see access requests.")
    query = select(AccessRequest).order_by(AccessRequest.created_at.desc())
    if status is not None:
        if status not in {s.value for s in AccessRequestStatus}:
            names = ", ".join(s.value for s in AccessRequestStatus)
            raise InvalidRequest(f"status must be one of {names}.", field="status")
        query = query.where(AccessRequest.status == status)
    with sandbox.tx() as session:
        owners = dataset_owners(session)
        return [
            access_request_view(session, r)
            for r in session.scalars(query)
            if user_may_see_access_request(
                by, analyst_id=r.analyst_id, owner_id=owners.get(r.dataset)
            )
        ]


def _pending(session: Session, request_id: str, *, by: Person) -> AccessRequest:
    # Locked, so two owners deciding at once cannot both act on one request.
    request = session.scalars(
        select(AccessRequest).where(AccessRequest.id == request_id).with_for_update(key_share=True)
    ).one_or_none()
    if request is None:
        raise NotFound(f"There is no access request {request_id}.")
    check_governs(session, by=by, dataset=request.dataset)
    if request.status != AccessRequestStatus.PENDING:
        raise Conflict(f"The request was {request.status} already.", status=request.status)
    return request


def _decide(
    request: AccessRequest, *, by: Person, status: AccessRequestStatus, comment: str
) -> None:
    request.status = status.value
    request.decided_by = by.id
    request.decided_at = utcnow()
    request.decision_comment = comment


def _text(value: object, field: str, *, limit: int, required: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be text.", field=field)
    value = value.strip()
    if required and not value:
        raise InvalidRequest(f"{field} is required.", field=field)
    if len(value) > limit:
        raise InvalidRequest(f"{field} may be at most {limit} characters.", field=field)
    return value


def _checked_columns(manifest: Manifest, policy: DatasetPolicy, columns: object) -> list[str]:
    """Known, allowed "table.column" view names, in the order given, each once."""
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise InvalidRequest('columns must be a list of "table.column" names.', field="columns")
    negative = {f"{t.name}.{c.name}" for t in manifest.tables for c in t.columns if c.forbidden}
    renamed = {
        f"{t.name}.{c.name}": f"{t.name}.{c.view_name}"
        for t in manifest.tables
        for c in t.columns
        if c.view_name != c.name
    }
    names: list[str] = []
    refused: list[str] = []
    unknown: list[str] = []
    for raw in columns:
        name = raw.strip().lower()
        if name in negative or (name in policy.columns and policy.columns[name].forbidden):
            refused.append(name)
        elif name not in policy.columns:
            unknown.append(f"{name} (the view has {renamed[name]})" if name in renamed else name)
        elif name not in names:
            names.append(name)
    if refused:
        raise InvalidRequest(
            f"{', '.join(refused)} may not be requested: forbidden by the {manifest.name} "
            "policy (direct identifiers are on the negative list, 负面清单).",
            field="columns",
            columns=refused,
        )
    if unknown:
        raise InvalidRequest(
            f"{', '.join(unknown)}: not a column of {manifest.name}.", field="columns"
        )
    return names


def _checked_modes(modes: object) -> list[str]:
    if (
        not isinstance(modes, list)
        or not modes
        or not all(isinstance(m, str) and m in MODES for m in modes)
    ):
        raise InvalidRequest(
            f"modes must be a non-empty list of {', '.join(MODES)}.", field="modes"
        )
    return [m for m in MODES if m in modes]


def _checked_epsilon(epsilon: object, modes: list[str]) -> float:
    if (
        isinstance(epsilon, bool)
        or not isinstance(epsilon, int | float)
        or not math.isfinite(epsilon)
        or epsilon < 0
    ):
        raise InvalidRequest("epsilon must be a finite number of at least 0.", field="epsilon")
    if "dp" in modes and epsilon <= 0:
        raise InvalidRequest("dp jobs need an epsilon above 0.", field="epsilon")
    return float(epsilon)


def _checked_days(days: object, *, limit: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= limit:
        raise InvalidRequest(f"days must be a whole number from 1 to {limit}.", field="days")
    return days


def _checked_k(k: object, policy: DatasetPolicy) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < policy.k_threshold:
        raise InvalidRequest(
            f"k_threshold must be a whole number of at least {policy.k_threshold}, "
            "the dataset policy's.",
            field="k_threshold",
        )
    return k


def access_request_view(session: Session, request: AccessRequest) -> dict[str, Any]:
    """A request as its analyst and the owners see it, with the grant it became."""
    decider = session.get(User, request.decided_by) if request.decided_by is not None else None
    grant = session.get(Grant, request.grant_id) if request.grant_id is not None else None
    return {
        "id": request.id,
        "dataset": request.dataset,
        "analyst": request.analyst.username,
        "purpose": request.purpose,
        "justification": request.justification,
        "columns": list(request.columns),
        "modes": [m for m in request.modes.split(",") if m],
        "epsilon": request.epsilon,
        "days": request.days,
        "status": request.status,
        "created_at": iso(request.created_at),
        "decided_by": decider.username if decider is not None else None,
        "decided_at": iso(request.decided_at),
        "comment": request.decision_comment,
        "grant": grant_view(grant)
        | {"columns": list(grant.columns), "column_rules": dict(grant.column_rules)}
        if grant is not None
        else None,
    }
