"""The Python client and `sandbox jobs` against the whole product: a portal and a real worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.client import Client, ClientError, Job
from tests.live import ROOT, LivePortal

DP_SQL = (
    "SELECT department, COUNT(*) AS n, AVG(length_of_stay) AS los FROM visits GROUP BY department"
)
DEPARTMENTS = 10  # every public category of visits.department, empty or not


def _client(live: LivePortal) -> Client:
    return Client.login(live.base_url, "analyst", live.credentials["analyst"])


def test_client_dp_job_submitted_waited_and_read_as_dataframe(
    live_portal: LivePortal, tmp_path: Path
) -> None:
    client = _client(live_portal)
    spent_before = sum(b["epsilon_spent"] for b in client.budget() if b["dataset"] == "health")
    code = tmp_path / "by_department.sql"
    code.write_text(DP_SQL, encoding="utf-8")
    job = client.submit(code, dataset="health", mode="dp", epsilon=0.5)
    assert job.status == "queued"
    seen: list[Job] = []
    done = client.wait(job.id, timeout=120, progress=seen.append)
    assert done.status == "released", done
    assert seen[-1].status == "released" and len({j.status for j in seen}) == len(seen)
    tables = client.result(job.id)
    frame = tables["result"]
    assert frame.shape == (DEPARTMENTS, 3 + 3 + 3)
    assert list(frame.columns[:3]) == ["department", "n", "los"]
    assert {"n_error95", "n_low", "n_high", "los_error95"} <= set(frame.columns)
    assert (frame["n_high"] - frame["n_low"] - 2 * frame["n_error95"]).abs().max() < 1e-6
    assert frame.attrs["privacy"]["epsilon"] == 0.5
    assert client.result_document(job.id)["certificate"]["document"]["job"] == job.id
    spent_after = sum(b["epsilon_spent"] for b in client.budget() if b["dataset"] == "health")
    assert spent_after == pytest.approx(spent_before + 0.5)


def test_client_errors_are_typed(live_portal: LivePortal) -> None:
    client = _client(live_portal)
    with pytest.raises(ClientError) as rejected:
        client.submit(
            "SELECT id_card, COUNT(*) FROM patients GROUP BY id_card",
            dataset="health",
            mode="masked",
            language="sql",
        )
    assert (rejected.value.status, rejected.value.code) == (422, "policy_violation")
    assert rejected.value.findings and rejected.value.findings[0]["rule"] == "column.forbidden"
    failing = client.submit(
        "import sandbox_job\nraise ValueError('no')\n",
        dataset="health",
        mode="masked",
        language="python",
    )
    assert client.wait(failing.id, timeout=120, progress=False).status == "failed"
    with pytest.raises(ClientError) as early:
        client.result(failing.id)
    assert (early.value.status, early.value.code) == (409, "conflict")
    with pytest.raises(ClientError) as missing:
        client.status("no-such-job")
    assert missing.value.status == 404
    with pytest.raises(ClientError) as bad_login:
        Client.login(live_portal.base_url, "analyst2", "wrong")  # not analyst: no lockout
    assert bad_login.value.status == 401
    with pytest.raises(ClientError) as unreachable:
        Client("http://127.0.0.1:9", "token").budget()
    assert (unreachable.value.status, unreachable.value.code) == (0, "unreachable")


def test_client_mock_rows_are_a_dataframe_with_the_view_schema(live_portal: LivePortal) -> None:
    frame = _client(live_portal).mock("health", "visits", rows=5)
    assert frame.shape[0] == 5
    assert {"visit_id", "department", "cost"} <= set(frame.columns)
    assert "diagnosis" not in frame.columns or frame["diagnosis"].notna().all()


def _sandbox(
    live: LivePortal, *args: str, token: str | None = None, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SANDBOX_URL=live.base_url, PYTHONPATH=str(ROOT))
    for name in ("SANDBOX_TOKEN", "SANDBOX_PASSWORD"):
        env.pop(name, None)
    env.update(extra or {})
    if token is not None:
        env["SANDBOX_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "portal.cli", "jobs", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_cli_jobs_submit_wait_prints_the_released_table(
    live_portal: LivePortal, tmp_path: Path
) -> None:
    token = live_portal.token("analyst")
    code = tmp_path / "by_department.sql"
    code.write_text(DP_SQL, encoding="utf-8")
    ran = _sandbox(
        live_portal,
        "submit",
        str(code),
        "--dataset",
        "health",
        "--mode",
        "dp",
        "--epsilon",
        "0.5",
        "--wait",
        token=token,
    )
    assert ran.returncode == 0, ran.stderr
    print(ran.stdout)
    lines = ran.stdout.splitlines()
    assert lines[0].startswith("== result (10 rows)") and "ε spent 0.5" in lines[0]
    header = lines[1].split()
    assert header == ["department", "n", "los", "n_error95", "los_error95"]
    assert len(lines) == 2 + DEPARTMENTS
    # Aligned: every row as wide as the header, counting a Chinese character as two columns.
    widths = {_display_width(line) for line in lines[1:]}
    assert len(widths) == 1, lines
    assert "released" in ran.stderr  # the progress, on stderr
    job_id = ran.stderr.split()[1].rstrip(":")

    status = _sandbox(live_portal, "status", job_id, token=token)
    assert status.returncode == 0 and f"job {job_id}: released" in status.stdout
    as_csv = _sandbox(live_portal, "result", job_id, "--csv", token=token)
    assert as_csv.returncode == 0
    assert (
        as_csv.stdout.splitlines()[0]
        == "department,n,los,n_error95,n_low,n_high,los_error95,los_low,los_high"
    )
    assert len(as_csv.stdout.splitlines()) == 1 + DEPARTMENTS
    mock = _sandbox(live_portal, "mock", "health", "patients", "--rows", "3", token=token)
    assert mock.returncode == 0 and len(mock.stdout.splitlines()) == 4
    assert "id_card" not in mock.stdout  # never in a view, so never in its mock rows
    budget = _sandbox(live_portal, "budget", token=token)
    assert budget.returncode == 0 and "health" in budget.stdout


def test_cli_jobs_login_prints_a_token_that_works(live_portal: LivePortal) -> None:
    env = dict(SANDBOX_PASSWORD=live_portal.credentials["analyst"])
    ran = _sandbox(live_portal, "login", "--username", "analyst", extra=env)
    assert ran.returncode == 0, ran.stderr
    (line,) = ran.stdout.splitlines()
    assert line.startswith("export SANDBOX_TOKEN=")
    budget = _sandbox(live_portal, "budget", token=line.partition("=")[2])
    assert budget.returncode == 0 and "health" in budget.stdout
    wrong = _sandbox(
        live_portal, "login", "--username", "analyst2", extra={"SANDBOX_PASSWORD": "wrong"}
    )
    assert wrong.returncode == 1 and "HTTP 401" in wrong.stderr and not wrong.stdout


def test_cli_jobs_errors_are_one_line_and_non_zero(live_portal: LivePortal, tmp_path: Path) -> None:
    token = live_portal.token("analyst")
    bad = tmp_path / "bad.sql"
    bad.write_text("SELECT id_card, COUNT(*) FROM patients GROUP BY id_card", encoding="utf-8")
    rejected = _sandbox(live_portal, "submit", str(bad), "--dataset", "health", token=token)
    assert rejected.returncode == 1
    assert "column.forbidden" in rejected.stderr and "policy_violation" in rejected.stderr
    assert "Traceback" not in rejected.stderr
    no_token = _sandbox(live_portal, "budget")
    assert no_token.returncode == 2 and "SANDBOX_TOKEN" in no_token.stderr
    wrong_token = _sandbox(live_portal, "status", "x", token="not-a-token")
    assert wrong_token.returncode == 1 and "unauthenticated" in wrong_token.stderr
    missing = _sandbox(live_portal, "result", "no-such-job", token=token)
    assert missing.returncode == 1 and "not_found" in missing.stderr
    failing = tmp_path / "fails.py"
    failing.write_text("import sandbox_job\nraise ValueError('no')\n", encoding="utf-8")
    failed = _sandbox(
        live_portal, "submit", str(failing), "--dataset", "health", "--wait", token=token
    )
    assert failed.returncode == 1 and "was failed" in failed.stderr
    assert "Traceback" not in failed.stderr


def _display_width(line: str) -> int:
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line.rstrip())
