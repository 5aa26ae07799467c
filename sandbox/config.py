"""Configuration from ``SANDBOX_*`` environment variables and the instance folder.

Secrets (master key, pseudonym secret, web session key) are generated on the
first start into ``<instance>/secrets.json`` (mode 0600) and never committed.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sandbox.errors import ConfigurationError


@dataclass(frozen=True)
class Settings:
    instance: Path
    database_url: str
    broker_url: str
    runner: str  # "auto" | "docker" | "local"
    environment: str  # "development" | "production"
    k_threshold: int
    job_timeout_s: int
    job_memory_mb: int
    docker_runtime: str | None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        instance = Path(env.get("SANDBOX_INSTANCE", "instance")).resolve()
        environment = env.get("SANDBOX_ENV", "development")
        runner = env.get("SANDBOX_RUNNER", "auto")
        if runner not in ("auto", "docker", "local"):
            raise ConfigurationError(
                f"SANDBOX_RUNNER must be auto, docker or local, not {runner!r}"
            )
        if environment == "production" and runner == "local":
            raise ConfigurationError("SANDBOX_ENV=production refuses the development runner")
        return cls(
            instance=instance,
            database_url=env.get("SANDBOX_DATABASE_URL", f"sqlite:///{instance / 'sandbox.db'}"),
            broker_url=env.get("SANDBOX_BROKER_URL", f"sqla+sqlite:///{instance / 'broker.db'}"),
            runner=runner,
            environment=environment,
            k_threshold=int(env.get("SANDBOX_K_THRESHOLD", "10")),
            job_timeout_s=int(env.get("SANDBOX_JOB_TIMEOUT", "120")),
            job_memory_mb=int(env.get("SANDBOX_JOB_MEMORY_MB", "1024")),
            docker_runtime=env.get("SANDBOX_DOCKER_RUNTIME") or None,
        )

    @property
    def datasets_dir(self) -> Path:
        return self.instance / "datasets"

    @property
    def work_dir(self) -> Path:
        return self.instance / "work"

    def ensure_dirs(self) -> None:
        for folder in (self.instance, self.datasets_dir, self.work_dir):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def secrets(self) -> Secrets:
        return Secrets.load_or_create(self.instance / "secrets.json")


@dataclass(frozen=True)
class Secrets:
    master_key: bytes
    pseudonym_secret: bytes
    session_key: bytes

    @classmethod
    def load_or_create(cls, path: Path) -> Secrets:
        if not path.exists():
            values = {name: secrets.token_hex(32) for name in cls.__dataclass_fields__}
            create_secret_file_once(path, json.dumps(values))
        values = json.loads(path.read_text())
        env_master = os.environ.get("SANDBOX_MASTER_KEY")
        if env_master:
            values["master_key"] = env_master
        return cls(**{name: bytes.fromhex(values[name]) for name in cls.__dataclass_fields__})


def create_secret_file_once(path: Path, content: str) -> None:
    """Write a 0600 file unless it exists; readers never see it half-written.

    The content goes to a private temporary file that is then hard-linked into
    place, which fails if another process of this instance got there first.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        os.link(temporary, path)
    except FileExistsError:
        pass  # another process created it first; theirs stands
    finally:
        os.unlink(temporary)
