"""Configuration from ``SANDBOX_*`` environment variables and the instance folder.

Secrets (pseudonym secret, web session key) are generated on the first start
into ``<instance>/secrets.json`` (mode 0600) and never committed. The master
keys that wrap the datasets' data keys come from ``SANDBOX_MASTER_KEY`` or a
key file (``SANDBOX_MASTER_KEY_FILE``, default ``<instance>/master-keys.json``);
release signing keys live in the instance (see :mod:`sandbox.integrity.keys`).
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from runners.runtimes import RUNTIME_SETTINGS
from sandbox.errors import ConfigurationError


@dataclass(frozen=True)
class Settings:
    instance: Path
    database_url: str
    broker_url: str
    runner: str  # "auto" | "docker" | "local"
    environment: str  # "development" | "production"
    job_timeout_s: int
    job_memory_mb: int
    # The Docker runner's engine runtime: "auto" (gVisor's runsc where the engine lists
    # it, else runc with a warning), "runsc" (or no runner at all), "runc".
    runtime: str = "auto"
    # The master keyring file; None: <instance>/master-keys.json. Unused when
    # SANDBOX_MASTER_KEY is set (see sandbox.integrity.keys).
    master_key_file: Path | None = None
    # How often a worker's sweeper re-enqueues jobs whose message was lost and
    # clears what killed workers left behind (sandbox.worker.sweeper).
    sweep_interval_s: float = 15.0
    # Fairness: per analyst, jobs waiting or running at once, and submissions a minute.
    max_active_jobs: int = 4
    max_submissions_per_minute: int = 30
    # Docker runner containers each worker process starts ahead of its jobs (0: none).
    runner_pool: int = 1
    # The time zone the web pages show times in (the database keeps UTC).
    time_zone: str = "Asia/Shanghai"
    # The largest file an owner may import (checked while it streams in), in bytes.
    max_import_bytes: int = 2 << 30
    # Each of a contest submission's runs (fit, predict; smoke and hidden): its time,
    # memory, and the largest model fit may leave for predict.
    submission_timeout_s: int = 300
    submission_memory_mb: int = 2048
    max_model_bytes: int = 256 << 20
    # Python modules that register organizers' own contest metrics when imported
    # (sandbox.contest.metrics.register_metric); the worker runs them, never a team.
    metric_modules: tuple[str, ...] = ()
    # The front door (sandbox.access.throttle). An account that fails this many logins
    # within the window is locked for the lockout; an address that fails this many (for
    # any accounts) is refused until its failures age out of the window. Five guesses a
    # quarter hour per account is ample for a person and hopeless for a guesser.
    login_account_failures: int = 5
    login_address_failures: int = 30
    login_window_s: int = 900
    login_lockout_s: int = 900
    # An API token's lifetime in days: the default and the longest a request may ask for.
    token_lifetime_days: int = 7
    # Reverse proxies in front whose X-Forwarded-For / -Proto are trusted (werkzeug
    # ProxyFix); 0: none, the client address is the connection's. Never set it without a
    # proxy that overwrites those headers, or any client could pick its address.
    trusted_proxies: int = 0
    # Served behind TLS (SANDBOX_TLS=1, or SANDBOX_PUBLIC_URL starting https://): the
    # session cookie is then sent over HTTPS only.
    tls: bool = False

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
            job_timeout_s=int(env.get("SANDBOX_JOB_TIMEOUT", "120")),
            job_memory_mb=int(env.get("SANDBOX_JOB_MEMORY_MB", "1024")),
            runtime=_runtime(env),
            master_key_file=Path(env["SANDBOX_MASTER_KEY_FILE"]).resolve()
            if env.get("SANDBOX_MASTER_KEY_FILE")
            else None,
            sweep_interval_s=_positive(env, "SANDBOX_SWEEP_INTERVAL", "15"),
            max_active_jobs=_whole(env, "SANDBOX_MAX_ACTIVE_JOBS", "4"),
            max_submissions_per_minute=_whole(env, "SANDBOX_MAX_SUBMISSIONS_PER_MINUTE", "30"),
            runner_pool=_count(env, "SANDBOX_RUNNER_POOL", "1"),
            time_zone=_time_zone(env.get("SANDBOX_TIME_ZONE", "Asia/Shanghai")),
            max_import_bytes=_whole(env, "SANDBOX_MAX_IMPORT_BYTES", str(2 << 30)),
            submission_timeout_s=_whole(env, "SANDBOX_SUBMISSION_TIMEOUT", "300"),
            submission_memory_mb=_whole(env, "SANDBOX_SUBMISSION_MEMORY_MB", "2048"),
            max_model_bytes=_whole(env, "SANDBOX_MAX_MODEL_BYTES", str(256 << 20)),
            metric_modules=tuple(
                m.strip() for m in env.get("SANDBOX_METRIC_MODULES", "").split(",") if m.strip()
            ),
            login_account_failures=_whole(env, "SANDBOX_LOGIN_ACCOUNT_FAILURES", "5"),
            login_address_failures=_whole(env, "SANDBOX_LOGIN_ADDRESS_FAILURES", "30"),
            login_window_s=_whole(env, "SANDBOX_LOGIN_WINDOW", "900"),
            login_lockout_s=_whole(env, "SANDBOX_LOGIN_LOCKOUT", "900"),
            token_lifetime_days=_whole(env, "SANDBOX_TOKEN_LIFETIME_DAYS", "7"),
            trusted_proxies=_count(env, "SANDBOX_TRUSTED_PROXIES", "0"),
            tls=_tls(env),
        )

    @property
    def datasets_dir(self) -> Path:
        return self.instance / "datasets"

    @property
    def work_dir(self) -> Path:
        return self.instance / "work"

    @property
    def contest_work_dir(self) -> Path:
        """Submissions' run folders: outside ``work_dir``, whose sweeper removes what is
        not a job's."""
        return self.instance / "contest-work"

    @property
    def master_key_path(self) -> Path:
        return self.master_key_file or self.instance / "master-keys.json"

    def ensure_dirs(self) -> None:
        for folder in (self.instance, self.datasets_dir, self.work_dir, self.contest_work_dir):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def secrets(self) -> Secrets:
        return Secrets.load_or_create(self.instance / "secrets.json")


def _time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ConfigurationError(
            f"SANDBOX_TIME_ZONE must be an IANA time zone such as Asia/Shanghai, not {name!r}"
        ) from error
    return name


def _tls(env: dict[str, str]) -> bool:
    flag = env.get("SANDBOX_TLS", "")
    if flag not in ("", "0", "1"):
        raise ConfigurationError("SANDBOX_TLS must be 1 (served over HTTPS) or 0")
    return flag == "1" or env.get("SANDBOX_PUBLIC_URL", "").lower().startswith("https://")


def _runtime(env: dict[str, str]) -> str:
    if "SANDBOX_DOCKER_RUNTIME" in env:
        raise ConfigurationError(
            "SANDBOX_DOCKER_RUNTIME is no longer read; set SANDBOX_RUNTIME to auto, runsc or runc"
        )
    runtime = env.get("SANDBOX_RUNTIME", "auto")
    if runtime not in RUNTIME_SETTINGS:
        raise ConfigurationError(f"SANDBOX_RUNTIME must be auto, runsc or runc, not {runtime!r}")
    return runtime


def _count(env: dict[str, str], name: str, default: str) -> int:
    text = env.get(name, default)
    if not text.isdigit() or int(text) > 8:
        raise ConfigurationError(f"{name} must be a whole number from 0 to 8")
    return int(text)


def _whole(env: dict[str, str], name: str, default: str) -> int:
    text = env.get(name, default)
    if not text.isdigit() or int(text) < 1:
        raise ConfigurationError(f"{name} must be a whole number of at least 1")
    return int(text)


def _positive(env: dict[str, str], name: str, default: str) -> float:
    try:
        value = float(env.get(name, default))
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ConfigurationError(f"{name} must be a number of seconds above 0")
    return value


@dataclass(frozen=True)
class Secrets:
    # An older secrets.json also holds "master_key": sandbox.integrity.keys moves it into
    # the master keyring file on first use, so that a rotation can retire it.
    pseudonym_secret: bytes
    session_key: bytes

    @classmethod
    def load_or_create(cls, path: Path) -> Secrets:
        if not path.exists():
            values = {name: secrets.token_hex(32) for name in cls.__dataclass_fields__}
            create_secret_file_once(path, json.dumps(values))
        values = json.loads(path.read_text())
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
