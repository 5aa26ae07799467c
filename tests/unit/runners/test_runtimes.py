"""Choosing the engine runtime: gVisor wherever it is registered, never silently runc."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from runners.containers import RUNSC_PIDS_OVERHEAD, container_options
from runners.contract import JobSpec, RunnerUnavailable
from runners.docker_runner import DockerRunner
from runners.local import LocalProcessRunner
from runners.runtimes import FALLBACK_WARNING, choose_runtime
from sandbox.config import Settings
from sandbox.errors import ConfigurationError


def test_choose_runtime_auto_takes_runsc_where_registered() -> None:
    assert choose_runtime("auto", ["runc", "runsc"]) == "runsc"


def test_choose_runtime_auto_without_runsc_is_runc_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="runners.runtimes"):
        assert choose_runtime("auto", ["io.containerd.runc.v2", "runc"]) == "runc"

    assert [r.getMessage() for r in caplog.records] == [FALLBACK_WARNING]


def test_choose_runtime_runsc_not_registered_is_unavailable() -> None:
    with pytest.raises(RunnerUnavailable) as unavailable:
        choose_runtime("runsc", ["runc"])

    message = str(unavailable.value)
    assert "SANDBOX_RUNTIME=runsc" in message
    assert "it lists: runc" in message
    assert ".ci/docker-up" in message


def test_choose_runtime_runc_even_where_runsc_is_registered() -> None:
    assert choose_runtime("runc", ["runc", "runsc"]) == "runc"


def test_docker_runner_refuses_an_unknown_runtime() -> None:
    with pytest.raises(ValueError, match="auto, runsc or runc"):
        DockerRunner(runtime="kata")


def test_local_runner_records_no_runtime() -> None:
    isolation = LocalProcessRunner().isolation()

    assert (isolation.runtime, isolation.image_digest) == (None, None)
    assert "development runner" in isolation.describe()


def test_settings_runtime_defaults_to_auto_and_checks_its_value() -> None:
    assert Settings.from_env({}).runtime == "auto"
    assert Settings.from_env({"SANDBOX_RUNTIME": "runsc"}).runtime == "runsc"
    with pytest.raises(ConfigurationError, match="SANDBOX_RUNTIME must be auto, runsc or runc"):
        Settings.from_env({"SANDBOX_RUNTIME": "gvisor"})
    with pytest.raises(ConfigurationError, match="SANDBOX_DOCKER_RUNTIME is no longer read"):
        Settings.from_env({"SANDBOX_DOCKER_RUNTIME": "runsc"})


def test_container_options_leave_gvisor_room_for_its_own_threads(tmp_path: Path) -> None:
    spec = JobSpec(job_id="j", language="sql", code="SELECT 1", input_dir=tmp_path, pids=32)

    runc = container_options(spec, runtime="runc")
    runsc = container_options(spec, runtime="runsc")

    assert (runc["runtime"], runc["pids_limit"]) == ("runc", 32)
    assert (runsc["runtime"], runsc["pids_limit"]) == ("runsc", 32 + RUNSC_PIDS_OVERHEAD)
    assert runsc["tmpfs"]["/dev/mqueue"].startswith("ro,")


def test_runner_status_says_the_development_runner_has_no_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from sandbox import context
    from sandbox.cli import main

    monkeypatch.setenv("SANDBOX_INSTANCE", str(tmp_path / "instance"))
    monkeypatch.setenv("SANDBOX_RUNNER", "local")
    monkeypatch.setattr(context, "_current", None)

    result = CliRunner().invoke(main, ["runner", "status"])

    lines = result.output.splitlines()
    assert "configured: SANDBOX_RUNNER=local SANDBOX_RUNTIME=auto" in lines
    assert "runner: local" in lines
    assert any(line.startswith("runtime: None (the development runner") for line in lines)
