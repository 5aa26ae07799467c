"""The one contract every runner implements.

A runner takes a :class:`JobSpec` (the job's code and the folder holding its
view) and returns a :class:`RunResult`, or raises :class:`JobFailed` (the job
itself failed: do not retry) or :class:`RunnerUnavailable` (the runner could
not run it now: retry later). Nothing a job printed ever reaches the analyst:
``RunResult.log`` and ``JobFailed.log`` are for auditors only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

HARNESS_DIR = Path(__file__).parent / "harness"
JOB_FILE = "job.json"
RESULT_MARKER = "SANDBOX-RESULT "
MAX_LOG_CHARS = 1_000_000

# "fit" and "predict" are a contest submission's two runs (:class:`ModelVolume`).
Language = Literal["sql", "python", "fit", "predict"]
FailureReason = Literal[
    "error", "timeout", "memory", "output_too_large", "malformed_output", "model_too_large"
]
MODEL_DIR = "/model"
MODEL_FILE = "model.pkl"

_SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,99}$")


# The engine runtimes the Docker runner knows: gVisor's user-space kernel, or runc.
Runtime = Literal["runsc", "runc"]


class RunnerError(Exception):
    """Base of every runner error."""


class RunnerUnavailable(RunnerError):
    """The runner cannot run jobs now (engine down, image missing): retry later."""


class JobFailed(RunnerError):
    """The job itself failed. ``message`` is safe for the analyst; ``log`` is not."""

    def __init__(
        self,
        reason: FailureReason,
        message: str,
        *,
        error_type: str | None = None,
        line: int | None = None,
        log: str = "",
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.error_type = error_type
        self.line = line
        self.log = log
        # Where the failed run ran (the runner sets it), recorded like a result's.
        self.isolation: Isolation | None = None


@dataclass(frozen=True)
class Isolation:
    """What a run ran under: the engine runtime (``runsc``, ``runc``) and the image's ID
    (``sha256:...``); both None for the development runner, which has neither."""

    runtime: str | None
    image_digest: str | None

    def describe(self) -> str:
        if self.runtime is None:
            return "no container runtime (the development runner: a local process)"
        return f"runtime {self.runtime}, image {self.image_digest}"


NO_CONTAINER = Isolation(runtime=None, image_digest=None)


@dataclass(frozen=True)
class ModelVolume:
    """Where a submission's model lives between its ``fit`` and its ``predict`` run.

    ``fit`` writes it (``writable``), ``predict`` only reads it; nothing else ever
    mounts it, and the runner's :meth:`Runner.remove_model` destroys it after.
    ``max_bytes`` caps what ``fit`` may leave there.
    """

    name: str
    writable: bool
    max_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True)
class JobSpec:
    job_id: str
    language: Language
    # SQL: the checked and rewritten statement. Python: the analyst's code.
    code: str
    # The job's private view folder (``<table>.parquet``), mounted read-only.
    input_dir: Path
    timeout_s: int = 60
    memory_mb: int = 1024
    cpus: float = 1.0
    # The CPU weight when the host is busy (Docker's cpu-shares, 1024 by default): contest
    # runs take less, so researchers' jobs beside them keep their pace.
    cpu_weight: int = 1024
    pids: int = 128
    tmp_mb: int = 64
    max_output_bytes: int = 8 * 1024 * 1024
    # A contest run's model (languages fit and predict only).
    model: ModelVolume | None = None

    def __post_init__(self) -> None:
        if (self.language in ("fit", "predict")) != (self.model is not None):
            raise ValueError("fit and predict runs, and only they, have a model volume")
        if self.model is not None and self.model.writable != (self.language == "fit"):
            raise ValueError("only a fit run writes its model")

    def write_job_file(self) -> Path:
        """Write the harness's instructions beside the view tables."""
        path = self.input_dir / JOB_FILE
        path.write_text(
            json.dumps(
                {
                    "job_id": self.job_id,
                    "language": self.language,
                    "code": self.code,
                    "max_output_bytes": self.max_output_bytes,
                    "max_model_bytes": self.model.max_bytes if self.model else 0,
                }
            ),
            encoding="utf-8",
        )
        return path


@dataclass(frozen=True)
class OutputTable:
    name: str
    columns: list[str]
    rows: list[list[Any]]
    # What a Python job declared about this output through the helper.
    declared: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResult:
    tables: list[OutputTable]
    log: str
    duration_s: float
    # A predict run's predictions, for the worker's scoring only: never released.
    predictions: list[Any] | None = None
    isolation: Isolation = NO_CONTAINER


class Runner(Protocol):
    name: str

    def run(self, spec: JobSpec) -> RunResult: ...

    def isolation(self) -> Isolation: ...

    def cleanup_orphans(self) -> int: ...

    def remove_model(self, name: str) -> None: ...

    def remove_expired_models(self) -> int: ...


def parse_harness_output(stdout: str, *, max_output_bytes: int, log: str = "") -> RunResult:
    """Turn the harness's result line into a result, or raise :class:`JobFailed`.

    The harness writes exactly one line starting with ``RESULT_MARKER``. Code
    that tries to forge one can only forge its own output, which still goes
    through disclosure control; the error fields are validated so that no
    value from the data can ride on them. Whatever cannot be read is
    ``malformed_output``: never another Python error the worker would not expect.
    """
    # The line carries the tables and a tail of the job's log (at most
    # LOG_TAIL_BYTES before JSON escaping); the tables alone are checked below.
    if len(stdout.encode("utf-8", "replace")) > max_output_bytes + 1024 * 1024:
        raise _too_large(max_output_bytes, log)
    # Only "\n" ends a line: str.splitlines() also breaks at U+0085, U+2028 and
    # U+2029, which JSON leaves unescaped inside a string (a cell, the log).
    lines = [ln.rstrip("\r") for ln in stdout.split("\n") if ln.startswith(RESULT_MARKER)]
    if len(lines) != 1:
        raise JobFailed(
            "malformed_output", "The job ended without a result (it may have been killed).", log=log
        )
    try:
        envelope = json.loads(lines[0][len(RESULT_MARKER) :])
        if not isinstance(envelope, dict):
            raise TypeError("the result is not an object")
        log = log or str(envelope.get("log", ""))[:MAX_LOG_CHARS]
        if not envelope.get("ok"):
            raise _failure(envelope.get("error"), max_output_bytes=max_output_bytes, log=log)
        duration = float(envelope.get("duration_s", 0.0) or 0.0)
        tables = _tables(envelope.get("tables", []), max_output_bytes=max_output_bytes, log=log)
        predictions = envelope.get("predictions")
        if predictions is not None and not isinstance(predictions, list):
            raise TypeError("predictions is not a list")
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise JobFailed(
            "malformed_output", "The job's result could not be read.", log=log
        ) from error
    return RunResult(tables=tables, log=log, duration_s=duration, predictions=predictions)


def _too_large(max_output_bytes: int, log: str) -> JobFailed:
    return JobFailed(
        "output_too_large",
        f"The job's output is larger than the cap of {max_output_bytes} bytes.",
        log=log,
    )


def model_too_large(max_bytes: int, log: str = "") -> JobFailed:
    return JobFailed(
        "model_too_large",
        f"The fitted model is larger than the cap of {max_bytes} bytes.",
        log=log,
    )


def _failure(failure: object, *, max_output_bytes: int, log: str) -> JobFailed:
    """The job's own failure, told by reason, error type and line only."""
    failure = failure or {}
    if not isinstance(failure, dict):
        raise TypeError("the error is not an object")
    if failure.get("reason", "error") == "output_too_large":
        return _too_large(max_output_bytes, log)
    if failure.get("reason") == "model_too_large":
        return model_too_large(int(failure.get("max_bytes") or 0), log)
    error_type = str(failure.get("type", "Error"))
    if not _SAFE_NAME.fullmatch(error_type):
        error_type = "Error"
    line = failure.get("line")
    line = line if isinstance(line, int) and 0 < line < 1_000_000 else None
    where = f" at line {line} of your code" if line else ""
    return JobFailed(
        "error", f"The job raised {error_type}{where}.", error_type=error_type, line=line, log=log
    )


def _tables(raw_tables: object, *, max_output_bytes: int, log: str) -> list[OutputTable]:
    if not isinstance(raw_tables, list):
        raise TypeError("tables is not a list")
    if len(json.dumps(raw_tables, ensure_ascii=False).encode()) > max_output_bytes:
        raise _too_large(max_output_bytes, log)
    try:
        return [
            OutputTable(
                name=str(raw["name"]),
                columns=[str(c) for c in raw["columns"]],
                rows=[list(r) for r in raw["rows"]],
                declared=_mapping(raw.get("declared")),
            )
            for raw in raw_tables
        ]
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise JobFailed("malformed_output", "The job's output is malformed.", log=log) from error


def _mapping(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError("declared is not an object")
    return dict(value)
