"""The running sandbox: settings and the components built from them, made once."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

from sqlalchemy.orm import Session

from datasets.storage import DatasetStore
from runners import Runner
from sandbox.config import Secrets, Settings
from sandbox.db import transaction
from sandbox.errors import ConfigurationError
from sandbox.integrity.keys import SigningKeys, master_keyring_source
from sandbox.integrity.signing import ReleaseKey

log = logging.getLogger(__name__)


@dataclass
class Sandbox:
    settings: Settings

    def __post_init__(self) -> None:
        load_metric_modules(self.settings.metric_modules)

    @contextmanager
    def tx(self) -> Iterator[Session]:
        with transaction(self.settings.database_url) as session:
            yield session

    @cached_property
    def secrets(self) -> Secrets:
        self.settings.ensure_dirs()
        return self.settings.secrets()

    @cached_property
    def store(self) -> DatasetStore:
        self.settings.ensure_dirs()
        return DatasetStore(self.settings.datasets_dir, master_keyring_source(self.settings))

    @cached_property
    def signing_keys(self) -> SigningKeys:
        self.settings.ensure_dirs()
        return SigningKeys(self.settings.instance)

    @property
    def release_key(self) -> ReleaseKey:
        """The current signing key, read again each time so a rotation takes effect."""
        return self.signing_keys.current()

    @cached_property
    def runner(self) -> Runner:
        return choose_runner(self.settings)


def docker_ready(runtime: str | None = None) -> tuple[bool, str]:
    """Whether a Docker engine is reachable and has the runner image."""
    try:
        import docker
        from docker.errors import DockerException, ImageNotFound

        from runners.image import IMAGE_TAG
    except ImportError as error:
        return False, f"the Docker runner cannot be loaded ({error})"
    try:
        client = docker.from_env(timeout=5)
        client.ping()
    except DockerException:
        return False, "no Docker engine is reachable"
    try:
        client.images.get(IMAGE_TAG)
    except ImageNotFound:
        return False, f"the runner image {IMAGE_TAG} is not built (sandbox runner build-image)"
    finally:
        client.close()
    return True, "Docker engine and runner image are ready"


def choose_runner(settings: Settings) -> Runner:
    from runners.local import WARNING, LocalProcessRunner

    if settings.runner in ("docker", "auto"):
        ready, why = docker_ready()
        if ready or settings.runner == "docker":
            from runners.docker_runner import DockerRunner, WarmPoolSettings

            pool = WarmPoolSettings(
                size=settings.runner_pool,
                folder=settings.instance / "runner-pool",
                memory_mb=settings.job_memory_mb,
                timeout_s=settings.job_timeout_s,
            )
            return DockerRunner(runtime=settings.runtime, pool=pool)
        if settings.environment == "production":
            raise ConfigurationError(f"production needs the Docker runner, but {why}")
        log.warning("%s (%s)", WARNING, why)
    return LocalProcessRunner()


def describe_runner(sandbox: Sandbox) -> tuple[bool, list[str]]:
    """What ``sandbox runner status`` says: whether jobs can run, and under what."""
    from runners import RunnerUnavailable

    settings = sandbox.settings
    ready, why = docker_ready()
    lines = [
        f"docker: {why}",
        f"configured: SANDBOX_RUNNER={settings.runner} SANDBOX_RUNTIME={settings.runtime}",
    ]
    try:
        runner = sandbox.runner
        isolation = runner.isolation()
    except (ConfigurationError, RunnerUnavailable) as error:
        return False, [*lines, f"runtime: unavailable: {error}"]
    lines.append(f"runner: {runner.name}")
    if isolation.runtime is None:
        lines.append(
            "runtime: None (the development runner runs jobs as local processes, with no "
            "container runtime; each job records runtime None)"
        )
        return ready, lines
    gvisor = " (gVisor)" if isolation.runtime == "runsc" else " (no gVisor)"
    lines.append(f"runtime: {isolation.runtime}{gvisor}")
    lines.append(f"image: {isolation.image_digest}")
    return ready, lines


def load_metric_modules(names: tuple[str, ...]) -> None:
    """Import the modules that register organizers' metrics (each registers on import)."""
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise ConfigurationError(
                f"SANDBOX_METRIC_MODULES names {name!r}, which cannot be imported: {error}"
            ) from error


_current: Sandbox | None = None


def current() -> Sandbox:
    """The process-wide sandbox, from the environment (worker and CLI)."""
    global _current
    if _current is None:
        _current = Sandbox(Settings.from_env())
    return _current


def set_current(sandbox: Sandbox | None) -> None:
    global _current
    _current = sandbox
