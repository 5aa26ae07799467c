"""The worker's sweeper: the job rows are the truth, the broker's messages only a nudge.

A thread in each worker's main process looks at the jobs as the worker starts
and then every ``SANDBOX_SWEEP_INTERVAL`` seconds. It

- sends again the jobs waiting in 'queued' for longer than one interval: their
  message was lost (the broker was down when they were submitted, or came back
  without its data). Each is sent less often the longer it waits, so a long
  queue is not doubled on every sweep;
- sends the jobs 'running' whose lease is lost (their worker died, see
  :mod:`sandbox.jobs.lease`); run_job then takes them over;
- removes the Docker runner's containers that no live lease holds, so a killed
  worker's job does not run on, nor its stopped container linger;
- deletes the view folders of jobs that are not running, and those of a
  running job's earlier attempts;
- does the same for contest submissions (their public scoring and, at the close,
  their private one): sends again those waiting in 'queued' and those whose
  holder is lost (:func:`sandbox.contest.scoring.lease_lost`), and deletes the run
  folders of submissions no attempt runs.

Several workers may sweep at once: a duplicate message is harmless, since
run_job locks the job's row and leaves a job that is held alone.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import socket
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select

from runners import RunnerUnavailable
from sandbox.access import throttle
from sandbox.config import Settings
from sandbox.contest.scoring import lease_lost
from sandbox.context import Sandbox, docker_ready
from sandbox.jobs import lease
from sandbox.models import Job, JobStatus, Submission, SubmissionStatus, aware, utcnow

if TYPE_CHECKING:
    from runners.docker_runner import DockerRunner, JobContainer

log = logging.getLogger(__name__)
# A job that keeps waiting is sent again after 1, 2, 4, ... up to this many intervals.
MAX_BACKOFF_INTERVALS = 32


@dataclass
class SweepReport:
    sent: list[str] = field(default_factory=list)  # queued jobs sent to the broker again
    recovered: list[str] = field(default_factory=list)  # running jobs whose lease was lost
    containers_removed: int = 0
    folders_removed: list[str] = field(default_factory=list)
    # Contest submissions ("final:<id>" for a private scoring), sent again and recovered.
    submissions_sent: list[str] = field(default_factory=list)
    submissions_recovered: list[str] = field(default_factory=list)
    models_removed: int = 0  # submissions' model volumes (folders) past their deadline
    login_attempts_pruned: int = 0  # too old to count for the login throttle

    def __bool__(self) -> bool:
        return bool(
            self.sent
            or self.recovered
            or self.containers_removed
            or self.folders_removed
            or self.submissions_sent
            or self.submissions_recovered
            or self.models_removed
            or self.login_attempts_pruned
        )


class Sweeper:
    def __init__(
        self,
        sandbox: Sandbox,
        send: Callable[[str], bool],
        *,
        docker: DockerRunner | None = None,
        send_submission: Callable[[str, bool], bool] | None = None,
    ) -> None:
        """``send`` hands a job id to the broker and says whether it could;
        ``send_submission(id, final)`` does so for a contest submission; ``docker`` is
        the sweeper's own client (a pool process must never share one with it)."""
        self.sandbox = sandbox
        self.send = send
        self.send_submission = send_submission
        self.docker = docker
        self.interval_s = sandbox.settings.sweep_interval_s
        # job id -> (monotonic time before which it is not sent again, times sent)
        self._backoff: dict[str, tuple[float, int]] = {}
        self._submission_backoff: dict[str, tuple[float, int]] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self, *, startup: bool = False) -> SweepReport:
        """One pass. ``startup``: send every queued job, however young."""
        # Folders and containers are listed before the rows are read: one made
        # after the listing is not judged on rows read before it existed.
        folders = _job_folders(self.sandbox.settings.work_dir)
        containers = self._containers()
        now = utcnow()
        timeout_s = self.sandbox.settings.job_timeout_s
        with self.sandbox.tx() as session:
            queued = session.execute(
                select(Job.id, Job.submitted_at).where(Job.status == JobStatus.QUEUED)
            ).all()
            running = list(session.scalars(select(Job).where(Job.status == JobStatus.RUNNING)))
            lost = [j.id for j in running if lease.lost_because(session, j, timeout_s=timeout_s)]
            held = {j.id: lease.holder_of(session, j.id) for j in running if j.id not in lost}
            named = {c.job_id for c in containers}
            known = set(session.scalars(select(Job.id).where(Job.id.in_(named))))
            pruned = throttle.prune_attempts(
                session, limits=throttle.LoginLimits.of(self.sandbox.settings), now=now
            )
        waiting = [
            job_id
            for job_id, submitted in queued
            if startup or _seconds_since(submitted, now) > self.interval_s
        ]
        report = SweepReport(login_attempts_pruned=pruned)
        report.sent, report.recovered = self._send_all(waiting, lost, self.send, self._backoff)
        self._backoff = {k: v for k, v in self._backoff.items() if k in {*waiting, *lost}}
        report.containers_removed = self._remove_orphaned_containers(containers, held, known)
        report.folders_removed = _remove_stale_folders(folders, {j.id: j.attempts for j in running})
        if self.send_submission is not None:
            self._sweep_submissions(report, startup=startup, now=now)
        return report

    def _sweep_submissions(self, report: SweepReport, *, startup: bool, now: dt.datetime) -> None:
        assert self.send_submission is not None
        send_submission = self.send_submission
        folders = _job_folders(self.sandbox.settings.contest_work_dir)
        queued, running = SubmissionStatus.QUEUED.value, SubmissionStatus.RUNNING.value
        with self.sandbox.tx() as session:
            rows = list(
                session.scalars(
                    select(Submission).where(
                        (Submission.status.in_([queued, running]))
                        | (Submission.final_status.in_([queued, running]))
                    )
                )
            )
            waiting, lost, attempts = [], [], {}
            for row in rows:
                final = row.status not in (queued, running)
                key = f"final:{row.id}" if final else row.id
                status = row.final_status if final else row.status
                if status == queued and (
                    startup
                    or _seconds_since(row.started_at or row.created_at, now) > self.interval_s
                ):
                    waiting.append(key)
                elif status == running:
                    if lease_lost(self.sandbox, row):
                        lost.append(key)
                    else:
                        attempts[row.id] = row.attempts

        def send(key: str) -> bool:
            final, _, submission_id = key.rpartition(":")
            return send_submission(submission_id, bool(final))

        backoff = self._submission_backoff
        report.submissions_sent, report.submissions_recovered = self._send_all(
            waiting, lost, send, backoff
        )
        self._submission_backoff = {k: v for k, v in backoff.items() if k in {*waiting, *lost}}
        report.folders_removed += _remove_stale_folders(
            folders, attempts, prefixes=("attempt", "final")
        )

    def start(self) -> None:
        """Sweep now, then every interval, in a daemon thread, until stop()."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="sandbox-sweeper", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        startup = True
        while not self._stopping.is_set():
            try:
                report = self.sweep(startup=startup)
            except Exception:
                log.exception("sweep failed; trying again in %s s", self.interval_s)
            else:
                startup = False
                if report:
                    log.info("sweep: %s", report)
            self._stopping.wait(self.interval_s)

    def _send_all(
        self,
        waiting: list[str],
        lost: list[str],
        send: Callable[[str], bool],
        backoffs: dict[str, tuple[float, int]],
    ) -> tuple[list[str], list[str]]:
        sent: list[list[str]] = [[], []]
        clock = time.monotonic()
        for kind, job_ids in enumerate((waiting, lost)):
            for job_id in job_ids:
                not_before, times = backoffs.get(job_id, (0.0, 0))
                if clock < not_before:
                    continue
                if not send(job_id):
                    # The broker is away: the rest waits for the next sweep.
                    return sent[0], sent[1]
                backoff = self.interval_s * min(2**times, MAX_BACKOFF_INTERVALS)
                backoffs[job_id] = (clock + backoff, times + 1)
                sent[kind].append(job_id)
        return sent[0], sent[1]

    def _containers(self) -> list[JobContainer]:
        if self.docker is None:
            return []
        try:
            return self.docker.job_containers()
        except RunnerUnavailable as error:
            log.warning("sweep: containers not checked: %s", error)
            return []

    def _remove_orphaned_containers(
        self,
        containers: list[JobContainer],
        held: Mapping[str, lease.Holder | None],
        known: Collection[str],
    ) -> int:
        removed = 0
        now = time.time()
        for container in containers:
            if not container_orphaned(container, held=held, known=known, now=now):
                continue
            assert self.docker is not None
            if self.docker.remove_container(container.id):
                log.info("removed orphaned container %s of job %s", container.id, container.job_id)
                removed += 1
        return removed


def container_orphaned(
    container: JobContainer,
    *,
    held: Mapping[str, lease.Holder | None],
    known: Collection[str],
    now: float,
) -> bool:
    """Whether no job waits for this container any more.

    ``held``: this instance's running jobs under a live lease, and their holders;
    ``known``: which of the containers' jobs belong to this instance at all. A
    container of another instance sharing the engine is left to that instance,
    unless its creator is gone or its time is up.
    """
    creator = container.pid is not None and container.host is not None
    if creator and container.host == socket.gethostname():
        assert container.pid is not None
        if lease.process_gone(container.pid):
            return True  # its worker was killed: nobody will read its result
    if container.deadline is not None and now > container.deadline:
        return True  # past its job's time limit
    if container.job_id in known:
        if container.job_id not in held:
            return True  # its job is finished, or waits to be run again
        holder = held[container.job_id]
        if creator and holder is not None:
            # Made by an earlier attempt, whose worker lost the job to this holder.
            return (holder.host, holder.pid) != (container.host, container.pid)
        return False
    return not creator and not container.running  # made before creators were labelled


def docker_for(settings: Settings) -> DockerRunner | None:
    """The sweeper's own Docker runner, if jobs run in Docker here."""
    if settings.runner == "local" or (settings.runner == "auto" and not docker_ready()[0]):
        return None
    from runners.docker_runner import DockerRunner

    return DockerRunner()


def _remove_stale_folders(
    folders: list[Path], attempts: Mapping[str, int], *, prefixes: tuple[str, ...] = ("attempt",)
) -> list[str]:
    """Delete the views no attempt will read: those of jobs that are not running, and
    those of a running job's earlier attempts (a killed worker left them behind)."""
    removed = []
    for folder in folders:
        if folder.name not in attempts:
            stale = [folder]
        else:
            # Only earlier ones: an attempt that began after the rows were read is newer.
            stale = [
                path
                for path in _job_folders(folder)
                if _attempt_number(path.name, prefixes) < attempts[folder.name]
            ]
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path.relative_to(folder.parent)))
    return removed


def _attempt_number(name: str, prefixes: tuple[str, ...] = ("attempt",)) -> float:
    prefix, _, number = name.partition("-")
    # Anything else in a running job's folder is left to its attempt.
    return int(number) if prefix in prefixes and number.isdigit() else float("inf")


def _job_folders(work_dir: Path) -> list[Path]:
    try:
        return [path for path in work_dir.iterdir() if path.is_dir() and not path.is_symlink()]
    except FileNotFoundError:
        return []


def _seconds_since(moment: dt.datetime, now: dt.datetime) -> float:
    return (now - aware(moment)).total_seconds()
