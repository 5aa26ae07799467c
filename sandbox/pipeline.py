"""Running one queued job: prepare the view, run isolated, control disclosure, release.

Safe to repeat: a job that is already past ``running`` is left alone, and a
job found ``running`` (its worker died) is run again from its stored code.
The view folder is deleted whatever happens.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from datasets.views import build_view, pseudonym_key, write_view
from policies.decision import Finding
from policies.disclosure import DisclosureError, apply_threshold, check_declared_output
from policies.policy_file import DatasetPolicy, PolicyFileError, load_policy
from runners import JobFailed, JobSpec, RunnerUnavailable, RunResult
from sandbox import audit, grants
from sandbox.consent import consenting_persons
from sandbox.context import Sandbox
from sandbox.dp.planner import release_noisy
from sandbox.jobs import Plan, manifest_for, move, plan_job, policy_for
from sandbox.models import FINAL_STATES, Grant, Job, JobStatus, utcnow
from sandbox.signing import sha256_json

log = logging.getLogger(__name__)
WORKER = "worker"
# A job 'running' for longer than its timeout plus this has lost its worker.
LEASE_MARGIN_S = 60


def run_job(sandbox: Sandbox, job_id: str) -> str:
    """Take the job through to a final state (or pending review); return its status."""
    with sandbox.tx() as session:
        job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).one_or_none()
        if job is None:
            log.warning("job %s does not exist", job_id)
            return "missing"
        status = JobStatus(job.status)
        if status in FINAL_STATES or status in (JobStatus.CHECKING, JobStatus.PENDING_REVIEW):
            return status.value
        if status is JobStatus.RUNNING and not _lease_expired(job, sandbox):
            return status.value  # another worker holds it
        if status is JobStatus.QUEUED:
            move(session, job, JobStatus.RUNNING, actor=WORKER, details={"attempt": 1})
        else:  # its worker died and the lease ran out: run it again
            audit.append(session, actor=WORKER, action="job.rerun", subject=job.id)
        job.attempts += 1
        job.started_at = utcnow()
        grant = session.get(Grant, job.grant_id)
        if grant is None or not grant.is_active():
            _fail(job, session, "grant_inactive", "The grant was revoked or expired; not run.")
            return job.status
        if job.cached_from:
            return _release_cached(sandbox, session, job)
        job.runner = sandbox.runner.name
        job_data = _JobData.of(job, grant)
        policy = policy_for(manifest_for(job.dataset), grant)

    folder = sandbox.settings.work_dir / job_id
    try:
        plan = plan_job(
            manifest_for(job_data.dataset),
            language=job_data.language,
            mode=job_data.mode,
            code=job_data.code,
            epsilon=job_data.epsilon,
            policy=policy,
            delta=job_data.delta,
        )
        _prepare_view(sandbox, job_data, plan, policy, folder / "input")
        spec = JobSpec(
            job_id=job_id,
            language=job_data.language,  # type: ignore[arg-type]
            code=plan.sql if plan.sql is not None else job_data.code,
            input_dir=folder / "input",
            timeout_s=sandbox.settings.job_timeout_s,
            memory_mb=sandbox.settings.job_memory_mb,
        )
        result = sandbox.runner.run(spec)
    except JobFailed as failure:
        with sandbox.tx() as session:
            job = session.get_one(Job, job_id)
            _fail(job, session, f"run.{failure.reason}", failure.message, log=failure.log)
            return job.status
    except RunnerUnavailable:
        # Not the job's fault: give up the lease so the task's retry runs it again.
        with sandbox.tx() as session:
            session.get_one(Job, job_id).started_at = None
            audit.append(session, actor=WORKER, action="job.runner_unavailable", subject=job_id)
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    return _check_and_release(sandbox, job_id, plan, policy, result)


def _release_cached(sandbox: Sandbox, session: Any, job: Job) -> str:
    """Release the earlier noisy answer to the same question; nothing runs, nothing is spent."""
    original = session.get_one(Job, job.cached_from)
    move(session, job, JobStatus.CHECKING, actor=WORKER, details={"cached_from": original.id})
    result = dict(original.result or {})
    result["privacy"] = {**result.get("privacy", {}), "cached_from": original.id,
                         "epsilon_spent_now": 0.0}  # fmt: skip
    job.result = result
    release(sandbox, session, job, reviewers=[])
    return job.status


def _lease_expired(job: Job, sandbox: Sandbox) -> bool:
    if job.started_at is None:
        return True
    started = job.started_at if job.started_at.tzinfo else job.started_at.replace(tzinfo=dt.UTC)
    lease = dt.timedelta(seconds=sandbox.settings.job_timeout_s + LEASE_MARGIN_S)
    return utcnow() - started > lease


@dataclass(frozen=True)
class _JobData:
    """The fields the run needs, read inside the first transaction."""

    dataset: str
    language: str
    mode: str
    code: str
    epsilon: float
    delta: float
    grant_id: str
    # The raw person ids (as text) the view keeps; None: no consent filter.
    consenting: frozenset[str] | None

    @classmethod
    def of(cls, job: Job, grant: Grant) -> _JobData:
        # Who consents is read in the transaction that starts the run, so a
        # withdrawal committed before it counts and the job sees one snapshot.
        session = Session.object_session(job)
        assert session is not None, "read inside the run's first transaction"
        basis, consenting = _consent_basis(session, job, grant)
        audit.append(
            session, actor=WORKER, action="consent.applied", subject=job.dataset,
            details={"job": job.id, "grant": grant.id, "purpose": grant.purpose,
                     "basis": basis,
                     "persons": None if consenting is None else len(consenting)},
        )  # fmt: skip
        return cls(
            dataset=job.dataset,
            language=job.language,
            mode=job.mode,
            code=job.code,
            epsilon=job.epsilon,
            delta=job.delta,
            grant_id=grant.id,
            consenting=consenting,
        )


def _consent_basis(session: Session, job: Job, grant: Grant) -> tuple[str, frozenset[str] | None]:
    """Why the view is or is not filtered by consent, and the persons it keeps."""
    manifest = manifest_for(job.dataset)
    try:
        central = load_policy(manifest).central_authorization_purposes
    except PolicyFileError:
        # Without the owner's policy nothing is authorised centrally: consent applies.
        log.warning("no valid policy file for %s; consent applies to every purpose", job.dataset)
        central = frozenset()
    if grant.purpose in central:
        return "central_authorization", None
    if not grant.requires_consent:
        return "not_required", None
    persons = consenting_persons(session, dataset=job.dataset, purpose=grant.purpose)
    return "consent", frozenset(persons)


def _prepare_view(
    sandbox: Sandbox, job: _JobData, plan: Plan, policy: DatasetPolicy, folder: Path
) -> None:
    manifest = manifest_for(job.dataset)
    names = plan.tables or manifest.table_names
    tables = {name: sandbox.store.read_table(job.dataset, name) for name in names}
    view = build_view(
        tables,
        manifest,
        key=pseudonym_key(sandbox.secrets.pseudonym_secret, job.dataset, job.grant_id),
        consenting=job.consenting,
        table_names=names,
    )
    if job.language == "python":
        # Python code reads whole tables, so the columns its policy closes (the
        # grant's, the consent flag) are not given to it at all. SQL keeps them
        # for the rewritten query's own use; the checker keeps the analyst off them.
        view = {
            name: frame[[c for c in frame.columns if not policy.rule(name, c).forbidden]]
            for name, frame in view.items()
        }
    folder.mkdir(parents=True, exist_ok=True, mode=0o755)
    write_view(view, folder)


def _fail(job: Job, session: Any, code: str, message: str, *, log: str = "") -> None:
    job.error_code = code
    job.error_message = message
    job.log = log or None
    job.finished_at = utcnow()
    if job.mode == "dp" and job.epsilon > 0:
        # No noisy value was drawn, so nothing was spent.
        grants.refund_budget(session, grant_id=job.grant_id, epsilon=job.epsilon, delta=job.delta)
    move(session, job, JobStatus.FAILED, actor=WORKER, details={"error": code})


def _check_and_release(
    sandbox: Sandbox, job_id: str, plan: Plan, policy: DatasetPolicy, result: RunResult
) -> str:
    with sandbox.tx() as session:
        job = session.get_one(Job, job_id)
        if JobStatus(job.status) is not JobStatus.RUNNING:
            return job.status  # another delivery finished it first
        grant = session.get_one(Grant, job.grant_id)
        job.log = result.log or None
        move(session, job, JobStatus.CHECKING, actor=WORKER)
        if not grant.is_active():
            job.error_code, job.error_message = "grant_inactive", "The grant was revoked."
            job.finished_at = utcnow()
            move(session, job, JobStatus.WITHHELD, actor=WORKER, details={"reason": "grant"})
            return job.status
        try:
            # The owner's file sets the floor; a grant may only ask for more.
            k = max(grant.k_threshold, policy.k_threshold)
            released = _disclosure(job, plan, result, k=k)
        except DisclosureError as error:
            job.findings = [error.finding.to_dict()]
            job.error_code, job.error_message = "disclosure", error.finding.message
            job.finished_at = utcnow()
            move(session, job, JobStatus.WITHHELD, actor=WORKER, details={"findings": job.findings})
            return job.status
        job.result = released
        if grant.requires_review:
            move(session, job, JobStatus.PENDING_REVIEW, actor=WORKER)
            return job.status
        release(sandbox, session, job, reviewers=[])
        return job.status


def _disclosure(job: Job, plan: Plan, result: RunResult, *, k: int) -> dict[str, Any]:
    tables: list[dict[str, Any]] = []
    if plan.dp is not None:
        (only,) = result.tables
        noisy = release_noisy(plan.dp, only.columns, only.rows)
        tables.append({"name": "result", **noisy})
        privacy = {"epsilon": job.epsilon, "delta": job.delta, "mechanism": plan.dp.mechanism,
                   "rows_per_person": plan.dp.rows_per_person}  # fmt: skip
        return {"tables": tables, "privacy": privacy, "disclosure": None}
    suppressed_rows = suppressed_cells = 0
    if plan.threshold is not None:
        (only,) = result.tables
        kept = apply_threshold(plan.threshold, only.columns, only.rows, k=k)
        tables.append({"name": "result", "columns": kept.columns, "rows": kept.rows})
        suppressed_rows, suppressed_cells = kept.suppressed_rows, kept.suppressed_cells
    else:
        if not result.tables:
            raise DisclosureError(
                Finding("output.none", "The job declared no output (use sandbox_job.output).")
            )
        for table in result.tables:
            kept = check_declared_output(table.name, table.columns, table.rows, table.declared, k=k)
            tables.append({"name": table.name, "columns": kept.columns, "rows": kept.rows})
            suppressed_rows += kept.suppressed_rows
    return {
        "tables": tables,
        "privacy": {"epsilon": 0.0, "delta": 0.0, "mechanism": None},
        "disclosure": {"k": k, "suppressed_rows": suppressed_rows,
                       "suppressed_cells": suppressed_cells},
    }  # fmt: skip


def release(sandbox: Sandbox, session: Any, job: Job, *, reviewers: list[str]) -> None:
    """Sign the certificate and move the job to released, in the caller's transaction."""
    assert job.result is not None
    released_at = utcnow()
    version = sandbox.store.version(job.dataset)
    job.dataset_version = version
    document = {
        "type": "sandbox.release/v1",
        "job": job.id,
        "analyst": job.analyst.username,
        "dataset": job.dataset,
        "dataset_version": version,
        "policy_version": job.policy_version,
        "grant": job.grant_id,
        "language": job.language,
        "mode": job.mode,
        "code_sha256": job.code_sha256,
        "outputs_sha256": sha256_json(job.result["tables"]),
        "privacy": job.result["privacy"],
        "disclosure": job.result["disclosure"],
        "reviewers": reviewers,
        "released_at": released_at.isoformat(),
    }
    job.certificate = sandbox.release_key.sign(document)
    job.finished_at = released_at
    details = {"outputs_sha256": document["outputs_sha256"], "key_id": sandbox.release_key.key_id}
    actor = reviewers[-1] if reviewers else WORKER
    move(session, job, JobStatus.RELEASED, actor=actor, details=details)
