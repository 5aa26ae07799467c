"""The development runner: the harness in a child process on this host.

It isolates nothing that matters — no network namespace, no read-only root,
no other user — and exists so that ``make demo`` works on a machine with no
Docker engine. A production configuration refuses it (see sandbox.config).
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runners.contract import (
    HARNESS_DIR,
    NO_CONTAINER,
    Isolation,
    JobFailed,
    JobSpec,
    RunResult,
    model_too_large,
    parse_harness_output,
)

WARNING = (
    "WARNING: the development process runner is in use. Jobs run as host processes "
    "WITHOUT container isolation. Never use it with real data."
)


_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
DEFAULT_CPU_WEIGHT = 1024
NICE_FOR_LIGHTER_WEIGHT = 5
# A model lives from its fit to its predict: one older than this was left by a killed worker.
ORPHAN_MODEL_AGE_S = 6 * 3600


class LocalProcessRunner:
    name = "local"

    def __init__(self, models_dir: Path | None = None) -> None:
        # A contest submission's models, one private folder each (the Docker
        # runner's named volumes).
        self.models_dir = (
            models_dir or Path(tempfile.gettempdir()) / f"sandbox-models-{os.getuid()}"
        )

    def isolation(self) -> Isolation:
        """None and None: a local process has no container runtime and no image."""
        return NO_CONTAINER

    def run(self, spec: JobSpec) -> RunResult:
        spec.write_job_file()
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"sandbox-job-{spec.job_id}-") as tmp:
            env = {
                "PATH": "/usr/bin:/bin",
                "HOME": tmp,
                "SANDBOX_INPUT": str(spec.input_dir),
                "SANDBOX_TMP": tmp,
                "PYTHONDONTWRITEBYTECODE": "1",
                # One BLAS and one OpenMP thread, as in the runner image.
                "OPENBLAS_NUM_THREADS": "1",
                "OMP_NUM_THREADS": "1",
            }
            if spec.model is not None:
                env["SANDBOX_MODEL"] = str(self._model_folder(spec.model.name, spec.model.writable))
            for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
                if name in os.environ:
                    env[name] = os.environ[name]
            memory = spec.memory_mb * 1024 * 1024 * 4  # address space, not resident memory

            def limit() -> None:
                resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
                if spec.cpu_weight < DEFAULT_CPU_WEIGHT:
                    os.nice(NICE_FOR_LIGHTER_WEIGHT)  # the container's cpu-shares, roughly

            try:
                completed = subprocess.run(
                    [sys.executable, "-I", str(HARNESS_DIR / "harness.py")],
                    cwd=tmp,
                    env=env,
                    capture_output=True,
                    timeout=spec.timeout_s,
                    preexec_fn=limit,
                    check=False,
                )
            except subprocess.TimeoutExpired as error:
                raise JobFailed(
                    "timeout", f"The job timed out after {spec.timeout_s} s."
                ) from error
        stdout = completed.stdout.decode("utf-8", "replace")
        result = parse_harness_output(stdout, max_output_bytes=spec.max_output_bytes)
        if spec.model is not None and spec.model.writable:
            folder = self.models_dir / spec.model.name
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            if size > spec.model.max_bytes:
                raise model_too_large(spec.model.max_bytes, result.log)
        return RunResult(
            result.tables, result.log, time.monotonic() - started, predictions=result.predictions
        )

    def _model_folder(self, name: str, writable: bool) -> Path:
        if not _MODEL_NAME.match(name):
            raise ValueError("a model volume's name is letters, digits, '_', '.' and '-'")
        folder = self.models_dir / name
        if writable:
            self.models_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder.mkdir(mode=0o700)  # a fresh one for each fit: never an old model
        return folder

    def remove_model(self, name: str) -> None:
        if _MODEL_NAME.match(name):
            shutil.rmtree(self.models_dir / name, ignore_errors=True)

    def cleanup_orphans(self) -> int:
        return self.remove_expired_models()

    def remove_expired_models(self) -> int:
        """Remove model folders left by a killed worker (older than any submission runs)."""
        removed = 0
        cutoff = time.time() - ORPHAN_MODEL_AGE_S
        try:
            folders = [p for p in self.models_dir.iterdir() if p.is_dir() and not p.is_symlink()]
        except FileNotFoundError:
            return 0
        for folder in folders:
            try:
                stale = folder.stat().st_mtime < cutoff
            except FileNotFoundError:
                continue
            if stale and _MODEL_NAME.match(folder.name):
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed
