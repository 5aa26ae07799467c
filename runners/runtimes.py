"""Which engine runtime a job's container runs under: gVisor wherever the engine has it.

``runsc`` (gVisor) puts a user-space kernel between the job and the host's, a
second wall behind the container's namespaces, seccomp and dropped
capabilities; ``runc`` is the engine's ordinary runtime. The setting
(``SANDBOX_RUNTIME``) is one of:

- ``auto``: runsc when ``docker info`` lists it, else runc with a loud warning;
- ``runsc``: runsc or nothing: without it the runner is unavailable, never
  silently runc;
- ``runc``: runc even where runsc is registered (a machine where gVisor cannot
  run the jobs).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Literal

from runners.contract import RunnerUnavailable, Runtime

logger = logging.getLogger(__name__)

RuntimeSetting = Literal["auto", "runsc", "runc"]
RUNTIME_SETTINGS: tuple[RuntimeSetting, ...] = ("auto", "runsc", "runc")

FALLBACK_WARNING = (
    "WARNING: gVisor (runsc) is not registered with this Docker engine, so jobs run "
    "under runc, WITHOUT gVisor's second wall around them. Register it (bash "
    ".ci/docker-up) and restart the worker, or set SANDBOX_RUNTIME=runc to say that "
    "runc is meant."
)


def registered_runtimes(client: Any) -> list[str]:
    """The runtimes the engine lists in ``docker info`` (raises the SDK's errors)."""
    return sorted((client.info().get("Runtimes") or {}).keys())


def choose_runtime(setting: str, registered: Iterable[str]) -> Runtime:
    """The runtime for ``setting`` given the engine's runtimes; raises
    :class:`RunnerUnavailable` for ``runsc`` where the engine lacks it."""
    listed = sorted(registered)
    if setting not in RUNTIME_SETTINGS:
        raise ValueError(f"a runtime setting is auto, runsc or runc, not {setting!r}")
    if setting == "runc":
        return "runc"
    if "runsc" in listed:
        return "runsc"
    if setting == "runsc":
        raise RunnerUnavailable(
            "SANDBOX_RUNTIME=runsc, but the Docker engine has no runsc runtime registered "
            f"(it lists: {', '.join(listed) or 'none'}); register gVisor with "
            "`bash .ci/docker-up`, or set SANDBOX_RUNTIME=auto or runc."
        )
    logger.warning(FALLBACK_WARNING)
    return "runc"
