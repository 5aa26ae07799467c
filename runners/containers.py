"""One job's container: the options it is made with, its labels, and its removal.

A container started for its job (:mod:`runners.docker_runner`) and one started
ahead of it (:mod:`runners.pool`) are made with the same options, option for
option, and removed the same way: isolation does not depend on which path a
job takes.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import time
from typing import Any

import requests
from docker.errors import DockerException, NotFound
from docker.types import LogConfig, Mount, Ulimit

from runners.contract import MODEL_DIR, JobSpec

logger = logging.getLogger(__name__)

LABEL_JOB = "sandbox.job"
LABEL_RUNNER = "sandbox.runner"
LABEL_DEADLINE = "sandbox.deadline"
# The host and process that created the container (the job's lease holder): a
# worker can then tell a killed worker's container from a live one.
LABEL_HOST = "sandbox.host"
LABEL_PID = "sandbox.pid"
# A contest submission's model volume (runners.contract.ModelVolume).
LABEL_MODEL = "sandbox.model"
RUNNER_USER = "10001:10001"
# Time, past a job's own timeout, after which its container is surely an orphan.
ORPHAN_GRACE_S = 60
# Under gVisor the pids limit counts the host threads of the sandbox's own kernel (about
# 15 when idle, and one per job thread that runs on the ptrace platform) as well as the
# job's: without room for them a sandbox of a small limit dies before the job starts.
RUNSC_PIDS_OVERHEAD = 32
# What a lost or failing engine raises: the SDK's errors, and the HTTP
# client's when the connection itself breaks.
ENGINE_ERRORS = (DockerException, requests.exceptions.RequestException)


def container_options(
    spec: JobSpec, *, runtime: str | None = None, idle_s: float = 0.0
) -> dict[str, Any]:
    """What the engine creates a job's container with (``docker create``'s options)."""
    # A warm container may wait idle_s for its job before the job's own time starts.
    deadline = time.time() + idle_s + spec.timeout_s + ORPHAN_GRACE_S
    options: dict[str, Any] = {
        "name": f"sandbox-job-{_name_part(spec.job_id)}-{secrets.token_hex(3)}",
        # Only this job's view, read-only: the job cannot change its input.
        "mounts": [Mount("/input", str(spec.input_dir.resolve()), type="bind", read_only=True)],
        # No network namespace peers: nothing to exfiltrate to, nothing to fetch.
        "network_mode": "none",
        # Nothing in the image can be replaced or planted between jobs.
        "read_only": True,
        "tmpfs": {
            # The only writable place: small, no programs run from it, no setuid.
            "/tmp": f"size={spec.tmp_mb}m,mode=1777,noexec,nosuid,nodev",
            # The engine mounts the message-queue file system here, writable by all (even
            # with no IPC); an empty read-only folder instead.
            "/dev/mqueue": "ro,size=4k,mode=0555,noexec,nosuid,nodev",
        },
        # No /dev/shm: a second writable place outside the /tmp cap.
        "ipc_mode": "none",
        # Not root, and nobody on the host.
        "user": RUNNER_USER,
        # No capability at all: the job needs none to compute.
        "cap_drop": ["ALL"],
        # setuid programs cannot raise privileges either.
        "security_opt": ["no-new-privileges"],
        # The same number twice: no swap, so the limit is real memory.
        "mem_limit": f"{spec.memory_mb}m",
        "memswap_limit": f"{spec.memory_mb}m",
        # A CPU share, so one job cannot starve the others.
        "nano_cpus": int(spec.cpus * 1_000_000_000),
        # Its weight when CPUs are contended (relative to other containers' 1024).
        "cpu_shares": spec.cpu_weight,
        # Processes and threads: a fork bomb stops here (under gVisor it takes the
        # sandbox's kernel down with it: the job ends without a result).
        "pids_limit": spec.pids + (RUNSC_PIDS_OVERHEAD if runtime == "runsc" else 0),
        "ulimits": [
            # No core dump: it would hold the job's data and land on the host.
            Ulimit(name="core", soft=0, hard=0),
            # No POSIX message queue either: kernel memory outside every cap.
            Ulimit(name="msgqueue", soft=0, hard=0),
        ],
        # Only what the harness reads; no host environment, no secrets.
        "environment": {"SANDBOX_INPUT": "/input", "SANDBOX_TMP": "/tmp"},
        # json-file so the output can be read back, and bounded on disk: two
        # files, each larger than any output the cap allows even after JSON
        # escaping, so an oversized output is seen as such, not as a cut one.
        "log_config": LogConfig(
            type="json-file",
            config={"max-size": str(2 * spec.max_output_bytes + 1024 * 1024), "max-file": "2"},
        ),
        # To find (and remove) this runner's containers after a crash.
        "labels": {
            LABEL_JOB: spec.job_id,
            LABEL_RUNNER: "1",
            LABEL_DEADLINE: f"{deadline:.0f}",
            LABEL_HOST: socket.gethostname(),
            LABEL_PID: str(os.getpid()),
        },
    }
    if spec.model is not None:
        # The submission's own model volume: fit writes it, predict only reads it.
        options["mounts"].append(
            Mount(MODEL_DIR, spec.model.name, type="volume", read_only=not spec.model.writable)
        )
        options["environment"]["SANDBOX_MODEL"] = MODEL_DIR
    if runtime:
        # runsc: gVisor, a user-space kernel between the job and the host's.
        options["runtime"] = runtime
    return options


def model_volume_labels(timeout_s: int) -> dict[str, str]:
    """A model volume's labels: whose it is and when it is surely an orphan (its fit and
    its predict have both timed out, with room for a retry)."""
    deadline = time.time() + 4 * (timeout_s + ORPHAN_GRACE_S)
    return {
        LABEL_RUNNER: "1",
        LABEL_MODEL: "1",
        LABEL_DEADLINE: f"{deadline:.0f}",
        LABEL_HOST: socket.gethostname(),
    }


def remove(container: Any) -> bool:
    """Kill and remove a container; False if it was gone already or could not be."""
    try:
        container.remove(force=True)
    except NotFound:
        return False
    except ENGINE_ERRORS as error:
        # Not fatal to the job; cleanup_orphans() removes it later.
        logger.warning("could not remove container %s: %s", container.id, error)
        return False
    return True


def _name_part(job_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", job_id)[:60] or "job"
