"""The production runner: each job in its own locked-down Docker container.

The container runs the same harness as the development runner (built into
the image by :mod:`runners.image`), sees only this job's view at ``/input``
(read-only), has no network, a read-only root, a small ``/tmp``, no
capabilities and limits on memory, CPU, processes, time and output. Only the
harness's standard output is read back; it carries the one result line.
"""

from __future__ import annotations

import logging
import shutil
import stat
import time
from dataclasses import dataclass
from typing import Any

import requests
from docker.errors import APIError, ImageNotFound, NotFound

from runners.containers import (
    ENGINE_ERRORS,
    LABEL_DEADLINE,
    LABEL_HOST,
    LABEL_JOB,
    LABEL_MODEL,
    LABEL_PID,
    LABEL_RUNNER,
    container_options,
    model_volume_labels,
    remove,
)
from runners.contract import (
    MODEL_DIR,
    Isolation,
    JobFailed,
    JobSpec,
    RunnerUnavailable,
    RunResult,
    model_too_large,
    parse_harness_output,
)
from runners.image import IMAGE_TAG
from runners.pool import Warm, WarmPool, WarmPoolSettings
from runners.runtimes import RUNTIME_SETTINGS, choose_runtime, registered_runtimes

logger = logging.getLogger(__name__)

STDERR_TAIL_BYTES = 64 * 1024
# What a tar stream of /model adds to the files' own bytes (headers, padding, the
# end-of-archive blocks), allowed above the cap before a model counts as too large.
TAR_SLACK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class JobContainer:
    """One of this runner's containers, as the engine lists it."""

    id: str
    job_id: str
    running: bool
    host: str | None
    pid: int | None
    deadline: float | None


class DockerRunner:
    name = "docker"

    def __init__(
        self,
        client: Any | None = None,
        *,
        image: str = IMAGE_TAG,
        runtime: str = "auto",
        pool: WarmPoolSettings | None = None,
    ) -> None:
        """``runtime``: ``auto``, ``runsc`` or ``runc`` (:mod:`runners.runtimes`); gVisor's
        runsc is a second wall around the job. ``pool``: keep containers started ahead
        (:mod:`runners.pool`)."""
        if runtime not in RUNTIME_SETTINGS:
            raise ValueError(f"runtime is auto, runsc or runc, not {runtime!r}")
        self._client = client
        self.image = image
        self.runtime_setting = runtime
        # Resolved once, on first use: what `docker info` listed then.
        self._runtime: str | None = None
        self._pool_settings = pool
        self._pool: WarmPool | None = None

    def warm_up(self) -> None:
        """Start the warm containers now (a worker process calls this when it starts)."""
        pool = self._warm_pool()
        if pool is not None:
            pool.refill_soon()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def _warm_pool(self) -> WarmPool | None:
        settings = self._pool_settings
        if settings is None or settings.size < 1:
            return None
        if self._pool is None:
            self._pool = WarmPool(self._engine, settings, isolation=self.isolation)
        return self._pool

    def isolation(self) -> Isolation:
        """The runtime and the image (by ID) a job started now runs under."""
        return self._isolation(self._engine())

    def _isolation(self, client: Any) -> Isolation:
        return Isolation(runtime=self._resolve_runtime(client), image_digest=self._image_id(client))

    def _resolve_runtime(self, client: Any) -> str:
        if self._runtime is None:
            try:
                registered = registered_runtimes(client)
            except ENGINE_ERRORS as error:
                raise RunnerUnavailable(f"The Docker engine is not reachable: {error}") from error
            self._runtime = choose_runtime(self.runtime_setting, registered)
        return self._runtime

    def run(self, spec: JobSpec) -> RunResult:
        client = self._engine()
        # The image by its ID from here on: what is recorded is what runs, even if the
        # tag is rebuilt meanwhile.
        isolation = self._isolation(client)
        spec.write_job_file()
        _let_runner_read(spec)
        if spec.model is not None:
            self._prepare_model(client, spec)
        pool = self._warm_pool()
        # A warm container has no model volume: contest runs always start cold.
        warm = pool.take(spec, isolation) if pool is not None and spec.model is None else None
        container = self._create(client, spec, isolation) if warm is None else warm.container
        started = time.monotonic()
        try:
            return self._run_started(client, container, spec, isolation, pool, warm, started)
        except JobFailed as failure:
            failure.isolation = isolation
            raise
        finally:
            _release(container, pool, warm)

    def _run_started(
        self,
        client: Any,
        container: Any,
        spec: JobSpec,
        isolation: Isolation,
        pool: WarmPool | None,
        warm: Warm | None,
        started: float,
    ) -> RunResult:
        try:
            _start_job(container, spec, pool, warm)
            self._wait(container, spec, started)
            oom_killed, stdout = _outcome(container)
        except ENGINE_ERRORS as error:
            raise RunnerUnavailable(f"The Docker engine failed during the job: {error}") from error
        if oom_killed:
            raise JobFailed("memory", f"The job exceeded its memory limit of {spec.memory_mb} MB.")
        result = _parse_result(stdout, spec, container)
        if spec.model is not None and spec.model.writable:
            _check_model_size(client, container, spec, result.log)
        return RunResult(
            result.tables,
            result.log,
            time.monotonic() - started,
            predictions=result.predictions,
            isolation=isolation,
        )

    def _prepare_model(self, client: Any, spec: JobSpec) -> None:
        """fit: a new, empty volume (an old one of that name is a lost attempt's: gone).
        predict: the volume must be there, or the model was lost with its fit."""
        assert spec.model is not None
        try:
            if spec.model.writable:
                self.remove_model(spec.model.name)
                client.volumes.create(
                    name=spec.model.name,
                    driver="local",
                    labels=model_volume_labels(spec.timeout_s),
                )
            else:
                client.volumes.get(spec.model.name)
        except NotFound as error:
            raise RunnerUnavailable("The submission's model volume is gone.") from error
        except ENGINE_ERRORS as error:
            raise RunnerUnavailable(
                f"The Docker engine could not prepare the model volume: {error}"
            ) from error

    def remove_model(self, name: str) -> None:
        """Destroy a submission's model volume (gone already is fine)."""
        try:
            self._engine().volumes.get(name).remove(force=True)
        except NotFound:
            return
        except ENGINE_ERRORS as error:
            # cleanup_orphans() removes it once its deadline has passed.
            logger.warning("could not remove model volume %s: %s", name, error)

    def _image_id(self, client: Any) -> str:
        try:
            return str(client.images.get(self.image).id)
        except ImageNotFound as error:
            raise RunnerUnavailable(
                f"The runner image {self.image} is missing; build it with "
                "`sandbox runner build-image` (or `python -m runners.image`)."
            ) from error
        except ENGINE_ERRORS as error:
            raise RunnerUnavailable(f"The Docker engine is not reachable: {error}") from error

    def _create(self, client: Any, spec: JobSpec, isolation: Isolation) -> Any:
        """A cold container for the job (no warm one fitted)."""
        try:
            return client.containers.create(
                isolation.image_digest, **container_options(spec, runtime=isolation.runtime)
            )
        except ENGINE_ERRORS as error:
            raise RunnerUnavailable(
                f"The Docker engine could not create the job: {error}"
            ) from error

    def cleanup_orphans(self) -> int:
        """Remove this runner's containers that no job is waiting for; return how many.

        A container still inside its job's time limit is left alone, so a
        worker starting up does not kill the jobs of another worker on the
        same engine.
        """
        client = self._engine()
        try:
            containers = client.containers.list(all=True, filters={"label": f"{LABEL_RUNNER}=1"})
        except ENGINE_ERRORS as error:
            raise RunnerUnavailable(f"The Docker engine is not reachable: {error}") from error
        removed = 0
        now = time.time()
        for container in containers:
            deadline = _float(container.labels.get(LABEL_DEADLINE))
            if container.status == "running" and deadline is not None and now < deadline:
                continue
            if remove(container):
                removed += 1
        return removed + self.remove_expired_models()

    def remove_expired_models(self) -> int:
        """Remove the model volumes past their deadline that no container uses; how many."""
        client = self._engine()
        now = time.time()
        try:
            volumes = client.volumes.list(filters={"label": f"{LABEL_MODEL}=1"})
        except ENGINE_ERRORS as error:
            raise RunnerUnavailable(f"The Docker engine is not reachable: {error}") from error
        removed = 0
        for volume in volumes:
            deadline = _float((volume.attrs.get("Labels") or {}).get(LABEL_DEADLINE))
            if deadline is not None and now < deadline:
                continue
            try:
                volume.remove(force=True)
            except ENGINE_ERRORS as error:  # still mounted by a running container
                logger.info("model volume %s stays: %s", volume.name, error)
                continue
            removed += 1
        return removed

    def job_containers(self) -> list[JobContainer]:
        """This runner's containers, in any state, with what their labels say."""
        try:
            listed = self._engine().api.containers(all=True, filters={"label": f"{LABEL_RUNNER}=1"})
        except ENGINE_ERRORS as error:
            raise RunnerUnavailable(f"The Docker engine is not reachable: {error}") from error
        containers = []
        for entry in listed:
            labels = entry.get("Labels") or {}
            pid = _float(labels.get(LABEL_PID))
            containers.append(
                JobContainer(
                    id=entry["Id"],
                    job_id=labels.get(LABEL_JOB, ""),
                    running=entry.get("State") == "running",
                    host=labels.get(LABEL_HOST),
                    pid=None if pid is None else int(pid),
                    deadline=_float(labels.get(LABEL_DEADLINE)),
                )
            )
        return containers

    def remove_container(self, container_id: str) -> bool:
        """Kill and remove one container; False if it was gone already or could not be."""
        try:
            self._engine().api.remove_container(container_id, force=True)
        except NotFound:
            return False
        except ENGINE_ERRORS as error:
            logger.warning("could not remove container %s: %s", container_id, error)
            return False
        return True

    @property
    def client(self) -> Any:
        """The Docker client, made from the environment on first use."""
        return self._engine()

    def _engine(self) -> Any:
        if self._client is None:
            import docker

            try:
                self._client = docker.from_env(timeout=30)
            except ENGINE_ERRORS as error:
                raise RunnerUnavailable(f"The Docker engine is not reachable: {error}") from error
        return self._client

    def _wait(self, container: Any, spec: JobSpec, started: float) -> None:
        try:
            container.wait(timeout=spec.timeout_s)
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as error:
            if time.monotonic() - started < spec.timeout_s:
                raise RunnerUnavailable(f"The Docker engine stopped answering: {error}") from error
            _kill(container)
            raise JobFailed("timeout", f"The job timed out after {spec.timeout_s} s.") from error


def _let_runner_read(spec: JobSpec) -> None:
    """Let the container's user read the view.

    That user (uid 10001) is nobody on the host. The bind mount bypasses the
    view folder's parents, so the folder and its files get read access for
    everyone while the parents (the private instance folder) keep strangers
    on the host out.
    """
    folder = spec.input_dir
    mode = folder.stat().st_mode
    folder.chmod(stat.S_IMODE(mode) | 0o555)
    for path in folder.iterdir():
        # Not through a symbolic link: its target is outside the view anyway.
        if path.is_file() and not path.is_symlink():
            path.chmod(stat.S_IMODE(path.stat().st_mode) | 0o444)


def _check_model_size(client: Any, container: Any, spec: JobSpec, log: str) -> None:
    """Read /model back as a tar stream, counting; past the cap the fit failed.

    The harness caps the model's file itself (RLIMIT_FSIZE); this catches
    anything else a fit left on the volume. Never more than the cap is read.
    """
    assert spec.model is not None
    limit = spec.model.max_bytes + TAR_SLACK_BYTES
    try:
        stream, _ = client.api.get_archive(container.id, MODEL_DIR)
        try:
            seen = 0
            for chunk in stream:
                seen += len(chunk)
                if seen > limit:
                    raise model_too_large(spec.model.max_bytes, log)
        finally:
            # Closes the response: an archive left half read keeps the engine busy with
            # the container, whose removal then waits for the client's whole timeout.
            stream.close()
    except ENGINE_ERRORS as error:
        raise RunnerUnavailable(f"The Docker engine could not read the model: {error}") from error


def _start_job(container: Any, spec: JobSpec, pool: WarmPool | None, warm: Warm | None) -> None:
    if warm is None:
        container.start()
    else:
        assert pool is not None
        pool.hand_over(warm, spec)  # the waiting harness starts the job


def _outcome(container: Any) -> tuple[bool, str]:
    """Whether the memory limit killed the ended job, and its standard output."""
    container.reload()
    oom_killed = bool(container.attrs["State"].get("OOMKilled"))
    # Standard output only: it carries nothing but the harness's result line.
    stdout = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
    return oom_killed, stdout


def _parse_result(stdout: str, spec: JobSpec, container: Any) -> RunResult:
    try:
        return parse_harness_output(stdout, max_output_bytes=spec.max_output_bytes)
    except JobFailed as failure:
        if failure.reason == "malformed_output" and not failure.log:
            failure.log = _stderr_tail(container)  # why it crashed, for auditors
        raise


def _release(container: Any, pool: WarmPool | None, warm: Warm | None) -> None:
    """Remove the job's container (and its warm folder); refill the pool behind it."""
    remove(container)
    if warm is not None and pool is not None:
        shutil.rmtree(warm.folder, ignore_errors=True)
    if pool is not None:
        pool.refill_soon()


def _kill(container: Any) -> None:
    try:
        container.kill()
    except (NotFound, APIError) as error:
        # Most likely it ended by itself meanwhile; removal follows anyway.
        logger.info("could not kill container %s: %s", container.id, error)


def _stderr_tail(container: Any) -> str:
    try:
        stderr = container.logs(stdout=False, stderr=True, tail=200)
    except ENGINE_ERRORS:
        return ""
    return bytes(stderr[-STDERR_TAIL_BYTES:]).decode("utf-8", "replace")


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
