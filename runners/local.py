"""The development runner: the harness in a child process on this host.

It isolates nothing that matters — no network namespace, no read-only root,
no other user — and exists so that ``make demo`` works on a machine with no
Docker engine. A production configuration refuses it (see sandbox.config).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time

from runners.contract import HARNESS_DIR, JobFailed, JobSpec, RunResult, parse_harness_output

WARNING = (
    "WARNING: the development process runner is in use. Jobs run as host processes "
    "WITHOUT container isolation. Never use it with real data."
)


class LocalProcessRunner:
    name = "local"

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
                "OPENBLAS_NUM_THREADS": "1",
            }
            for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
                if name in os.environ:
                    env[name] = os.environ[name]
            memory = spec.memory_mb * 1024 * 1024 * 4  # address space, not resident memory

            def limit() -> None:
                resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

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
        return RunResult(result.tables, result.log, time.monotonic() - started)

    def cleanup_orphans(self) -> int:
        return 0
