"""Scoring one submission: a smoke run on mock data, then fit and predict on the hidden parts.

Each run is two containers: ``fit`` sees the training part and leaves its model
on a volume of the submission's own; ``predict`` mounts that volume read-only,
sees the scored part's features (never a label) and hands its predictions to
this worker, which checks them and scores them against the labels it kept. The
volume is destroyed after, whatever happens.

- The smoke run reads mock rows split under a throwaway key. A failure there is
  the team's to read in full (log, error type and line) and does not count
  against the quota.
- The hidden run reads the track's real public part. Only its score goes out,
  through the Ladder (:mod:`policies.leaderboard`) with a 95 % bootstrap
  interval, in a certificate signed with the release key and written to the
  audit chain. A failure says one of a fixed set of reasons, nothing else: no
  log, no exception text, no line number.
- At the close each team's picks are run once more on the private part
  (:func:`score_final`), and the final board is published from those scores.

Safe to repeat, as a job is: a submission past ``running`` is left alone, one
``running`` under a live holder too, and one whose holder was lost is run again
from its stored code. Only the attempt that holds it may finish it.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from datasets.views import write_view
from policies.leaderboard import (
    LadderState,
    LeaderboardError,
    bootstrap_interval,
    ladder_step,
    shown_decimals,
)
from policies.policy_file import DatasetPolicy
from runners import JobFailed, JobSpec, RunnerUnavailable
from runners.contract import Isolation, ModelVolume
from sandbox.access.consent import apply_consent
from sandbox.catalog import Published, published
from sandbox.contest.data import TrackShape, TrackTables, hidden_tables, smoke_tables
from sandbox.contest.metrics import MalformedPredictions, Metric, metric_named
from sandbox.contest.splits import Part
from sandbox.context import Sandbox
from sandbox.db import retry_transient
from sandbox.errors import NotFound
from sandbox.integrity import audit
from sandbox.jobs import lease
from sandbox.jobs.planning import policy_for
from sandbox.models import (
    Contest,
    Grant,
    LeaderboardEntry,
    Submission,
    SubmissionStatus,
    Team,
    Track,
    iso,
    utcnow,
)

log = logging.getLogger(__name__)
WORKER = "worker"
# v2 adds what ran the submission: "runtime" and "image_digest".
SCORE_TYPE = "sandbox.contest-score/v2"
BOOTSTRAP_ROUNDS = 1000
# A metric with no weighted form (the concordance index, an organizer's own) is called
# once per resample: fewer of them, so that scoring stays within seconds.
SLOW_BOOTSTRAP_ROUNDS = 200
# A quarter of a job's CPU weight: on a busy host researchers' jobs run first.
SUBMISSION_CPU_WEIGHT = 256
# What a team's copy of its smoke run's log keeps (the end).
MAX_LOG_CHARS = 200_000
# A holder is lost once all four runs (smoke and hidden, fit and predict) could have
# timed out, with the margin of a job's lease.
RUNS_PER_ATTEMPT = 4
MAX_WORKER_LOSSES = lease.MAX_WORKER_LOSSES
SMOKE = "smoke"
HIDDEN = "hidden"
FINAL = "final"

# What a team is told of a failed hidden run: the reason, in these words only.
HIDDEN_FAILURES = {
    "timeout": "A run on the hidden data took longer than its time limit.",
    "memory": "A run on the hidden data went over its memory limit.",
    "error": "The code raised an error on the hidden data.",
    "malformed_predictions": "The predictions on the hidden data could not be scored.",
    "model_too_large": "The fitted model is larger than the cap.",
}


@dataclass(frozen=True)
class _Work:
    """What the runs need, read in the transaction that takes the submission."""

    submission_id: str
    code: str
    shape: TrackShape
    current: Published
    policy: DatasetPolicy
    consenting: frozenset[str] | None
    split_key: bytes
    metric: Metric


@dataclass(frozen=True)
class _Scored:
    score: float
    losses: np.ndarray
    low: float
    high: float
    n: int


def run_submission(sandbox: Sandbox, submission_id: str) -> str:
    """Take a queued submission to scored or failed; return its status."""
    holder = str(lease.Holder.current())
    started = retry_transient(lambda: _take(sandbox, submission_id, holder, final=False))
    if isinstance(started, str):
        return started
    attempt, work = started
    folder = sandbox.settings.contest_work_dir / submission_id / f"attempt-{attempt}"
    try:
        mock = smoke_tables(sandbox, work.shape, current=work.current, policy=work.policy)
        try:
            predictions, logs, isolation = _fit_and_predict(
                sandbox, work, mock, folder, f"{attempt}-smoke"
            )
        except JobFailed as failure:
            return _finish_failed(
                sandbox,
                work,
                attempt,
                _Failure(SMOKE, failure.reason, failure.message, failure.log, failure.isolation),
            )
        try:
            smoke = _scored(work, mock, predictions, "smoke")
        except MalformedPredictions as refused:
            return _finish_failed(
                sandbox,
                work,
                attempt,
                _Failure(SMOKE, refused.code, refused.message, logs, isolation),
            )
        _record_smoke(sandbox, work, attempt, smoke.score, logs, isolation)
        hidden = _hidden(sandbox, work, Part.PUBLIC)
        try:
            predictions, _, isolation = _fit_and_predict(
                sandbox, work, hidden, folder, f"{attempt}-hidden"
            )
            scored = _scored(work, hidden, predictions, "public")
        except JobFailed as failure:
            reason = failure.reason if failure.reason in HIDDEN_FAILURES else "error"
            told = HIDDEN_FAILURES[reason]  # never the run's own words or log
            return _finish_failed(
                sandbox, work, attempt, _Failure(HIDDEN, reason, told, "", failure.isolation)
            )
        except MalformedPredictions as refused:
            message = f"{HIDDEN_FAILURES['malformed_predictions']} ({refused.reason})"
            return _finish_failed(
                sandbox,
                work,
                attempt,
                _Failure(HIDDEN, "malformed_predictions", message, "", isolation),
            )
    except RunnerUnavailable:
        retry_transient(lambda: _give_up(sandbox, submission_id, attempt, final=False))
        raise
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)
    return retry_transient(lambda: _release(sandbox, work, attempt, scored, isolation))


# --- taking and giving back -------------------------------------------------------------


def _take(
    sandbox: Sandbox, submission_id: str, holder: str, *, final: bool
) -> str | tuple[int, _Work]:
    with sandbox.tx() as session:
        submission = _locked(session, submission_id)
        if submission is None:
            log.warning("submission %s does not exist", submission_id)
            return "missing"
        status = submission.final_status if final else submission.status
        if status in (SubmissionStatus.SCORED.value, SubmissionStatus.FAILED.value, None):
            return status or "not_picked"
        where = FINAL if final else HIDDEN
        action = "submission.final_running" if final else "submission.running"
        rerun = "submission.final_rerun" if final else "submission.rerun"
        if status == SubmissionStatus.RUNNING.value:
            lost = _lost(sandbox, submission)
            if lost is None:
                return status  # another worker holds it
            losses = lease.worker_losses(session, submission.id, rerun_action=rerun)
            if lost is not lease.Lost.RELEASED and losses + 1 >= MAX_WORKER_LOSSES:
                message = f"The worker running this submission was lost {MAX_WORKER_LOSSES} times."
                _fail(session, submission, where, "worker_lost", message, final=final)
                return SubmissionStatus.FAILED.value
            action = rerun
            details: dict[str, Any] = {"lost": lost.value}
        else:
            details = {}
        submission.attempts += 1
        submission.holder = holder
        submission.started_at = utcnow()
        if final:
            submission.final_status = SubmissionStatus.RUNNING.value
        else:
            submission.status = SubmissionStatus.RUNNING.value
        audit.append(
            session,
            actor=WORKER,
            action=action,
            subject=submission.id,
            details={"attempt": submission.attempts, "worker": holder, **details},
        )
        track = session.get_one(Track, submission.track_id)
        grant = session.get(Grant, track.grant_id) if track.grant_id else None
        readable = _readable(session, track, grant)
        if isinstance(readable, tuple):
            _fail(session, submission, where, *readable, final=final)
            return SubmissionStatus.FAILED.value
        assert grant is not None
        current = readable
        consenting = apply_consent(
            session,
            dataset=track.dataset,
            grant=grant,
            current=current,
            actor=WORKER,
            run={"submission": submission.id},
        )
        work = _Work(
            submission_id=submission.id,
            code=submission.code,
            shape=TrackShape.of(track),
            current=current,
            policy=policy_for(current.policy, grant),
            consenting=consenting,
            split_key=sandbox.store.open_key(f"split-{track.id}", track.split_key),
            metric=metric_named(track.metric),
        )
        return submission.attempts, work


def _readable(session: Session, track: Track, grant: Grant | None) -> Published | tuple[str, str]:
    """The track's dataset as published now, or why nothing may be run on it."""
    if grant is None or not grant.is_active():
        return "grant_inactive", "The data owner's grant for this track has ended; nothing was run."
    try:
        current = published(session, track.dataset)
    except NotFound:
        return "dataset_unavailable", "The track's dataset was retired; nothing was run."
    if current.version != track.dataset_version:
        return (
            "dataset_changed",
            "The track's dataset version is no longer the published one; nothing was run.",
        )
    return current


def _lost(sandbox: Sandbox, submission: Submission) -> lease.Lost | None:
    if submission.started_at is None:
        return lease.Lost.RELEASED
    return lease.lost_hold(
        submission.started_at,
        lease.Holder.parse(submission.holder),
        timeout_s=RUNS_PER_ATTEMPT * sandbox.settings.submission_timeout_s,
    )


def lease_lost(sandbox: Sandbox, submission: Submission) -> bool:
    """Whether a running submission's holder is lost (for the sweeper)."""
    return _lost(sandbox, submission) is not None


def _give_up(sandbox: Sandbox, submission_id: str, attempt: int, *, final: bool) -> None:
    """The runner was unavailable: not the team's fault; the task's retry runs it again."""
    with sandbox.tx() as session:
        submission = _locked(session, submission_id)
        if submission is not None and not _superseded(submission, attempt, final=final):
            submission.started_at = None
            audit.append(
                session, actor=WORKER, action="submission.runner_unavailable", subject=submission_id
            )


def _locked(session: Session, submission_id: str) -> Submission | None:
    return session.scalars(
        select(Submission).where(Submission.id == submission_id).with_for_update()
    ).one_or_none()


def _superseded(submission: Submission, attempt: int, *, final: bool = False) -> bool:
    status = submission.final_status if final else submission.status
    return status != SubmissionStatus.RUNNING.value or submission.attempts != attempt


# --- the runs ---------------------------------------------------------------------------


def _scored(work: _Work, tables: TrackTables, predictions: list[Any], label: str) -> _Scored:
    """The predictions checked and scored against the labels, with their interval."""
    metric = work.metric
    predicted = metric.validate(tables.labels, predictions, labels=tables.classes)
    losses = metric.losses(tables.labels, predicted, labels=tables.classes)
    score = metric.score(tables.labels, predicted, labels=tables.classes)
    digest = hashlib.sha256(f"{work.submission_id}:{label}".encode()).digest()
    try:
        low, high = bootstrap_interval(
            tables.labels,
            predicted,
            metric.score_function,
            rounds=BOOTSTRAP_ROUNDS if metric.weighted_function else SLOW_BOOTSTRAP_ROUNDS,
            seed=int.from_bytes(digest[:8], "big"),
            weighted=metric.weighted_function,
        )
    except LeaderboardError:
        low, high = float("nan"), float("nan")
    return _Scored(
        float(score), np.asarray(losses, dtype=np.float64), low, high, len(tables.labels)
    )


def _fit_and_predict(
    sandbox: Sandbox, work: _Work, tables: TrackTables, folder: Path, label: str
) -> tuple[list[Any], str, Isolation]:
    """The fit container on the training part, then the predict container on the scored
    part's features; the model between them on a volume of this run's own. Returns the
    predictions, both runs' logs and what predict ran under."""
    volume = f"sandbox-model-{work.submission_id}-{label}"
    settings = sandbox.settings
    limits = {
        "timeout_s": settings.submission_timeout_s,
        "memory_mb": settings.submission_memory_mb,
        "cpu_weight": SUBMISSION_CPU_WEIGHT,
    }
    try:
        write_view(tables.train, folder / "fit")
        fitted = sandbox.runner.run(
            JobSpec(
                job_id=f"{work.submission_id}-fit",
                language="fit",
                code=work.code,
                input_dir=folder / "fit",
                model=ModelVolume(volume, writable=True, max_bytes=settings.max_model_bytes),
                **limits,
            )
        )
        shutil.rmtree(folder / "fit", ignore_errors=True)
        write_view(tables.features, folder / "predict")
        try:
            predicted = sandbox.runner.run(
                JobSpec(
                    job_id=f"{work.submission_id}-predict",
                    language="predict",
                    code=work.code,
                    input_dir=folder / "predict",
                    model=ModelVolume(volume, writable=False, max_bytes=settings.max_model_bytes),
                    **limits,
                )
            )
        except JobFailed as failure:
            failure.log = f"--- fit ---\n{fitted.log}\n--- predict ---\n{failure.log}"
            raise
    finally:
        sandbox.runner.remove_model(volume)
        shutil.rmtree(folder, ignore_errors=True)
    logs = f"--- fit ---\n{fitted.log}\n--- predict ---\n{predicted.log}"
    return predicted.predictions or [], logs, predicted.isolation


def _hidden(sandbox: Sandbox, work: _Work, part: Part) -> TrackTables:
    return hidden_tables(
        sandbox,
        work.shape,
        current=work.current,
        policy=work.policy,
        consenting=work.consenting,
        split_key=work.split_key,
        scored=part,
    )


# --- outcomes ---------------------------------------------------------------------------


def _record_smoke(
    sandbox: Sandbox, work: _Work, attempt: int, score: float, logs: str, isolation: Isolation
) -> None:
    def record() -> None:
        with sandbox.tx() as session:
            submission = _locked(session, work.submission_id)
            if submission is None or _superseded(submission, attempt):
                return
            _record_isolation(submission, isolation)
            submission.smoke_score = score
            submission.smoke_log = logs[-MAX_LOG_CHARS:]

    retry_transient(record)


@dataclass(frozen=True)
class _Failure:
    """Where a submission failed, its code and message, its log (smoke runs only) and
    what the failed run ran under."""

    where: str
    code: str
    message: str
    log: str = ""
    isolation: Isolation | None = None


def _finish_failed(sandbox: Sandbox, work: _Work, attempt: int, failure: _Failure) -> str:
    def finish() -> str:
        with sandbox.tx() as session:
            submission = _locked(session, work.submission_id)
            if submission is None:
                return "missing"
            if _superseded(submission, attempt):
                return submission.status
            if failure.isolation is not None:
                _record_isolation(submission, failure.isolation)
            if failure.where == SMOKE:
                submission.smoke_log = failure.log[-MAX_LOG_CHARS:] or None
            _fail(session, submission, failure.where, failure.code, failure.message, final=False)
            return submission.status

    return retry_transient(finish)


def _fail(
    session: Session, submission: Submission, where: str, code: str, message: str, *, final: bool
) -> None:
    submission.finished_at = utcnow()
    if final:
        submission.final_status = SubmissionStatus.FAILED.value
        submission.final_error = code
    else:
        submission.status = SubmissionStatus.FAILED.value
        submission.failed_in = where
        submission.error_code = code
        submission.error_message = message
    audit.append(
        session,
        actor=WORKER,
        action="submission.final_failed" if final else "submission.failed",
        subject=submission.id,
        details={"in": where, "reason": code},
    )


def _record_isolation(submission: Submission, isolation: Isolation) -> None:
    """The runtime and image its runs ran under (None, None: the development runner)."""
    submission.runtime, submission.image_digest = isolation.runtime, isolation.image_digest


def _release(
    sandbox: Sandbox, work: _Work, attempt: int, scored: _Scored, isolation: Isolation
) -> str:
    """The public score through the team's Ladder, signed and audited, in one transaction."""
    with sandbox.tx() as session:
        submission = _locked(session, work.submission_id)
        if submission is None:
            return "missing"
        if _superseded(submission, attempt):
            return submission.status
        track = session.get_one(Track, submission.track_id)
        entry = session.scalars(
            select(LeaderboardEntry)
            .where(
                LeaderboardEntry.track_id == track.id,
                LeaderboardEntry.team_id == submission.team_id,
            )
            .with_for_update()
        ).one_or_none()
        state = LadderState() if entry is None else LadderState.from_json(entry.state)
        try:
            step = ladder_step(state, scored.losses, scored.score)
        except LeaderboardError:
            _fail(
                session,
                submission,
                HIDDEN,
                "malformed_predictions",
                HIDDEN_FAILURES["malformed_predictions"],
                final=False,
            )
            return submission.status
        if step.improved:
            low, high = _rounded_interval(scored, step.shown_score)
            if entry is None:
                entry = LeaderboardEntry(
                    track_id=track.id,
                    team_id=submission.team_id,
                    state="",
                    shown_score=0.0,
                    shown_low=0.0,
                    shown_high=0.0,
                    submission_id=submission.id,
                )
                session.add(entry)
            entry.state = step.state.to_json()
            entry.shown_score, entry.shown_low, entry.shown_high = step.shown_score, low, high
            entry.submission_id = submission.id
        assert entry is not None
        submission.shown_score = entry.shown_score
        submission.shown_low, submission.shown_high = entry.shown_low, entry.shown_high
        submission.improved = step.improved
        submission.status = SubmissionStatus.SCORED.value
        submission.finished_at = utcnow()
        _record_isolation(submission, isolation)
        document = score_document(
            session, submission, track, part=Part.PUBLIC, n=scored.n, version=work.current.version
        )
        key = sandbox.release_key
        submission.certificate = key.sign(document)
        audit.append(
            session,
            actor=WORKER,
            action="submission.scored",
            subject=submission.id,
            details={
                "track": track.slug,
                "team": submission.team_id,
                "shown_score": submission.shown_score,
                "interval": [submission.shown_low, submission.shown_high],
                "improved": step.improved,
                "key_id": key.key_id,
            },
        )
        return submission.status


def _rounded_interval(scored: _Scored, shown: float) -> tuple[float, float]:
    """The interval at the shown score's grain, and never excluding the shown score."""
    digits = shown_decimals(scored.n)
    low = scored.low if np.isfinite(scored.low) else shown
    high = scored.high if np.isfinite(scored.high) else shown
    return round(min(low, shown), digits), round(max(high, shown), digits)


def score_document(
    session: Session, submission: Submission, track: Track, *, part: Part, n: int, version: str
) -> dict[str, Any]:
    """What the release key signs for a released score."""
    contest = session.get_one(Contest, track.contest_id)
    team = session.get_one(Team, submission.team_id)
    final = part is Part.PRIVATE
    return {
        "type": SCORE_TYPE,
        "contest": contest.slug,
        "track": track.slug,
        "team": team.name,
        "submission": submission.id,
        "code_sha256": submission.code_sha256,
        # What ran it: the engine runtime (runsc is gVisor) and the runner image's ID.
        "runtime": submission.runtime,
        "image_digest": submission.image_digest,
        "dataset": track.dataset,
        "dataset_version": version,
        "part": str(part),
        "examples": n,
        "metric": track.metric,
        "score": submission.final_score if final else submission.shown_score,
        "interval": [submission.final_low, submission.final_high]
        if final
        else [submission.shown_low, submission.shown_high],
        "rule": "exact" if final else "ladder",
        "improved": None if final else submission.improved,
        "released_at": iso(submission.finished_at or utcnow()),
    }


# --- the private part, at the close -----------------------------------------------------


def score_final(sandbox: Sandbox, submission_id: str) -> str:
    """Score a picked submission once on the private part; return its final status."""
    holder = str(lease.Holder.current())
    started = retry_transient(lambda: _take(sandbox, submission_id, holder, final=True))
    if isinstance(started, str):
        return started
    attempt, work = started
    folder = sandbox.settings.contest_work_dir / submission_id / f"final-{attempt}"
    try:
        private = _hidden(sandbox, work, Part.PRIVATE)
        try:
            predictions, _, isolation = _fit_and_predict(
                sandbox, work, private, folder, f"{attempt}-final"
            )
            scored = _scored(work, private, predictions, "private")
        except JobFailed as failure:
            reason = failure.reason if failure.reason in HIDDEN_FAILURES else "error"
            return _finish_final(sandbox, work, attempt, None, reason, failure.isolation)
        except MalformedPredictions:
            return _finish_final(sandbox, work, attempt, None, "malformed_predictions", isolation)
    except RunnerUnavailable:
        retry_transient(lambda: _give_up(sandbox, submission_id, attempt, final=True))
        raise
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)
    return _finish_final(sandbox, work, attempt, scored, None, isolation)


def _finish_final(
    sandbox: Sandbox,
    work: _Work,
    attempt: int,
    scored: _Scored | None,
    reason: str | None,
    isolation: Isolation | None,
) -> str:
    """Keep the private score (it goes out with the signed final board only)."""

    def finish() -> str:
        with sandbox.tx() as session:
            submission = _locked(session, work.submission_id)
            if submission is None:
                return "missing"
            if _superseded(submission, attempt, final=True):
                return submission.final_status or ""
            if isolation is not None:
                _record_isolation(submission, isolation)
            if scored is None:
                _fail(session, submission, FINAL, reason or "error", "", final=True)
                return SubmissionStatus.FAILED.value
            digits = shown_decimals(scored.n)
            submission.final_score = round(scored.score, digits)
            submission.final_low, submission.final_high = _rounded_interval(
                scored, submission.final_score
            )
            submission.final_status = SubmissionStatus.SCORED.value
            submission.finished_at = utcnow()
            audit.append(
                session,
                actor=WORKER,
                action="submission.final_scored",
                subject=submission.id,
                details={"examples": scored.n},
            )
            return SubmissionStatus.SCORED.value

    return retry_transient(finish)
