"""The API client's parsing: result tables with their dp errors, API errors, code files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sandbox.client import ClientError, Job, error_from_response, read_code, tables_from_result

DP_RESULT = {
    "tables": [
        {
            "name": "result",
            "columns": ["department", "n", "median_cost"],
            "rows": [["内科", 120.4, 300.0], ["外科", 80.0, None]],
            "error95": [[None, 7.5, 12.0], [None, 7.5, 12.0]],
            "error95_units": [None, "value", "rank"],
        }
    ],
    "privacy": {"epsilon": 0.5, "delta": 0.0, "mechanism": "laplace"},
    "certificate": {"key_id": "k1"},
}


def test_client_result_tables_keep_dp_errors_as_columns() -> None:
    frames = tables_from_result(DP_RESULT, job_id="j1")
    frame = frames["result"]
    assert list(frame.columns) == [
        "department",
        "n",
        "median_cost",
        "n_error95",
        "n_low",
        "n_high",
        "median_cost_rank_error95",
    ]
    assert frame.shape == (2, 7)
    assert frame.loc[0, "n_low"] == pytest.approx(112.9)
    assert frame.loc[0, "n_high"] == pytest.approx(127.9)
    assert frame.loc[0, "median_cost_rank_error95"] == 12.0  # rows of rank: no interval
    assert frame.attrs["privacy"]["epsilon"] == 0.5
    assert frame.attrs["job"] == "j1"


def test_client_result_tables_masked_keep_suppressed_cells_missing() -> None:
    document = {
        "tables": [
            {"name": "a", "columns": ["district", "n"], "rows": [["东城区", 12], ["西城区", None]]},
            {"name": "b", "columns": ["sex", "mean"], "rows": []},
        ],
        "privacy": {"epsilon": 0.0},
    }
    frames = tables_from_result(document)
    assert list(frames) == ["a", "b"]
    assert list(frames["a"].columns) == ["district", "n"]  # no error columns without dp
    assert math.isnan(frames["a"].loc[1, "n"])
    assert frames["b"].shape == (0, 2)


def test_client_result_without_tables_is_an_error() -> None:
    with pytest.raises(ClientError) as raised:
        tables_from_result({"status": "released"})
    assert raised.value.code == "bad_answer"


def test_client_api_error_carries_status_code_message_and_findings() -> None:
    body = {
        "error": {
            "code": "policy_violation",
            "message": "The column name is on the negative list.",
            "rule": "column.forbidden",
            "location": "line 1, column 8",
            "findings": [{"rule": "column.forbidden", "message": "…", "location": "line 1"}],
        }
    }
    error = error_from_response(422, json.dumps(body).encode(), None)
    assert (error.status, error.code) == (422, "policy_violation")
    assert error.message == "The column name is on the negative list."
    assert error.details["rule"] == "column.forbidden"
    assert error.findings[0]["location"] == "line 1"
    assert error.retry_after is None
    assert "policy_violation" in str(error) and "422" in str(error)


def test_client_rate_limit_carries_retry_after() -> None:
    body = json.dumps({"error": {"code": "rate_limited", "message": "Wait.", "retry_after": 7}})
    assert error_from_response(429, body.encode(), "12").retry_after == 12.0  # the header wins
    assert error_from_response(429, body.encode(), None).retry_after == 7.0
    assert error_from_response(429, body.encode(), "soon").retry_after is None


def test_client_error_that_is_not_json_still_says_the_status() -> None:
    error = error_from_response(502, b"<html>Bad gateway</html>", None)
    assert (error.status, error.code) == (502, "http_502")
    assert "<html>" not in str(error)


def test_client_code_file_gives_its_language(tmp_path: Path) -> None:
    sql = tmp_path / "count.sql"
    sql.write_text("SELECT COUNT(*) AS n FROM visits", encoding="utf-8")
    script = tmp_path / "job.PY"
    script.write_text("import sandbox_job\n", encoding="utf-8")
    assert read_code(sql, None) == ("SELECT COUNT(*) AS n FROM visits", "sql")
    assert read_code(str(sql), None) == ("SELECT COUNT(*) AS n FROM visits", "sql")
    assert read_code(script, None) == ("import sandbox_job\n", "python")
    assert read_code(sql, "python")[1] == "python"  # said outright, it wins


def test_client_code_string_needs_a_language(tmp_path: Path) -> None:
    assert read_code("SELECT 1", "sql") == ("SELECT 1", "sql")
    # A file's name is never sent as code: a missing one is an error.
    with pytest.raises(ClientError) as missing:
        read_code(str(tmp_path / "missing.sql"), "sql")
    assert missing.value.code == "bad_file"
    assert read_code("SELECT 1 FROM t.sql", "sql")[0] == "SELECT 1 FROM t.sql"  # code, not a name
    with pytest.raises(ClientError) as raised:
        read_code("SELECT 1", None)
    assert raised.value.code == "language_unknown"
    with pytest.raises(ClientError) as unreadable:
        read_code(tmp_path, "sql")  # a folder
    assert unreadable.value.code == "bad_file"


def test_client_job_from_json_and_settled_states() -> None:
    job = Job.from_json(
        {"id": "j", "status": "rejected", "findings": [{"rule": "r"}], "error": {"code": "c"}}
    )
    assert job.settled and job.findings == [{"rule": "r"}] and job.error == {"code": "c"}
    assert Job.from_json({"id": "j", "status": "pending_review"}).settled
    assert not Job.from_json({"id": "j", "status": "running"}).settled
    with pytest.raises(ClientError):
        Job.from_json({"status": "queued"})
