"""Warm runner containers: started ahead, one per future job, each waiting for its view.

A cold job pays for the container's start and for Python importing DuckDB,
pandas and pyarrow inside it. A warm container has done both before its job
exists: it runs the harness in waiting mode, with its own empty folder
mounted read-only at ``/input``, and starts the job the moment ``job.json``
appears there. Isolation is the cold container's, option for option (the
same :func:`runners.containers.container_options`): one container per job,
never reused, removed after its job; until its job arrives it sees an empty
folder and no network.

Each worker process keeps its own small pool and refills it in the background
after every job. A warm container waits at most ``max_idle_s``, then is
replaced; a pool whose process died is swept like any orphan (its containers
carry their creator's host and pid).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runners.containers import container_options, remove
from runners.contract import JOB_FILE, Isolation, JobSpec, RunnerUnavailable

logger = logging.getLogger(__name__)

POOL_JOB_LABEL = "warm-pool"


# What a warm container imports while it waits, by the language it expects:
# SQL needs DuckDB only; pandas and pyarrow would cost it 0.3 CPU-seconds.
LANGUAGES = ("sql", "python")


@dataclass
class Warm:
    container: Any
    folder: Path
    created: float
    memory_mb: int
    timeout_s: int
    # The language whose libraries it imported ahead; it runs a job of either.
    language: str
    # The runtime and image it was started with: a job takes only one of its own.
    isolation: Isolation


@dataclass(frozen=True)
class WarmPoolSettings:
    """How many containers to keep warm, where their folders go, the limits they are made
    for and how long each may wait for its job."""

    size: int
    folder: Path
    memory_mb: int
    timeout_s: int
    max_idle_s: float = 600.0


class WarmPool:
    def __init__(
        self,
        engine: Callable[[], Any],
        settings: WarmPoolSettings,
        *,
        isolation: Callable[[], Isolation],
    ) -> None:
        # The Docker client, asked for when a container is started (made on first use).
        self.engine = engine
        self.folder = settings.folder
        # The runtime and image ID a container started now gets (the runner's).
        self.isolation = isolation
        self.size = settings.size
        self.memory_mb = settings.memory_mb
        self.timeout_s = settings.timeout_s
        self.max_idle_s = settings.max_idle_s
        self._ready: deque[Warm] = deque()
        self._lock = threading.Lock()
        self._filling = False
        self._closed = False
        self._filler: threading.Thread | None = None
        # The next job is most likely in the language of the last one. Before
        # any, expect Python: its imports serve a SQL job too.
        self._expected = "python"
        self._forget_dead_processes()

    def take(self, spec: JobSpec, isolation: Isolation) -> Warm | None:
        """A started container made for this job's limits, runtime and image, or None (then
        run cold). One of another image (rebuilt since) is discarded."""
        if _limits(spec) != _limits(self._template(spec.input_dir)) or (
            spec.timeout_s > self.timeout_s
        ):
            return None
        while True:
            with self._lock:
                self._expected = spec.language
                if not self._ready:
                    return None
                # One warmed for this language if there is one, else any: it still
                # saves the container's start and imports the rest when the job comes.
                warm = next((w for w in self._ready if w.language == spec.language), self._ready[0])
                self._ready.remove(warm)
            fresh = time.monotonic() - warm.created < self.max_idle_s
            if fresh and warm.isolation == isolation and _running(warm.container):
                return warm
            self.discard(warm)

    def hand_over(self, warm: Warm, spec: JobSpec) -> None:
        """Put the job's view in the warm container's folder, the job file last."""
        for path in spec.input_dir.iterdir():
            if path.is_file() and not path.is_symlink() and path.name != JOB_FILE:
                target = warm.folder / path.name
                try:
                    os.link(path, target)
                except OSError:
                    shutil.copyfile(path, target)
                target.chmod(0o444)
        job_file = spec.write_job_file()
        staged = warm.folder / f".{JOB_FILE}.tmp"
        shutil.copyfile(job_file, staged)
        staged.chmod(0o444)
        os.replace(staged, warm.folder / JOB_FILE)  # the container starts on this

    def discard(self, warm: Warm) -> None:
        remove(warm.container)
        shutil.rmtree(warm.folder, ignore_errors=True)

    def fill(self) -> None:
        """Start containers until the pool holds ``size`` of them."""
        try:
            # Once per fill, not per container: the same runtime and image for all of them.
            isolation = self.isolation()
        except RunnerUnavailable as error:
            logger.warning("warm pool: no container started: %s", error)
            return
        while True:
            with self._lock:
                if self._closed or len(self._ready) >= self.size:
                    return
            with self._lock:
                language = self._expected
            warm = self._start_one(language, isolation)
            if warm is None:
                return
            with self._lock:
                if not self._closed:
                    self._ready.append(warm)
                    continue
            self.discard(warm)  # closed while it started
            return

    def refill_soon(self) -> None:
        """Refill in the background, so the next job finds a warm container."""
        with self._lock:
            if self._filling or self._closed:
                return
            self._filling = True

        def run() -> None:
            try:
                self.fill()
            except Exception as error:
                logger.warning("warm pool not refilled: %s", error)
            finally:
                with self._lock:
                    self._filling = False

        self._filler = threading.Thread(target=run, name="warm-pool", daemon=True)
        self._filler.start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            ready, self._ready = list(self._ready), deque()
            filler = self._filler
        if filler is not None:
            filler.join(timeout=30)
        for warm in ready:
            self.discard(warm)

    def _start_one(self, language: str, isolation: Isolation) -> Warm | None:
        self.folder.mkdir(parents=True, exist_ok=True)
        folder = self.folder / f"{os.getpid()}-{os.urandom(6).hex()}"
        folder.mkdir(mode=0o755)
        folder.chmod(0o755)  # the container's user (nobody on the host) reads it
        options = container_options(
            self._template(folder), runtime=isolation.runtime, idle_s=self.max_idle_s
        )
        options["environment"] = {
            **options["environment"],
            "SANDBOX_WAIT_FOR_JOB": "1",
            "SANDBOX_MAX_IDLE_S": str(int(self.max_idle_s)),
            "SANDBOX_WARM_FOR": language,
        }
        client = self.engine()
        try:
            container = client.containers.create(isolation.image_digest, **options)
            container.start()
        except Exception as error:
            logger.warning("warm pool: could not start a container: %s", error)
            shutil.rmtree(folder, ignore_errors=True)
            return None
        return Warm(
            container,
            folder,
            time.monotonic(),
            self.memory_mb,
            self.timeout_s,
            language,
            isolation,
        )

    def _template(self, folder: Path) -> JobSpec:
        """The spec a warm container is made for: the worker's limits, other limits default."""
        return JobSpec(
            job_id=POOL_JOB_LABEL,
            language="sql",
            code="",
            input_dir=folder,
            timeout_s=self.timeout_s,
            memory_mb=self.memory_mb,
        )

    def _forget_dead_processes(self) -> None:
        """Folders left by pools of processes that no longer exist."""
        if not self.folder.exists():
            return
        for path in self.folder.iterdir():
            pid, _, _ = path.name.partition("-")
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)


def _limits(spec: JobSpec) -> tuple[Any, ...]:
    return (spec.memory_mb, spec.cpus, spec.pids, spec.tmp_mb, spec.max_output_bytes)


def _running(container: Any) -> bool:
    try:
        container.reload()
    except Exception:
        return False
    return bool(container.status == "running")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
