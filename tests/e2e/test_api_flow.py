"""End to end over HTTP: the analyst's whole flow against a real Celery worker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.live import LivePortal, start_live_portal

MASKED_SQL = (
    "SELECT p.district, p.sex, COUNT(*) AS n, AVG(v.cost) AS avg_cost "
    "FROM visits v JOIN patients p ON v.person_id = p.person_id GROUP BY p.district, p.sex"
)


def test_api_masked_sql_job_released_with_certificate(live_portal: LivePortal) -> None:
    token = live_portal.token("analyst")
    status, body = live_portal.request(
        "POST",
        "/api/v1/jobs",
        {"dataset": "health", "language": "sql", "mode": "masked", "code": MASKED_SQL},
        token,
    )
    assert status == 202, body
    assert body["status"] == "queued"
    job = live_portal.wait_for(body["id"], token)
    assert job["status"] == "released", job
    status, result = live_portal.request("GET", f"/api/v1/jobs/{body['id']}/result", token=token)
    assert status == 200
    (table,) = result["tables"]
    assert table["columns"] == ["district", "sex", "n", "avg_cost"]
    assert all(row[2] >= 10 for row in table["rows"])
    assert result["certificate"]["document"]["job"] == body["id"]
    assert "log" not in job  # the analyst never sees what the job printed


@pytest.fixture(scope="module")
def docker_portal(
    docker_client: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LivePortal]:
    live = start_live_portal(tmp_path_factory.mktemp("docker") / "instance", runner="docker")
    yield live
    live.stop()


JOBS = {
    "sql-masked": {"language": "sql", "mode": "masked", "code": MASKED_SQL},
    "sql-dp": {
        "language": "sql",
        "mode": "dp",
        "epsilon": 1.0,
        "code": "SELECT department, COUNT(*) AS n, AVG(length_of_stay) AS los "
        "FROM visits GROUP BY department",
    },
    "python-masked": {
        "language": "python",
        "mode": "masked",
        "code": "import sandbox_job\nv = sandbox_job.table('visits')\n"
        "sandbox_job.magnitude_table('by_department', v, by=['department'], "
        "value='cost', statistic='mean')\n",
    },
    # Selected and banded in the runner, selected and banded again by the worker.
    "python-selected": {
        "language": "python",
        "mode": "masked",
        "code": "import sandbox_job\n"
        "p = sandbox_job.table('patients', where=[('sex', 'not null')],\n"
        "                      bins={'birth_year': [1900, 1950, 1980, 2030]})\n"
        "sandbox_job.frequency_table('by_band', p, by=['sex', 'birth_year'])\n",
    },
}


@pytest.mark.docker
@pytest.mark.parametrize("kind", list(JOBS))
def test_api_job_released_through_docker_runner(docker_portal: LivePortal, kind: str) -> None:
    token = docker_portal.token("analyst")
    status, body = docker_portal.request(
        "POST", "/api/v1/jobs", {"dataset": "health", **JOBS[kind]}, token
    )
    assert status == 202, body
    job = docker_portal.wait_for(body["id"], token)
    assert job["status"] == "released", job
    assert job["runner"] == "docker"
    status, result = docker_portal.request("GET", f"/api/v1/jobs/{body['id']}/result", token=token)
    assert status == 200
    assert result["tables"][0]["rows"]
    if JOBS[kind]["mode"] == "dp":
        assert result["privacy"]["epsilon"] == 1.0
        departments = [row[0] for row in result["tables"][0]["rows"]]
        assert len(departments) == 10  # every public category, empty or not


def test_api_rejection_is_422_with_rule_and_location(live_portal: LivePortal) -> None:
    token = live_portal.token("analyst")
    status, body = live_portal.request(
        "POST",
        "/api/v1/jobs",
        {
            "dataset": "health",
            "language": "sql",
            "mode": "masked",
            "code": "SELECT id_card, COUNT(*) FROM patients GROUP BY id_card",
        },
        token,
    )
    assert status == 422
    error = body["error"]
    assert error["code"] == "policy_violation"
    assert error["rule"] == "column.forbidden"
    assert error["location"] == "line 1, column 8"
    assert "id_card" in error["message"]


def test_api_bad_input_is_a_clear_json_error(live_portal: LivePortal) -> None:
    token = live_portal.token("analyst")
    cases = [
        ({"dataset": "health", "language": "cobol", "mode": "masked", "code": "x"}, 400),
        ({"dataset": "nope", "language": "sql", "mode": "masked", "code": "SELECT 1"}, 404),
        ({"dataset": "health", "language": "sql", "mode": "dp", "code": "x", "epsilon": "1"}, 400),
        (
            {
                "dataset": "health",
                "language": "sql",
                "mode": "dp",
                "code": "SELECT COUNT(*) FROM visits",
                "epsilon": 50,
            },
            422,
        ),
        ("not an object", 400),
    ]
    for body, expected in cases:
        status, answer = live_portal.request("POST", "/api/v1/jobs", body, token)
        assert status == expected, (body, answer)
        assert set(answer["error"]) >= {"code", "message"}
        assert "Traceback" not in str(answer)
    status, answer = live_portal.request("GET", "/api/v1/jobs", token="not-a-token")
    assert status == 401 and answer["error"]["code"] == "unauthenticated"
    status, answer = live_portal.request("GET", "/api/v1/jobs/does-not-exist", token=token)
    assert status == 404


def test_api_roles_are_enforced(live_portal: LivePortal) -> None:
    auditor = live_portal.token("auditor")
    status, _ = live_portal.request(
        "POST",
        "/api/v1/jobs",
        {"dataset": "health", "language": "sql", "mode": "masked", "code": "SELECT 1"},
        auditor,
    )
    assert status == 403
    status, report = live_portal.request("GET", "/api/v1/audit/verify", token=auditor)
    assert status == 200 and report["ok"]
    analyst2 = live_portal.token("analyst2")
    status, _ = live_portal.request("GET", "/api/v1/audit/verify", token=analyst2)
    assert status == 403


def test_api_mock_rows_have_the_view_schema(live_portal: LivePortal) -> None:
    token = live_portal.token("analyst")
    status, csv = live_portal.request(
        "GET", "/api/v1/datasets/health/mock?table=patients&rows=5", token=token
    )
    assert status == 200
    header, *rows = csv.strip().splitlines()
    assert header.split(",") == ["person_id", "sex", "birth_year", "district"]
    assert len(rows) == 5


def test_api_failed_login_is_audited(live_portal: LivePortal) -> None:
    status, body = live_portal.request(
        "POST", "/api/v1/auth/token", {"username": "analyst", "password": "wrong"}
    )
    assert status == 401 and body["error"]["code"] == "unauthenticated"
    with live_portal.sandbox.tx() as session:
        from sandbox.models import AuditEntry

        failed = session.query(AuditEntry).filter_by(action="auth.failed", subject="analyst")
        assert failed.count() >= 1


def test_api_result_downloads_as_csv(live_portal: LivePortal) -> None:
    token = live_portal.token("analyst")
    status, body = live_portal.request(
        "POST",
        "/api/v1/jobs",
        {
            "dataset": "health",
            "language": "sql",
            "mode": "masked",
            "code": "SELECT sex, COUNT(*) AS n FROM patients GROUP BY sex ORDER BY sex",
        },
        token,
    )
    assert live_portal.wait_for(body["id"], token)["status"] == "released"
    status, csv = live_portal.request(
        "GET", f"/api/v1/jobs/{body['id']}/result?format=csv", token=token
    )
    assert status == 200
    header, *rows = csv.strip().splitlines()
    assert header == "sex,n" and len(rows) == 2
    status, error = live_portal.request(
        "GET", f"/api/v1/jobs/{body['id']}/result?format=csv&table=nope", token=token
    )
    assert status == 400 and error["error"]["field"] == "table"


def test_api_policy_check_is_a_dry_run(live_portal: LivePortal) -> None:
    token = live_portal.token("analyst")
    _, before = live_portal.request("GET", "/api/v1/budget", token=token)
    _, jobs_before = live_portal.request("GET", "/api/v1/jobs", token=token)
    status, report = live_portal.request(
        "POST",
        "/api/v1/policy/check",
        {
            "dataset": "health",
            "language": "sql",
            "mode": "masked",
            "code": "SELECT length_of_stay, COUNT(*) FROM visits GROUP BY length_of_stay",
        },
        token,
    )
    assert status == 200 and report["allowed"] is False
    assert {f["rule"] for f in report["findings"]} == {
        "column.group_not_allowed",
        "column.output_not_allowed",
    }
    assert all("location" in f for f in report["findings"])
    status, report = live_portal.request(
        "POST",
        "/api/v1/policy/check",
        {
            "dataset": "health",
            "language": "sql",
            "mode": "dp",
            "epsilon": 1.0,
            "code": "SELECT sex, COUNT(*) FROM patients GROUP BY sex",
        },
        token,
    )
    assert report["allowed"] is True and report["findings"] == []
    assert report["estimate"]["epsilon"] == 1.0
    assert report["estimate"]["outputs"][1] == {
        "output": "COUNT(*)",
        "kind": "count",
        "error95": pytest.approx(2.995732),
    }  # a count with sensitivity 1 at ε = 1: 95 % of draws within ln(20)
    _, after = live_portal.request("GET", "/api/v1/budget", token=token)
    _, jobs_after = live_portal.request("GET", "/api/v1/jobs", token=token)
    assert after == before and jobs_after == jobs_before  # nothing spent, nothing queued


def test_api_delta_job_and_private_keys(live_portal: LivePortal) -> None:
    token = live_portal.token("analyst2")
    code = "SELECT birth_year, COUNT(*) AS n FROM patients GROUP BY birth_year"
    body = {"dataset": "health", "language": "sql", "mode": "dp", "epsilon": 1.0, "code": code}
    status, report = live_portal.request("POST", "/api/v1/policy/check", body, token)
    assert report["allowed"] is False  # a key with no public list needs δ
    assert report["findings"][0]["rule"] == "dp.private_group_key"
    status, report = live_portal.request(
        "POST", "/api/v1/policy/check", {**body, "delta": 1e-5}, token
    )
    assert report["allowed"] is True and report["estimate"]["mechanism"] == "gaussian"
    status, answer = live_portal.request("POST", "/api/v1/jobs", {**body, "delta": 1e-5}, token)
    assert status == 202, answer
    assert live_portal.wait_for(answer["id"], token)["status"] == "released"
    _, result = live_portal.request("GET", f"/api/v1/jobs/{answer['id']}/result", token=token)
    assert result["privacy"] == {
        "epsilon": 1.0,
        "delta": 1e-5,
        "mechanism": "gaussian",
        "rows_per_person": 1,
    }
    _, budget = live_portal.request("GET", "/api/v1/budget", token=token)
    assert budget["budgets"][0]["delta_spent"] == pytest.approx(1e-5)
