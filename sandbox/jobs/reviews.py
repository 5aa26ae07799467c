"""Auditor review of outputs held for it, and the analyst's objection (异议处置).

The pipeline holds a job in ``pending_review`` when its grant asks for review
or a disclosure check held an output. Auditors then approve or withhold it,
each with a comment; the dataset's owner sets how many distinct auditors must
approve (1 or 2), and how many when an output is one the sandbox could not
compute again itself (:mod:`sandbox.jobs.verification`; two unless the owner
lowers it), and any withholding withholds. The job's analyst never counts, and
an auditor who approves twice counts once. The analyst may object to a
withholding, which sends the job back for review in a new round: approvals
count within their round only, so an objection is decided afresh.

Every step is a :class:`ReviewEvent` and an audit entry, written in the
caller's transaction. Held outputs are shown to auditors and admins only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from policies.permissions import (
    Person,
    user_may_govern_dataset,
    user_may_object_to_review,
    user_may_read_held_outputs,
    user_may_review_job,
    user_may_review_jobs,
    user_may_set_review_quorum,
)
from sandbox.access.grants import grant_view
from sandbox.actions import transaction
from sandbox.context import Sandbox
from sandbox.errors import Conflict, Forbidden, InvalidRequest, NotFound
from sandbox.integrity import audit
from sandbox.jobs import released_rows, risk_signals
from sandbox.jobs.lifecycle import job_lock, move
from sandbox.jobs.release import release
from sandbox.models import (
    DatasetRecord,
    Grant,
    Job,
    JobStatus,
    ReviewEvent,
    ReviewKind,
    iso,
    utcnow,
)

MAX_COMMENT_CHARS = 2000
REVIEWERS_ALLOWED = (1, 2)
WITHHELD_BY_REVIEW = "withheld_by_review"
DECISIONS = (ReviewKind.APPROVE, ReviewKind.WITHHOLD)
# The settings an owner may change, and why a review needs as many approvals as it does.
QUORUM_SETTINGS = ("reviewers_required", "unverified_reviewers_required")
BECAUSE_DATASET = "dataset_setting"
BECAUSE_UNVERIFIED = "unverified_output"


@dataclass(frozen=True)
class Quorum:
    """How many distinct auditors must approve a held job, and why that many."""

    required: int
    because: str  # BECAUSE_DATASET or BECAUSE_UNVERIFIED
    unverified: tuple[str, ...] = ()  # the outputs the sandbox could not verify

    def to_dict(self, given: int) -> dict[str, Any]:
        return {
            "required": self.required,
            "given": given,
            "because": self.because,
            "unverified_outputs": list(self.unverified),
        }


def quorum_of(*, reviewers: int, unverified_reviewers: int, unverified: list[str]) -> Quorum:
    """The approvals a job needs: the dataset's number, or its number for unverified outputs
    when any output is unverified and that number is the larger."""
    reviewers = max(reviewers, 1)
    if unverified and unverified_reviewers > reviewers:
        return Quorum(unverified_reviewers, BECAUSE_UNVERIFIED, tuple(unverified))
    return Quorum(reviewers, BECAUSE_DATASET, tuple(unverified))


# --- actions ---------------------------------------------------------------------------------


def review_job(
    sandbox: Sandbox, *, by: Person, job_id: str, decision: str, comment: str
) -> dict[str, Any]:
    """An auditor's decision on a held output; where the review stands after it."""
    with transaction(sandbox, by=by, action="job.review", subject=job_id) as session:
        return review_state(
            session,
            decide_review(
                sandbox, session, by=by, job_id=job_id, decision=decision, comment=comment
            ),
        )


def decide_review(
    sandbox: Sandbox, session: Session, *, by: Person, job_id: str, decision: str, comment: str
) -> Job:
    """Record an auditor's decision; release once enough distinct auditors approved."""
    if not user_may_review_jobs(by):
        raise Forbidden("Only auditors review held outputs.")
    if decision not in DECISIONS:
        raise InvalidRequest("decision must be approve or withhold.", field="decision")
    comment = _text(comment, field="comment")
    job = _locked(session, job_id)
    if job.status != JobStatus.PENDING_REVIEW:
        raise Conflict(f"The job is {job.status}, not pending review.")
    if not user_may_review_job(by, analyst_id=job.analyst_id):
        raise Forbidden("Nobody reviews their own job.")
    events = history(session, job.id)
    round_ = current_round(events)
    approvers = approvals(events, round_, analyst_id=job.analyst_id)
    needed = quorum(session, job)
    again = decision == ReviewKind.APPROVE and by.username in approvers
    # Approving again counts once; it releases only when the owner lowered the number since.
    if again and len(approvers) < needed.required:
        raise Conflict(
            f"You approved this output already, and an auditor counts once: {len(approvers)} "
            f"of the {needed.required} approvals it needs are given; another auditor must "
            "approve it.",
            rule="review.distinct_auditors",
        )
    required = needed.required
    session.add(
        ReviewEvent(
            job_id=job.id, round=round_, kind=decision, actor_id=by.id, comment=comment, at=utcnow()
        )
    )
    details: dict[str, Any] = {"decision": decision, "comment": comment}
    if round_ > 1:
        details["round"] = round_
    given = approvers if again else [*approvers, by.username]
    if required > 1 and decision == ReviewKind.APPROVE:
        details |= {"approvals": len(given), "required": required}
        if needed.because == BECAUSE_UNVERIFIED:
            details["because"] = BECAUSE_UNVERIFIED
    audit.append(session, actor=by.username, action="job.reviewed", subject=job.id, details=details)
    if decision == ReviewKind.WITHHOLD:
        job.error_code, job.error_message = WITHHELD_BY_REVIEW, "An auditor withheld the output."
        job.finished_at = utcnow()
        move(session, job, JobStatus.WITHHELD, actor=by.username, details=details)
    elif len(given) >= required:
        # The certificate names every auditor whose approval released it.
        release(sandbox, session, job, reviewers=given)
    return job


def file_objection(sandbox: Sandbox, *, by: Person, job_id: str, reason: str) -> dict[str, Any]:
    """The analyst objects (异议) to an auditor's withholding: the job goes back for review."""
    with transaction(sandbox, by=by, action="job.object", subject=job_id) as session:
        job = _object(session, by=by, job_id=job_id, reason=reason)
        return {"id": job.id, "status": job.status, "review": analyst_view(session, job)}


def _object(session: Session, *, by: Person, job_id: str, reason: str) -> Job:
    reason = _text(reason, field="reason")
    job = _locked(session, job_id)
    if not user_may_object_to_review(by, analyst_id=job.analyst_id):
        raise NotFound(f"There is no job {job_id}.")  # do not confirm other people's jobs
    if not can_object(job):
        raise Conflict("Only an output an auditor withheld can be objected to.")
    if not session.get_one(Grant, job.grant_id).is_active():
        raise Conflict("The grant was revoked or has expired; the output cannot be released.")
    round_ = current_round(history(session, job.id)) + 1
    session.add(
        ReviewEvent(
            job_id=job.id,
            round=round_,
            kind=ReviewKind.OBJECTION,
            actor_id=by.id,
            comment=reason,
            at=utcnow(),
        )
    )
    audit.append(
        session,
        actor=by.username,
        action="job.objected",
        subject=job.id,
        details={"reason": reason, "round": round_},
    )
    job.error_code = job.error_message = None
    job.finished_at = None
    move(session, job, JobStatus.PENDING_REVIEW, actor=by.username, details={"round": round_})
    return job


def set_review_quorum(
    sandbox: Sandbox, *, by: Person, dataset: str, settings: Mapping[str, object]
) -> dict[str, Any]:
    """How many distinct auditors must approve this dataset's held outputs
    (``reviewers_required``), and those the sandbox could not verify
    (``unverified_reviewers_required``): 1 or 2 each, at least one of them given.

    Read when an auditor decides, so a change applies to jobs already waiting.
    Each change is its own audit entry.
    """
    with transaction(sandbox, by=by, action="dataset.settings", subject=dataset) as session:
        return dataset_settings(_set_quorum(session, by=by, dataset=dataset, settings=settings))


def _set_quorum(
    session: Session, *, by: Person, dataset: str, settings: Mapping[str, object]
) -> DatasetRecord:
    unknown = sorted(set(settings) - set(QUORUM_SETTINGS))
    if unknown:
        raise InvalidRequest(
            f"Unknown setting {unknown[0][:64]}: send reviewers_required or "
            "unverified_reviewers_required (1 or 2).",
            field=unknown[0][:64],
        )
    if not settings:
        raise InvalidRequest(
            "Send reviewers_required or unverified_reviewers_required (1 or 2).",
            field="reviewers_required",
        )
    for name, count in settings.items():
        if type(count) is not int or count not in REVIEWERS_ALLOWED:  # not True, not 2.0
            raise InvalidRequest(f"{name} must be 1 or 2.", field=name)
    record = session.scalars(
        select(DatasetRecord).where(DatasetRecord.name == dataset).with_for_update(key_share=True)
    ).one_or_none()
    if record is None:
        raise NotFound(f"There is no stored dataset {dataset}.")
    if not user_may_set_review_quorum(by, owner_id=record.owner_id):
        raise Forbidden(
            "Only the dataset's owner sets how many auditors approve its outputs.",
            rule="permission.dataset_owner",
        )
    for name in QUORUM_SETTINGS:
        if name not in settings or getattr(record, name) == settings[name]:
            continue
        audit.append(
            session,
            actor=by.username,
            action=f"dataset.{name}",
            subject=dataset,
            details={"from": getattr(record, name), "to": settings[name]},
        )
        setattr(record, name, settings[name])
    return record


def review_settings(sandbox: Sandbox, *, by: Person, dataset: str) -> dict[str, Any]:
    """The dataset's review settings for its governance page, and whether ``by`` may
    change them (its owner alone)."""
    with sandbox.tx() as session:
        record = session.scalar(select(DatasetRecord).where(DatasetRecord.name == dataset))
        if record is None:
            raise NotFound(f"There is no stored dataset {dataset}.")
        if not user_may_govern_dataset(by, owner_id=record.owner_id):
            raise Forbidden(
                "Only the dataset's owner or an admin reads its settings.",
                rule="permission.dataset_owner",
            )
        may_change = user_may_set_review_quorum(by, owner_id=record.owner_id)
        return dataset_settings(record) | {"may_change": may_change}


# --- the state of a review ----------------------------------------------------------------------


def pending(session: Session) -> list[Job]:
    return list(
        session.scalars(
            select(Job).where(Job.status == JobStatus.PENDING_REVIEW).order_by(Job.submitted_at)
        )
    )


def history(session: Session, job_id: str) -> list[ReviewEvent]:
    return list(
        session.scalars(
            select(ReviewEvent).where(ReviewEvent.job_id == job_id).order_by(ReviewEvent.id)
        )
    )


def current_round(events: list[ReviewEvent]) -> int:
    return max((e.round for e in events), default=1)


def approvals(
    events: list[ReviewEvent], round_: int, *, analyst_id: int | None = None
) -> list[str]:
    """The distinct auditors who approved in this round, first to last; never the analyst."""
    found = (
        e.actor.username
        for e in events
        if e.round == round_ and e.kind == ReviewKind.APPROVE and e.actor_id != analyst_id
    )
    return list(dict.fromkeys(found))


def quorum(session: Session, job: Job) -> Quorum:
    """The approvals this job needs now (the owner's settings are read at every decision)."""
    record = session.scalar(select(DatasetRecord).where(DatasetRecord.name == job.dataset))
    return quorum_under(record, job)


def quorum_under(record: DatasetRecord | None, job: Job) -> Quorum:
    """The approvals ``job`` needs under its dataset's settings (``record``)."""
    # No record: nothing can be released from it anyway; fail closed on the numbers.
    reviewers = record.reviewers_required if record is not None else 1
    unverified = record.unverified_reviewers_required if record is not None else 2
    return quorum_of(
        reviewers=reviewers,
        unverified_reviewers=unverified,
        unverified=risk_signals.unverified_outputs(
            language=job.language, result=job.result, stored=job.suppressions
        ),
    )


def can_object(job: Job) -> bool:
    """Whether the job's output was withheld by an auditor (not by a disclosure check)."""
    return (
        job.status == JobStatus.WITHHELD
        and job.error_code == WITHHELD_BY_REVIEW
        and job.result is not None
    )


# --- read models ---------------------------------------------------------------------------------


def event_view(event: ReviewEvent, *, names: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "round": event.round,
        "kind": event.kind,
        "comment": event.comment,
        "at": iso(event.at),
    }
    if names:
        data["by"] = event.actor.username
    return data


def _objection(events: list[ReviewEvent], round_: int) -> dict[str, Any] | None:
    """The objection that opened this round, if one did."""
    found = [e for e in events if e.round == round_ and e.kind == ReviewKind.OBJECTION]
    return event_view(found[0]) if found else None


def queue(sandbox: Sandbox, *, by: Person) -> list[dict[str, Any]]:
    """The held jobs, oldest first, for auditors and admins; outputs only on each review."""
    if not user_may_read_held_outputs(by):
        raise Forbidden("Only auditors and admins read held outputs.")
    with sandbox.tx() as session:
        return _queue(session, viewer=by)


def _queue(session: Session, *, viewer: Person) -> list[dict[str, Any]]:
    """The jobs waiting for review, oldest first, without their outputs."""
    jobs = pending(session)
    by_job: dict[str, list[ReviewEvent]] = {j.id: [] for j in jobs}
    records = {
        r.name: r
        for r in session.scalars(
            select(DatasetRecord).where(DatasetRecord.name.in_({j.dataset for j in jobs}))
        )
    }
    if jobs:
        for event in session.scalars(
            select(ReviewEvent).where(ReviewEvent.job_id.in_(by_job)).order_by(ReviewEvent.id)
        ):
            by_job[event.job_id].append(event)
    rows = []
    for job in jobs:
        events = by_job[job.id]
        round_ = current_round(events)
        approved = approvals(events, round_, analyst_id=job.analyst_id)
        needed = quorum_under(records.get(job.dataset), job)
        rows.append(
            {
                "id": job.id,
                "dataset": job.dataset,
                "dataset_version": job.dataset_version,
                "analyst": job.analyst.username,
                "language": job.language,
                "mode": job.mode,
                "submitted_at": iso(job.submitted_at),
                "findings": len(job.findings or []),
                "round": round_,
                "objection": _objection(events, round_),
                "approvals": approved,
                "reviewers_required": needed.required,
                "quorum": needed.to_dict(len(approved)),
                "awaits_you": _may_decide(job, viewer, approved, needed.required),
            }
        )
    return rows


def open_review(sandbox: Sandbox, *, by: Person, job_id: str) -> dict[str, Any]:
    """Everything an auditor decides on: code, held outputs, findings, terms and history.

    Reading a held output is recorded in the audit log.
    """
    with transaction(sandbox, by=by, action="review.open", subject=job_id) as session:
        return _open_review(session, by=by, job_id=job_id)


def _open_review(session: Session, *, by: Person, job_id: str) -> dict[str, Any]:
    if not user_may_read_held_outputs(by):
        raise Forbidden("Only auditors and admins read held outputs.")
    job = session.get(Job, job_id)
    events = history(session, job_id) if job is not None else []
    if job is None or (job.status != JobStatus.PENDING_REVIEW and not events):
        raise NotFound(f"Job {job_id} is not held for review.")
    round_ = current_round(events)
    approved = approvals(events, round_, analyst_id=job.analyst_id)
    needed = quorum(session, job)
    outputs = None
    if job.result is not None:
        outputs = dict(job.result)
        audit.append(
            session,
            actor=by.username,
            action="review.opened",
            subject=job.id,
            details={"status": job.status},
        )
    data: dict[str, Any] = {
        "id": job.id,
        "status": job.status,
        "analyst": job.analyst.username,
        "dataset": job.dataset,
        "dataset_version": job.dataset_version,
        "policy_version": job.policy_version,
        "language": job.language,
        "mode": job.mode,
        "epsilon": job.epsilon,
        "delta": job.delta,
        "submitted_at": iso(job.submitted_at),
        "finished_at": iso(job.finished_at),
        "code": job.code,
        "code_sha256": job.code_sha256,
        "grant": grant_view(job.grant),
        "findings": job.findings or [],
        "outputs": outputs,
        "suppressions": suppression_view(job.suppressions),
        "signals": risk_signals.signals_of(
            language=job.language,
            mode=job.mode,
            result=job.result,
            stored=job.suppressions,
            sketches=job.disclosure_sketches,
            findings=job.findings or [],
            earlier_releases=_releases_compared(session, job),
        ),
        "reviewers_required": needed.required,
        "quorum": needed.to_dict(len(approved)),
        "round": round_,
        "approvals": approved,
        "objection": _objection(events, round_) if job.status == JobStatus.PENDING_REVIEW else None,
        "history": [event_view(e) for e in events],
        "may_decide": _may_decide(job, by, approved, needed.required),
    }
    if job.error_code:
        data["error"] = {"code": job.error_code, "message": job.error_message}
    return data


def _releases_compared(session: Session, job: Job) -> int:
    """How many earlier releases under the job's grant its differencing check read."""
    return len(released_rows.released_jobs(session, grant_id=job.grant_id, except_job=job.id))


def suppression_view(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """Every suppressed row and cell with every rule it failed, by table, for auditors:
    ``cells`` maps "row:column" of the held table to its rules, ``rows`` lists dropped rows."""
    if not stored:
        return None
    tables: dict[str, dict[str, Any]] = {}
    for one in stored.get("cells") or []:
        table = tables.setdefault(one["table"], {"cells": {}, "rows": []})
        if one["column"] is None:
            table["rows"].append({"keys": one["keys"], "rules": one["rules"]})
        else:
            table["cells"][f"{one['row']}:{one['column']}"] = one["rules"]
    return {"by_rule": stored.get("by_rule") or {}, "more": stored.get("more", 0), "tables": tables}


def _may_decide(job: Job, user: Person, approved: list[str], required: int) -> bool:
    """Whether this auditor may decide now: not one who already approved, unless the owner
    has since lowered the approvals needed to what is given (then confirming releases)."""
    return (
        user_may_review_job(user, analyst_id=job.analyst_id)
        and job.status == JobStatus.PENDING_REVIEW
        and (user.username not in approved or len(approved) >= required)
    )


def review_state(session: Session, job: Job) -> dict[str, Any]:
    """Where a review stands after a decision: status, round, approvals so far."""
    events = history(session, job.id)
    round_ = current_round(events)
    approved = approvals(events, round_, analyst_id=job.analyst_id)
    needed = quorum(session, job)
    return {
        "id": job.id,
        "status": job.status,
        "round": round_,
        "approvals": approved,
        "reviewers_required": needed.required,
        "quorum": needed.to_dict(len(approved)),
    }


def analyst_view(session: Session, job: Job) -> dict[str, Any] | None:
    """What the job's analyst reads of its review: decisions and comments, no auditor names,
    never the held output. None when the job has not been reviewed."""
    events = history(session, job.id)
    if not events:
        return None
    return {
        "round": current_round(events),
        "history": [event_view(e, names=False) for e in events],
        "can_object": can_object(job),
    }


def dataset_settings(record: DatasetRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "version": record.version,
        "reviewers_required": record.reviewers_required,
        "unverified_reviewers_required": record.unverified_reviewers_required,
    }


def _locked(session: Session, job_id: str) -> Job:
    job = session.scalars(job_lock(job_id)).one_or_none()
    if job is None:
        raise NotFound(f"There is no job {job_id}.")
    return job


def _text(value: object, *, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{field} is required: say why.", field=field)
    value = value.strip()
    if len(value) > MAX_COMMENT_CHARS:
        raise InvalidRequest(f"{field} may be at most {MAX_COMMENT_CHARS} characters.", field=field)
    return value
