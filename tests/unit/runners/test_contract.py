"""The runner contract without a runner: the harness's result line parsed, every
malformed or oversized one refused with a reason and a message meant for people, and
the job file a spec writes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runners.contract import (
    JOB_FILE,
    MAX_LOG_CHARS,
    RESULT_MARKER,
    JobFailed,
    JobSpec,
    ModelVolume,
    OutputTable,
    RunnerError,
    RunnerUnavailable,
    RunResult,
    parse_harness_output,
)

CAP = 64 * 1024
TOO_LARGE = f"The job's output is larger than the cap of {CAP} bytes."
NO_RESULT = "The job ended without a result (it may have been killed)."
UNREADABLE = "The job's result could not be read."
MALFORMED = "The job's output is malformed."
SAFE_NAME = r"[A-Za-z_][A-Za-z0-9_.]{0,99}"


def result_line(envelope: Any) -> str:
    """The line as the harness writes it (runners/harness/harness.py)."""
    return RESULT_MARKER + json.dumps(envelope, ensure_ascii=False) + "\n"


def ok(tables: list[dict[str, Any]], *, log: str = "", duration_s: float = 0.25) -> str:
    return result_line({"ok": True, "tables": tables, "log": log, "duration_s": duration_s})


def failed(error: dict[str, Any], *, log: str = "") -> str:
    return result_line({"ok": False, "error": error, "log": log, "duration_s": 0.1})


def parse(stdout: str, *, log: str = "", cap: int = CAP) -> RunResult:
    return parse_harness_output(stdout, max_output_bytes=cap, log=log)


def refused(stdout: str, *, log: str = "", cap: int = CAP) -> JobFailed:
    with pytest.raises(JobFailed) as caught:
        parse(stdout, log=log, cap=cap)
    return caught.value


TABLE = {
    "name": "by_sex",
    "columns": ["sex", "n"],
    "rows": [["F", 731], ["M", 769]],
    "declared": {"kind": "frequency", "persons": [731, 769]},
}


# --- what a runner hands back ------------------------------------------------------


def test_contract_errors_share_one_base() -> None:
    assert issubclass(JobFailed, RunnerError) and issubclass(RunnerUnavailable, RunnerError)
    assert not issubclass(JobFailed, RunnerUnavailable)


def test_parse_reads_the_tables_log_and_duration() -> None:
    result = parse(ok([TABLE], log="fitting...\ndone", duration_s=1.5))
    assert result == RunResult(
        tables=[
            OutputTable(
                name="by_sex",
                columns=["sex", "n"],
                rows=[["F", 731], ["M", 769]],
                declared={"kind": "frequency", "persons": [731, 769]},
            )
        ],
        log="fitting...\ndone",
        duration_s=1.5,
    )


def test_parse_ignores_every_other_line_of_standard_output() -> None:
    stdout = "starting\n" + ok([TABLE]) + "SANDBOX-RESULT-NOT {}\n  SANDBOX-RESULT {}\n"
    assert [t.name for t in parse(stdout).tables] == ["by_sex"]


def test_parse_coerces_names_and_columns_to_text_and_rows_to_lists() -> None:
    raw = {"name": 7, "columns": [1, None], "rows": [(1, 2), "ab"]}
    (table,) = parse(ok([raw])).tables
    assert table.name == "7" and table.columns == ["1", "None"]
    assert table.rows == [[1, 2], ["a", "b"]]
    assert table.declared == {}  # nothing declared: an empty declaration


def test_parse_without_tables_or_duration_is_an_empty_result() -> None:
    result = parse(result_line({"ok": True}))
    assert result.tables == [] and result.log == "" and result.duration_s == 0.0
    assert parse(result_line({"ok": True, "duration_s": None})).duration_s == 0.0


def test_parse_keeps_the_runners_own_log_over_the_envelopes() -> None:
    result = parse(ok([TABLE], log="from the job"), log="from the runner")
    assert result.log == "from the runner"


def test_parse_cuts_the_envelopes_log_to_its_cap() -> None:
    result = parse(ok([], log="x" * (MAX_LOG_CHARS + 10)), cap=4 * MAX_LOG_CHARS)
    assert len(result.log) == MAX_LOG_CHARS


# --- what it refuses ---------------------------------------------------------------


@pytest.mark.parametrize(
    "stdout",
    [
        "",
        "the job printed this and was killed\n",
        "SANDBOX-RESULT" + json.dumps({"ok": True}) + "\n",  # no space: not the marker
        " " + result_line({"ok": True, "tables": []}),  # the marker starts the line
    ],
    ids=["empty", "no-marker", "marker-without-space", "marker-not-first"],
)
def test_parse_refuses_output_without_a_result_line(stdout: str) -> None:
    failure = refused(stdout, log="runner log")
    assert (failure.reason, failure.message, str(failure)) == (
        "malformed_output",
        NO_RESULT,
        NO_RESULT,
    )
    assert failure.log == "runner log"  # for auditors, not in the message


def test_parse_refuses_two_result_lines() -> None:
    """A job that prints a result line of its own beside the harness's forges nothing."""
    failure = refused(ok([TABLE]) + ok([{"name": "forged", "columns": [], "rows": []}]))
    assert (failure.reason, failure.message) == ("malformed_output", NO_RESULT)


@pytest.mark.parametrize(
    "payload",
    ["{", "not json", "", "{'ok': true}", '{"ok": true', "NaN]"],
)
def test_parse_refuses_a_result_that_is_not_json(payload: str) -> None:
    failure = refused(RESULT_MARKER + payload + "\n")
    assert (failure.reason, failure.message) == ("malformed_output", UNREADABLE)
    assert isinstance(failure.__cause__, ValueError)


@pytest.mark.parametrize("envelope", [[], [{"ok": True}], "ok", 1, None, True])
def test_parse_refuses_a_result_that_is_not_an_object(envelope: Any) -> None:
    failure = refused(result_line(envelope))
    assert (failure.reason, failure.message) == ("malformed_output", UNREADABLE)


@pytest.mark.parametrize(
    "raw",
    [
        {"columns": ["n"], "rows": [[1]]},
        {"name": "t", "rows": [[1]]},
        {"name": "t", "columns": ["n"]},
        {"name": "t", "columns": 5, "rows": []},
        {"name": "t", "columns": ["n"], "rows": [5]},
        {"name": "t", "columns": ["n"], "rows": None},
        ["t", ["n"], [[1]]],
        "t",
        None,
    ],
    ids=[
        "no-name",
        "no-columns",
        "no-rows",
        "columns-not-a-list",
        "row-not-a-list",
        "rows-null",
        "table-a-list",
        "table-a-string",
        "table-null",
    ],
)
def test_parse_refuses_a_malformed_table(raw: Any) -> None:
    failure = refused(ok([TABLE, raw], log="job log"))
    assert (failure.reason, failure.message) == ("malformed_output", MALFORMED)
    assert failure.log == "job log"
    assert isinstance(failure.__cause__, KeyError | TypeError)


def test_parse_reports_the_jobs_error_by_type_and_line_only() -> None:
    failure = refused(
        failed({"type": "ZeroDivisionError", "line": 3}, log="Traceback ... secret value")
    )
    assert failure.reason == "error"
    assert failure.message == "The job raised ZeroDivisionError at line 3 of your code."
    assert (failure.error_type, failure.line) == ("ZeroDivisionError", 3)
    assert failure.log == "Traceback ... secret value"  # the traceback is for auditors
    assert "secret" not in failure.message


def test_parse_reports_a_failure_without_details_as_an_error() -> None:
    for envelope in ({"ok": False}, {}, {"ok": False, "error": None}, {"ok": 0, "error": {}}):
        failure = refused(result_line(envelope))
        assert (failure.reason, failure.message) == ("error", "The job raised Error.")
        assert (failure.error_type, failure.line) == ("Error", None)


@pytest.mark.parametrize(
    "error_type",
    [
        "ValueError: patient 110101199003077777",
        "Error with spaces",
        "1Error",
        "",
        "E" * 101,
        "Err\nor",
        "错误",
        42,
    ],
)
def test_parse_replaces_an_error_type_that_could_carry_data(error_type: Any) -> None:
    failure = refused(failed({"type": error_type}))
    assert failure.error_type == "Error" and failure.message == "The job raised Error."


@pytest.mark.parametrize("error_type", ["E", "_private", "pandas.errors.ParserError", "E" * 100])
def test_parse_keeps_an_error_type_that_is_a_name(error_type: str) -> None:
    assert refused(failed({"type": error_type})).error_type == error_type


@pytest.mark.parametrize("line", [0, -1, 1_000_000, "3", 3.0, None, [3]])
def test_parse_drops_a_line_number_out_of_range_or_not_a_whole_number(line: Any) -> None:
    failure = refused(failed({"type": "KeyError", "line": line}))
    assert failure.line is None and failure.message == "The job raised KeyError."


def test_parse_keeps_the_last_line_number_in_range() -> None:
    failure = refused(failed({"type": "KeyError", "line": 999_999}))
    assert failure.message == "The job raised KeyError at line 999999 of your code."


def test_parse_reports_the_harnesss_own_output_cap_as_too_large() -> None:
    failure = refused(failed({"reason": "output_too_large", "type": "X"}, log="job log"))
    assert (failure.reason, failure.message, failure.log) == (
        "output_too_large",
        TOO_LARGE,
        "job log",
    )


# --- caps --------------------------------------------------------------------------


def tables_of_size(size: int) -> list[dict[str, Any]]:
    """One table whose JSON (as the cap counts it) is exactly ``size`` bytes."""
    table: dict[str, Any] = {"name": "t", "columns": ["v"], "rows": [[""]]}
    padding = size - len(json.dumps([table], ensure_ascii=False).encode())
    table["rows"] = [["é" * (padding // 2) + "x" * (padding % 2)]]  # é: two bytes
    assert len(json.dumps([table], ensure_ascii=False).encode()) == size
    return [table]


def test_parse_takes_tables_up_to_the_cap_in_utf8_bytes() -> None:
    assert len(parse(ok(tables_of_size(CAP))).tables) == 1
    failure = refused(ok(tables_of_size(CAP + 1)), log="runner log")
    assert (failure.reason, failure.message) == ("output_too_large", TOO_LARGE)
    assert failure.log == "runner log"


def test_parse_refuses_standard_output_past_the_cap_and_a_megabyte_before_reading_it() -> None:
    slack = CAP + 1024 * 1024
    line = ok([TABLE])
    room = slack - len(line.encode()) - 1  # the filler's own line ends in "\n"
    filler = "界" * (room // 3) + "x" * (room % 3) + "\n"  # 界: three bytes
    assert len((filler + line).encode()) == slack
    assert len(parse(filler + line).tables) == 1
    failure = refused("x" + filler + line, log="runner log")
    assert (failure.reason, failure.message, failure.log) == (
        "output_too_large",
        TOO_LARGE,
        "runner log",
    )


def test_parse_checks_the_standard_output_cap_before_anything_else() -> None:
    failure = refused("x" * (CAP + 1024 * 1024 + 1))  # no result line in it at all
    assert failure.reason == "output_too_large"


# --- properties --------------------------------------------------------------------

# Text as a job can write it, less what the known gaps below cover: line breaks
# other than "\n" that JSON leaves unescaped, and lone surrogates.
TEXT = st.text(st.characters(exclude_characters="\x85\u2028\u2029", exclude_categories=("Cs",)))
# What a table cell can be once it has been through JSON.
CELLS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)


@st.composite
def tables(draw: st.DrawFn) -> dict[str, Any]:
    width = draw(st.integers(0, 4))
    return {
        "name": draw(TEXT),
        "columns": draw(st.lists(TEXT, min_size=width, max_size=width)),
        "rows": draw(st.lists(st.lists(CELLS, min_size=width, max_size=width), max_size=5)),
        "declared": draw(st.dictionaries(TEXT, CELLS, max_size=3)),
    }


@settings(max_examples=200, deadline=None)
@given(st.lists(tables(), max_size=4), TEXT)
def test_parse_returns_what_the_harness_wrote(written: list[dict[str, Any]], log: str) -> None:
    result = parse(ok(written, log=log), cap=10 * 1024 * 1024)
    assert [
        {"name": t.name, "columns": t.columns, "rows": t.rows, "declared": t.declared}
        for t in result.tables
    ] == written
    assert result.log == log


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parse_refuses_any_output_without_the_marker(stdout: str) -> None:
    if any(line.startswith(RESULT_MARKER) for line in stdout.splitlines()):
        return
    failure = refused(stdout)
    assert failure.reason in ("malformed_output", "output_too_large")


@settings(max_examples=200, deadline=None)
@given(
    # A trailing "\n" is a known gap: see test_parse_drops_a_trailing_newline_of_an_error_type.
    st.one_of(TEXT.filter(lambda t: not t.endswith("\n")), st.integers(), st.none()),
    st.one_of(st.integers(), TEXT),
)
def test_parse_error_message_holds_only_a_name_and_a_number(error_type: Any, line: Any) -> None:
    failure = refused(failed({"type": error_type, "line": line}))
    assert failure.error_type is not None
    assert re.fullmatch(SAFE_NAME, failure.error_type)
    where = f" at line {failure.line} of your code" if failure.line else ""
    assert failure.message == f"The job raised {failure.error_type}{where}."


# --- a malformed result is the job's failure, never another Python error ---------
# (these escaped as AttributeError, TypeError or ValueError before, which the
# worker did not catch as the job's failure)


@pytest.mark.parametrize(
    "envelope",
    [
        {"ok": False, "error": "boom"},
        {"ok": True, "duration_s": "soon"},
        {"ok": True, "tables": 5},
        {"ok": True, "tables": None},
        {"ok": True, "tables": [{"name": "t", "columns": [], "rows": [], "declared": "ab"}]},
        {"ok": True, "tables": [{"name": "\ud800", "columns": [], "rows": []}]},
    ],
    ids=[
        "error-not-an-object",
        "duration-not-a-number",
        "tables-a-number",
        "tables-null",
        "declared-not-a-mapping",
        "lone-surrogate",
    ],
)
def test_parse_refuses_a_malformed_envelope_as_malformed_output(envelope: Any) -> None:
    assert refused(result_line(envelope)).reason == "malformed_output"


@pytest.mark.parametrize("separator", ["\x85", "\u2028", "\u2029"])
def test_parse_keeps_a_unicode_line_separator_inside_the_result(separator: str) -> None:
    table = {"name": "t", "columns": ["note"], "rows": [[f"a{separator}b"]]}
    assert parse(ok([table])).tables[0].rows == [[f"a{separator}b"]]


def test_parse_drops_a_trailing_newline_of_an_error_type() -> None:
    assert refused(failed({"type": "Error\n"})).error_type == "Error"


# --- the job file ------------------------------------------------------------------


def test_spec_writes_the_harnesss_instructions_beside_the_view(tmp_path: Path) -> None:
    spec = JobSpec(job_id="j1", language="sql", code="SELECT 1", input_dir=tmp_path)
    path = spec.write_job_file()
    assert path == tmp_path / JOB_FILE
    assert json.loads(path.read_text(encoding="utf-8")) == {
        "job_id": "j1",
        "language": "sql",
        "code": "SELECT 1",
        "max_output_bytes": 8 * 1024 * 1024,
        "max_model_bytes": 0,
    }


# --- contest runs: fit and predict -------------------------------------------------------


def test_fit_and_predict_runs_and_only_they_have_a_model_volume(tmp_path: Path) -> None:
    model = ModelVolume("sandbox-model-s1-1", writable=True, max_bytes=1000)
    spec = JobSpec(job_id="s1-fit", language="fit", code="", input_dir=tmp_path, model=model)
    assert json.loads(spec.write_job_file().read_text())["max_model_bytes"] == 1000
    with pytest.raises(ValueError, match="model volume"):
        JobSpec(job_id="s1", language="fit", code="", input_dir=tmp_path)
    with pytest.raises(ValueError, match="model volume"):
        JobSpec(job_id="j", language="python", code="", input_dir=tmp_path, model=model)
    with pytest.raises(ValueError, match="only a fit run writes"):
        JobSpec(job_id="s1-p", language="predict", code="", input_dir=tmp_path, model=model)


def test_predictions_come_back_beside_the_tables_and_nan_stays_nan() -> None:
    line = result_line({"ok": True, "tables": [], "predictions": [0.5, float("nan"), "E11"]})
    predictions = parse(line).predictions
    assert predictions is not None
    assert predictions[0] == 0.5 and predictions[1] != predictions[1] and predictions[2] == "E11"
    assert parse(ok([])).predictions is None


def test_predictions_that_are_not_a_list_are_malformed_output() -> None:
    line = result_line({"ok": True, "tables": [], "predictions": {"a": 1}})
    assert refused(line).reason == "malformed_output"


def test_a_model_over_its_cap_is_its_own_reason() -> None:
    failure = refused(failed({"reason": "model_too_large", "max_bytes": 4096}))
    assert failure.reason == "model_too_large"
    assert "4096 bytes" in failure.message


def test_spec_defaults_are_the_documented_limits(tmp_path: Path) -> None:
    spec = JobSpec(job_id="j", language="python", code="", input_dir=tmp_path)
    assert (spec.timeout_s, spec.memory_mb, spec.cpus, spec.pids, spec.tmp_mb) == (
        60,
        1024,
        1.0,
        128,
        64,
    )


def test_the_helper_hands_over_as_many_contributions_as_the_rules_may_read() -> None:
    from policies.output_checks import TOP_CONTRIBUTIONS
    from runners.harness import sandbox_job

    # The harness imports nothing of the project, so it keeps its own copy of the number.
    assert sandbox_job.TOP_CONTRIBUTIONS == TOP_CONTRIBUTIONS
