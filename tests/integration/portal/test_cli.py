"""The command-line tool as an operator uses it, on a fresh instance folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from portal.cli import main
from sandbox import context


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "instance"
    monkeypatch.setenv("SANDBOX_INSTANCE", str(folder))
    monkeypatch.setenv("SANDBOX_RUNNER", "local")
    monkeypatch.delenv("SANDBOX_DATABASE_URL", raising=False)
    monkeypatch.delenv("SANDBOX_BROKER_URL", raising=False)
    context.set_current(None)
    yield folder
    context.set_current(None)


def test_cli_demo_sets_up_everything_and_prints_credentials(instance: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--patients", "300", "--no-serve"])
    assert result.exit_code == 0, result.output
    credentials = json.loads((instance / "demo-credentials.json").read_text())
    assert set(credentials) == {"owner", "analyst", "analyst2", "auditor", "admin"}
    for name, password in credentials.items():
        assert f"{name}" in result.output and password in result.output
    assert "curl" in result.output and "/api/v1/jobs" in result.output
    assert "DEVELOPMENT PROCESS RUNNER" in result.output  # SANDBOX_RUNNER=local says so loudly
    assert (instance / "datasets" / "health").is_dir()
    marginals = json.loads((instance / "mock" / "health.json").read_text())
    assert marginals["epsilon"] == 2.0 and set(marginals["tables"]) == {
        "patients",
        "visits",
        "labs",
    }
    assert (instance / "demo-credentials.json").stat().st_mode & 0o077 == 0
    # A second run keeps the users, the data and their passwords.
    again = CliRunner().invoke(main, ["demo", "--no-serve"])
    assert again.exit_code == 0, again.output
    assert json.loads((instance / "demo-credentials.json").read_text()) == credentials


def test_cli_token_and_audit_verify(instance: Path) -> None:
    assert CliRunner().invoke(main, ["demo", "--patients", "200", "--no-serve"]).exit_code == 0
    token = CliRunner().invoke(main, ["users", "token", "analyst"])
    assert token.exit_code == 0 and len(token.output.strip()) >= 40
    missing = CliRunner().invoke(main, ["users", "token", "nobody"])
    assert missing.exit_code != 0 and "There is no user nobody" in missing.output
    verify = CliRunner().invoke(main, ["audit", "verify"])
    assert verify.exit_code == 0, verify.output
    assert json.loads(verify.output)["ok"] is True


def test_cli_policy_check_prints_every_finding(instance: Path, tmp_path: Path) -> None:
    assert CliRunner().invoke(main, ["demo", "--patients", "200", "--no-serve"]).exit_code == 0
    query = tmp_path / "q.sql"
    query.write_text("SELECT birth_date, name, MAX(cost)\nFROM patients p JOIN visits v ON 1 = 1")
    result = CliRunner().invoke(main, ["policy", "check", str(query), "--analyst", "analyst"])
    assert result.exit_code == 1
    assert "column.generalised at line 1, column 8" in result.output
    assert (
        "suggestion: use birth_year (or a 5-year band of it) instead of birth_date" in result.output
    )
    assert "column.forbidden at line 1, column 20" in result.output
    assert "masked.min_max" in result.output
    good = tmp_path / "good.sql"
    good.write_text("SELECT sex, COUNT(*) FROM patients GROUP BY sex")
    ok = CliRunner().invoke(main, ["policy", "check", str(good), "--analyst", "analyst"])
    assert ok.exit_code == 0 and ok.output.startswith("allowed (policy ")
