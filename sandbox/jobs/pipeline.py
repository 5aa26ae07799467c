"""Running one queued job: prepare the view, run isolated, control disclosure, release.

Safe to repeat: a job that is already past ``running`` is left alone, a job
``running`` under another worker's lease too, and a job whose lease is lost
(its worker died: see :mod:`sandbox.jobs.lease`) is run again from its stored
code. Each attempt has its own view folder, deleted whatever happens, and
only the attempt that still holds the job may finish it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from datasets.manifest import Manifest
from datasets.views import build_view, pseudonym_key
from policies.decision import Finding
from policies.disclosure import (
    DisclosureError,
    Released,
    apply_threshold,
    check_declared_output,
)
from policies.output_checks import (
    DisclosureRules,
    SketchedRow,
    isolations,
    rows_to_compare,
    tally,
)
from policies.policy_file import DatasetPolicy
from runners import JobFailed, JobSpec, RunnerUnavailable, RunResult
from runners.contract import Isolation
from runners.harness import sandbox_job
from sandbox.access import grants
from sandbox.access.consent import apply_consent
from sandbox.catalog import Published, published
from sandbox.context import Sandbox
from sandbox.db import retry_transient
from sandbox.dp.noise import release_noisy
from sandbox.errors import NotFound
from sandbox.integrity import audit
from sandbox.jobs import lease, released_rows
from sandbox.jobs.lifecycle import WORKER, job_lock, move
from sandbox.jobs.planning import JobRequest, Plan, plan_job, policy_for
from sandbox.jobs.release import release
from sandbox.jobs.verification import Checked, verify_outputs
from sandbox.jobs.view_cache import ViewCache, view_key
from sandbox.models import FINAL_STATES, Grant, Job, JobStatus, utcnow

log = logging.getLogger(__name__)
# This process's recent views (in memory only): jobs sharing one skip building it.
VIEWS = ViewCache()
# The sizes of earlier releases' rows this process has read (they never change).
SIZES = released_rows.SizeCache()
# Suppressed rows and cells listed one by one for auditors; beyond it, counted.
MAX_SUPPRESSIONS_KEPT = 2000


def run_job(sandbox: Sandbox, job_id: str) -> str:
    """Take the job through to a final state (or pending review); return its status."""
    holder = str(lease.Holder.current())
    # Each transaction here is run again if the database rolled it back for another
    # one's sake (a deadlock, a serialization failure): nothing outside it happened yet.
    started = retry_transient(lambda: _start_attempt(sandbox, job_id, holder))
    if isinstance(started, str):
        return started
    attempt, job_data, policy = started

    # Per attempt: a lost attempt that still runs somewhere cannot delete this one's view.
    folder = sandbox.settings.work_dir / job_id / f"attempt-{attempt}"
    try:
        plan = plan_job(
            job_data.manifest,
            job_data.request(),
            policy=policy,
            max_rows_per_person=job_data.max_rows_per_person,
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
        # While the view is still here: a Python job's tables computed again from it.
        checked = (
            verify_outputs(result.tables, folder / "input")
            if job_data.language == "python" and plan.threshold is None and plan.dp is None
            else None
        )
    except JobFailed as failure:
        with sandbox.tx() as session:
            job = _locked(session, job_id)
            if _superseded(job, attempt):
                return job.status
            if failure.isolation is not None:
                _record_isolation(job, failure.isolation)
            _fail(job, session, f"run.{failure.reason}", failure.message, log=failure.log)
            return job.status
    except RunnerUnavailable:
        # Not the job's fault: give up the lease so the task's retry runs it again.
        with sandbox.tx() as session:
            job = _locked(session, job_id)
            if not _superseded(job, attempt):
                job.started_at = None
                audit.append(session, actor=WORKER, action="job.runner_unavailable", subject=job_id)
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()  # the job's folder, once no attempt uses it

    return retry_transient(
        lambda: _check_and_release(
            sandbox, job_id, plan, policy, result, checked=checked, attempt=attempt
        )
    )


def _start_attempt(
    sandbox: Sandbox, job_id: str, holder: str
) -> str | tuple[int, _JobData, DatasetPolicy]:
    """Lock the job and take it for this attempt: its number, data and policy, or the
    job's status when there is nothing to run here."""
    with sandbox.tx() as session:
        job = session.scalars(job_lock(job_id)).one_or_none()
        if job is None:
            log.warning("job %s does not exist", job_id)
            return "missing"
        status = JobStatus(job.status)
        if status in FINAL_STATES or status in (JobStatus.CHECKING, JobStatus.PENDING_REVIEW):
            return status.value
        if status is JobStatus.QUEUED:
            move(
                session,
                job,
                JobStatus.RUNNING,
                actor=WORKER,
                details={"attempt": 1, "worker": holder},
            )
        else:
            lost = lease.lost_because(session, job, timeout_s=sandbox.settings.job_timeout_s)
            if lost is None:
                return status.value  # another worker holds it
            if lost is not lease.Lost.RELEASED and (
                lease.worker_losses(session, job.id) + 1 >= lease.MAX_WORKER_LOSSES
            ):
                message = f"The worker running this job was lost {lease.MAX_WORKER_LOSSES} times."
                _fail(job, session, "worker_lost", message)
                return job.status
            audit.append(
                session,
                actor=WORKER,
                action="job.rerun",
                subject=job.id,
                details={"attempt": job.attempts + 1, "worker": holder, "lost": lost.value},
            )
        job.attempts += 1
        attempt = job.attempts
        job.started_at = utcnow()
        grant = session.get(Grant, job.grant_id)
        if grant is None or not grant.is_active():
            _fail(job, session, "grant_inactive", "The grant was revoked or expired; not run.")
            return job.status
        if job.cached_from:
            return _release_cached(sandbox, session, job)
        job.runner = sandbox.runner.name
        # The version the view is built from now (the dataset may have been replaced since
        # the submission): the certificate names what was actually read.
        try:
            current = published(session, job.dataset)
        except NotFound:
            _fail(job, session, "dataset_unavailable", "The dataset was retired; not run.")
            return job.status
        if sandbox.store.exists(job.dataset):
            job.dataset_version = sandbox.store.version(job.dataset)
        job_data = _JobData.of(job, grant, current)
        policy = policy_for(current.policy, grant)
    return attempt, job_data, policy


def _record_isolation(job: Job, isolation: Isolation) -> None:
    """The runtime and image the job ran under (None, None: the development runner)."""
    job.runtime, job.image_digest = isolation.runtime, isolation.image_digest


def _release_cached(sandbox: Sandbox, session: Session, job: Job) -> str:
    """Release the earlier noisy answer to the same question; nothing runs, nothing is spent."""
    original = session.get_one(Job, job.cached_from)
    # Nothing runs: the answer is the original's, computed under its runtime and image.
    job.runtime, job.image_digest = original.runtime, original.image_digest
    move(session, job, JobStatus.CHECKING, actor=WORKER, details={"cached_from": original.id})
    result = dict(original.result or {})
    result["privacy"] = {
        **result.get("privacy", {}),
        "cached_from": original.id,
        "epsilon_spent_now": 0.0,
    }
    job.result = result
    release(sandbox, session, job, reviewers=[])
    return job.status


def _locked(session: Session, job_id: str) -> Job:
    return session.scalars(job_lock(job_id)).one()


def _superseded(job: Job, attempt: int) -> bool:
    """Whether the job moved on, or another attempt took it over, since ``attempt`` began.

    Only the attempt that holds the job may fail or release it: a lost attempt
    that still runs somewhere must not finish the job a second time.
    """
    return JobStatus(job.status) is not JobStatus.RUNNING or job.attempts != attempt


@dataclass(frozen=True)
class _JobData:
    """The fields the run needs, read inside the first transaction."""

    dataset: str
    language: str
    mode: str
    code: str
    epsilon: float
    delta: float
    rows_per_person: int | None
    max_rows_per_person: int | None
    grant_id: str
    # The raw person ids (as text) the view keeps; None: no consent filter.
    consenting: frozenset[str] | None
    # The manifest of the version the run reads.
    manifest: Manifest

    @classmethod
    def of(cls, job: Job, grant: Grant, current: Published) -> _JobData:
        # Who consents is read in the transaction that starts the run, so a
        # withdrawal committed before it counts and the job sees one snapshot.
        session = Session.object_session(job)
        assert session is not None, "read inside the run's first transaction"
        consenting = apply_consent(
            session,
            dataset=job.dataset,
            grant=grant,
            current=current,
            actor=WORKER,
            run={"job": job.id},
        )
        return cls(
            dataset=job.dataset,
            language=job.language,
            mode=job.mode,
            code=job.code,
            epsilon=job.epsilon,
            delta=job.delta,
            rows_per_person=job.rows_per_person,
            max_rows_per_person=grant.max_rows_per_person,
            grant_id=grant.id,
            consenting=consenting,
            manifest=current.manifest,
        )

    def request(self) -> JobRequest:
        """The job as it was submitted (and checked then), to plan it again from its code."""
        return JobRequest(
            dataset=self.dataset,
            language=self.language,
            mode=self.mode,
            code=self.code,
            epsilon=self.epsilon,
            delta=self.delta,
            rows_per_person=self.rows_per_person,
        )


def _prepare_view(
    sandbox: Sandbox, job: _JobData, plan: Plan, policy: DatasetPolicy, folder: Path
) -> None:
    manifest = job.manifest
    names = tuple(plan.tables or manifest.table_names)

    def build() -> dict[str, Any]:
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
        return view

    key = view_key(
        dataset=job.dataset,
        version=sandbox.store.version(job.dataset),
        grant_id=job.grant_id,
        tables=names,
        columns_policy=f"{job.language}:{policy.version}",
        consenting=job.consenting,
    )
    VIEWS.write(key, build, folder)
    # Which column holds the person, for the helper's table functions (each owner names it).
    description = {"privacy_unit": manifest.privacy_unit}
    (folder / sandbox_job.VIEW_FILE).write_text(json.dumps(description), encoding="utf-8")


def _fail(job: Job, session: Session, code: str, message: str, *, log: str = "") -> None:
    job.error_code = code
    job.error_message = message
    job.log = log or None
    job.finished_at = utcnow()
    if job.mode == "dp" and job.epsilon > 0:
        # No noisy value was drawn, so nothing was spent.
        grants.refund_budget(session, grant_id=job.grant_id, epsilon=job.epsilon, delta=job.delta)
    move(session, job, JobStatus.FAILED, actor=WORKER, details={"error": code})


def _check_and_release(
    sandbox: Sandbox,
    job_id: str,
    plan: Plan,
    policy: DatasetPolicy,
    result: RunResult,
    *,
    checked: list[Checked] | None,
    attempt: int,
) -> str:
    with sandbox.tx() as session:
        job = _locked(session, job_id)
        if _superseded(job, attempt):
            return job.status  # another delivery took it over or finished it
        grant = session.get_one(Grant, job.grant_id)
        job.log = result.log or None
        _record_isolation(job, result.isolation)
        move(session, job, JobStatus.CHECKING, actor=WORKER)
        if not grant.is_active():
            job.error_code, job.error_message = "grant_inactive", "The grant was revoked."
            job.finished_at = utcnow()
            move(session, job, JobStatus.WITHHELD, actor=WORKER, details={"reason": "grant"})
            return job.status
        try:
            # The owner's file sets the floor; a grant may only ask for more.
            rules = policy.disclosure.with_threshold(max(grant.k_threshold, policy.k_threshold))
            released, holds, sketches, suppressed = _disclosure(
                job, plan, result, checked, rules=rules
            )
            if rules.differencing and sketches:
                holds += _differencing(session, job, sketches, rules.threshold)
        except DisclosureError as error:
            job.findings = [error.finding.to_dict()]
            job.error_code, job.error_message = "disclosure", error.finding.message
            job.finished_at = utcnow()
            move(session, job, JobStatus.WITHHELD, actor=WORKER, details={"findings": job.findings})
            return job.status
        job.result = released
        job.suppressions = suppressed
        job.disclosure_sketches = [row.to_json() for row in sketches] or None
        if holds:
            # Held for an auditor: the findings say why; nothing goes out before a review.
            job.findings = [h.to_dict() for h in holds[:50]]
            move(
                session,
                job,
                JobStatus.PENDING_REVIEW,
                actor=WORKER,
                details={"held_by": sorted({h.rule for h in holds})},
            )
            return job.status
        if grant.requires_review:
            move(session, job, JobStatus.PENDING_REVIEW, actor=WORKER)
            return job.status
        release(sandbox, session, job, reviewers=[])
        return job.status


def _disclosure(
    job: Job,
    plan: Plan,
    result: RunResult,
    checked: list[Checked] | None,
    *,
    rules: DisclosureRules,
) -> tuple[dict[str, Any], list[Finding], list[SketchedRow], dict[str, Any] | None]:
    """The outputs as they may go out, why they must wait for review, their sketches,
    and (for auditors) every suppressed row and cell with the rules it failed."""
    tables: list[dict[str, Any]] = []
    if plan.dp is not None:
        (only,) = result.tables
        noisy = release_noisy(plan.dp, only.columns, only.rows)
        tables.append({"name": "result", **noisy})
        privacy = {
            "epsilon": job.epsilon,
            "delta": job.delta,
            "mechanism": plan.dp.mechanism,
            "rows_per_person": plan.dp.rows_per_person,
        }
        return {"tables": tables, "privacy": privacy, "disclosure": None}, [], [], None
    outputs: list[Released] = []
    # Per output: None where the sandbox's own engine computed it, else how it was checked.
    verification: list[Checked | None] = []
    if plan.threshold is not None:
        (only,) = result.tables
        outputs.append(
            apply_threshold(plan.threshold, only.columns, only.rows, k=rules.threshold, rules=rules)
        )
        names = ["result"]
        verification = [None]
    else:
        if not result.tables:
            raise DisclosureError(
                Finding(
                    "output.none",
                    "The job declared no output (use sandbox_job.frequency_table, "
                    "magnitude_table or output).",
                )
            )
        if checked is None:  # not verified: every output is held for review
            checked = [Checked(t, False, None) for t in result.tables]
        for one in checked:
            table = one.table
            outputs.append(
                check_declared_output(
                    table.name,
                    table.columns,
                    table.rows,
                    table.declared,
                    k=rules.threshold,
                    rules=rules,
                    verified=one.verified,
                    unverified_because=one.reason,
                )
            )
        names = [one.table.name for one in checked]
        verification = list(checked)
    suppressions = [s for o in outputs for s in o.suppressions]
    released = {
        "tables": [
            {"name": name, "columns": o.columns, "rows": o.rows}
            for name, o in zip(names, outputs, strict=True)
        ],
        "privacy": {"epsilon": 0.0, "delta": 0.0, "mechanism": None},
        # How many were suppressed, never why: the analyst's share of what follows.
        "disclosure": {
            "k": rules.threshold,
            "suppressed_rows": sum(o.suppressed_rows for o in outputs),
            "suppressed_cells": sum(o.suppressed_cells for o in outputs),
            "rules": rules.to_dict(),
        },
    }
    suppressed = {
        "by_rule": tally(suppressions),
        "cells": [s.to_dict() for s in suppressions[:MAX_SUPPRESSIONS_KEPT]],
        "more": max(0, len(suppressions) - MAX_SUPPRESSIONS_KEPT),
        "outputs": [
            _output_facts(name, o, one)
            for name, o, one in zip(names, outputs, verification, strict=True)
        ],
    }
    holds = [h for o in outputs for h in o.holds]
    return released, holds, [row for o in outputs for row in o.sketches], suppressed


def _output_facts(name: str, output: Released, checked: Checked | None) -> dict[str, Any]:
    """What auditors read of one output before its rows (sandbox.jobs.risk_signals): its
    rows, whether the sandbox computed it itself and why not, its largest person's share."""
    facts: dict[str, Any] = {
        "name": name,
        "rows": len(output.rows),
        "dropped_rows": output.suppressed_rows,
        "verified": checked is None or checked.verified,
        "largest_share": output.largest.to_dict() if output.largest is not None else None,
    }
    if checked is not None and not checked.verified and checked.reason is not None:
        facts["unverified_because"] = Finding("output.unverified", checked.reason).to_dict()
    return facts


def _differencing(
    session: Session, job: Job, sketches: list[SketchedRow], threshold: int
) -> list[Finding]:
    """Rows of this job against each other and against every earlier release under the grant.

    Sizes first: only the earlier rows whose persons counts leave room for a
    difference below the threshold have their sketches read.
    """
    sizes = SIZES.sizes(session, grant_id=job.grant_id, except_job=job.id)
    earlier = released_rows.sketches(session, sizes, rows_to_compare(sketches, sizes, threshold))
    return [
        Finding.of(
            found.rule,
            # No count in the message: the analyst sees it, and the count is what is held.
            "%(row)s against %(other)s: %(detail)s (fewer than %(threshold)s persons); "
            "an auditor reviews it.",
            found.new.where(),
            message_id="masked.isolation",
            row=found.new.where(),
            other=found.other.where(),
            detail=found.detail,
            threshold=threshold,
        )
        for found in isolations(sketches, earlier, threshold)
    ]
