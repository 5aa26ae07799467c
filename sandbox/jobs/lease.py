"""Who holds a running job, and whether that hold (the job's lease) still stands.

The worker process that moves a job to ``running`` holds it. Its identity,
``host/pid/start``, is written into the audit entry that starts each attempt
(``job.running``, ``job.rerun``), so the chain also says which process saw
the data. Another delivery of the job leaves it alone while the lease stands,
and takes it over once the lease is lost, which happens when:

- the holder gave it up (``started_at`` cleared; the runner was unavailable
  and the task's retry runs the job again): ``released``;
- the holder was a process on this host that no longer runs (a killed or
  OOM-killed worker): ``holder_gone``. Known at once, so a killed job runs
  again within seconds instead of after its timeout;
- the job's timeout plus ``LEASE_MARGIN_S`` have passed since it started:
  ``expired``. The only way to know that a holder on another host is lost,
  since its processes cannot be seen from here.

Hosts are told apart by host name, so workers on different machines (or in
different containers) need different host names, as they have by default.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.models import AuditEntry, Job, JobStatus, aware, utcnow

# A job 'running' for longer than its timeout plus this has lost its worker:
# the margin covers preparing the view and checking the result around the run.
LEASE_MARGIN_S = 60
# Celery puts a task back when its worker process dies (task_reject_on_worker_lost).
# A job that keeps killing its worker would loop for ever; after this many losses
# it fails instead.
MAX_WORKER_LOSSES = 3
START_ACTIONS = ("job.running", "job.rerun")


class Lost(StrEnum):
    RELEASED = "released"
    HOLDER_GONE = "holder_gone"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Holder:
    """A process, named so that another process on the same host can tell it is gone."""

    host: str
    pid: int
    # Start time in clock ticks after boot (Linux): tells a reused pid apart.
    start: int | None = None

    @classmethod
    def current(cls) -> Holder:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, _process_start(pid))

    @classmethod
    def parse(cls, text: object) -> Holder | None:
        if not isinstance(text, str):
            return None
        host, _, rest = text.rpartition("/")
        host, _, pid = host.rpartition("/")
        try:
            return cls(host, int(pid), int(rest) if rest else None)
        except ValueError:
            return None

    def __str__(self) -> str:
        return f"{self.host}/{self.pid}/{'' if self.start is None else self.start}"

    def is_gone(self) -> bool:
        """True only when this host can see that the process no longer runs."""
        if self.host != socket.gethostname():
            return False
        return process_gone(self.pid, start=self.start)


def process_gone(pid: int, *, start: int | None = None) -> bool:
    """Whether process ``pid`` of this host has ended (a zombie has ended too)."""
    if not Path("/proc/self/stat").exists():
        try:
            os.kill(pid, 0)  # no /proc here: ask the kernel
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    stat = _stat(pid)
    if stat is None:
        return True
    state, started = stat
    return state in ("Z", "X") or (None not in (start, started) and started != start)


def lost_because(session: Session, job: Job, *, timeout_s: int) -> Lost | None:
    """Why the running job's lease is lost, or None while its holder still holds it."""
    assert job.status == JobStatus.RUNNING
    if job.started_at is None:
        return Lost.RELEASED
    return lost_hold(job.started_at, holder_of(session, job.id), timeout_s=timeout_s)


def lost_hold(started_at: dt.datetime, holder: Holder | None, *, timeout_s: float) -> Lost | None:
    """Why a hold taken at ``started_at`` by ``holder`` is lost (its holder is gone, or
    ``timeout_s`` plus the margin have passed), or None while it stands. A contest
    submission's hold (sandbox.contest.scoring) is judged the same way."""
    if holder is not None and holder.is_gone():
        return Lost.HOLDER_GONE
    if utcnow() - aware(started_at) > dt.timedelta(seconds=timeout_s + LEASE_MARGIN_S):
        return Lost.EXPIRED
    return None


def holder_of(session: Session, job_id: str) -> Holder | None:
    """The process that started the job's latest attempt, as its audit entry names it."""
    details = session.scalars(
        select(AuditEntry.details)
        .where(AuditEntry.action.in_(START_ACTIONS), AuditEntry.subject == job_id)
        .order_by(AuditEntry.seq.desc())
        .limit(1)
    ).first()
    return Holder.parse((details or {}).get("worker"))


def worker_losses(session: Session, job_id: str, *, rerun_action: str = "job.rerun") -> int:
    """How many times the job (or a submission, by its ``rerun_action``) was taken over
    because its worker was lost."""
    reruns = session.scalars(
        select(AuditEntry.details).where(
            AuditEntry.action == rerun_action, AuditEntry.subject == job_id
        )
    )
    lost = (Lost.HOLDER_GONE.value, Lost.EXPIRED.value)
    return sum(1 for details in reruns if (details or {}).get("lost") in lost)


def _process_start(pid: int) -> int | None:
    stat = _stat(pid)
    return None if stat is None else stat[1]


def _stat(pid: int) -> tuple[str, int | None] | None:
    """State and start time of a process, from /proc; None: there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    fields = raw[raw.rfind(")") + 2 :].split()
    state = fields[0] if fields else "?"
    try:
        return state, int(fields[19])  # field 3 (state) and field 22 (starttime)
    except (IndexError, ValueError):
        return state, None
