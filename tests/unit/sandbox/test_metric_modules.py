"""Organizers' own metrics: a module named in SANDBOX_METRIC_MODULES registers them as it is
imported, so the portal and every worker know them; a module that cannot be imported
stops the sandbox with a message naming it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sandbox.config import Settings
from sandbox.contest.metrics import metric_named, unregister_metric
from sandbox.context import Sandbox
from sandbox.errors import ConfigurationError


def test_a_named_module_registers_its_metric(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "org_brier.py").write_text(
        "from sandbox.contest.metrics import register_metric\n"
        "register_metric('brier_test', lambda y, p: float(((y - p) ** 2).mean()),\n"
        "                higher_is_better=False, tasks=['binary'])\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = Settings.from_env(
        {"SANDBOX_INSTANCE": str(tmp_path / "i"), "SANDBOX_METRIC_MODULES": "org_brier"}
    )
    try:
        Sandbox(settings)
        metric = metric_named("brier_test")
        assert not metric.higher_is_better
        assert metric.score([0, 1, 1], [0.0, 1.0, 0.5]) == pytest.approx(0.25 / 3)
    finally:
        unregister_metric("brier_test")
        sys.modules.pop("org_brier", None)


def test_a_module_that_cannot_be_imported_is_named(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"SANDBOX_INSTANCE": str(tmp_path / "i"), "SANDBOX_METRIC_MODULES": "no_such_metrics"}
    )
    with pytest.raises(ConfigurationError, match="no_such_metrics"):
        Sandbox(settings)
