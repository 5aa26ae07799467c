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
    assert set(credentials) == {"owner", "analyst", "analyst2", "auditor", "organizer", "admin"}
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


def test_cli_owner_imports_a_csv_confirms_the_draft_and_publishes(
    instance: Path, tmp_path: Path
) -> None:
    import yaml

    assert CliRunner().invoke(main, ["demo", "--patients", "300", "--no-serve"]).exit_code == 0
    source = tmp_path / "门诊.csv"
    rows = ["病人编号;科室;费用;手机"]
    rows += [f"P{i:04d};{'内科' if i % 2 else '外科'};{100 + i};1381234{i:04d}" for i in range(120)]
    source.write_bytes(("\n".join(rows) + "\n").encode("gb18030"))
    draft = tmp_path / "clinic.yaml"
    staged = CliRunner().invoke(
        main,
        [
            "datasets",
            "import",
            str(source),
            "--dataset",
            "clinic",
            "--as",
            "owner",
            "--draft",
            str(draft),
        ],
    )
    assert staged.exit_code == 0, staged.output
    assert "staged" in staged.output and "direct_identifier" in staged.output
    assert draft.stat().st_mode & 0o077 == 0  # data-derived values: the owner's alone
    import_id = staged.output.split("import ")[-1].split(":")[0]
    definition = yaml.safe_load(draft.read_text(encoding="utf-8"))
    (table,) = definition["tables"].values()
    for spec in table["columns"].values():
        if spec["source"] == "病人编号":
            spec["class"] = "person_key"
            person = spec
    definition["privacy_unit"] = next(n for n, s in table["columns"].items() if s is person)
    draft.write_text(yaml.safe_dump(definition, allow_unicode=True), encoding="utf-8")
    published = CliRunner().invoke(
        main, ["datasets", "confirm", import_id, str(draft), "--as", "owner", "--publish"]
    )
    assert published.exit_code == 0, published.output
    assert "clinic: version 1 published" in published.output
    versions = CliRunner().invoke(main, ["datasets", "versions", "clinic", "--as", "owner"])
    assert "v1" in versions.output
    exported = CliRunner().invoke(main, ["datasets", "export", "clinic", "--as", "owner"])
    assert yaml.safe_load(exported.output)["dataset"] == "clinic"
    # Another owner is refused in one line, no stack trace.
    refused = CliRunner().invoke(main, ["datasets", "export", "clinic", "--as", "analyst"])
    assert refused.exit_code != 0 and "Traceback" not in refused.output
