"""Runs one job inside the runner and writes one result line.

Protocol: the job folder (``SANDBOX_INPUT``, ``/input`` in the container)
holds the view as ``<table>.parquet`` and ``job.json``. Everything the job
prints goes to a log file; the result goes to the original standard output
as one line ``SANDBOX-RESULT {json}``. Standard library, DuckDB, pandas and
pyarrow only: this file runs in the runner image.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

RESULT_MARKER = "SANDBOX-RESULT "
LOG_TAIL_BYTES = 128 * 1024  # what the auditor's copy keeps of a job's output


class ModelTooLarge(Exception):
    """fit's model would pass the cap (RLIMIT_FSIZE stopped its file)."""


class OutputTooLarge(Exception):
    """The result line would be too long; caught in main(), never leaves the container.

    Not a RunnerError: the image holds this folder only, not the runners package.
    """


def _cell(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, list | tuple):
        return [_cell(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return _cell(value.item())
    pd = sys.modules.get("pandas")  # only a Python job has imported it
    if pd is not None and (value is pd.NA or value is pd.NaT):
        return None
    return str(value)


def run_sql(code: str, input_dir: Path) -> list[dict[str, Any]]:
    import duckdb

    con = duckdb.connect(":memory:")
    # DuckDB reads the view's Parquet itself (pyarrow's dataset layer would take
    # longer to import than the query takes), before file access is switched off.
    for path in sorted(input_dir.glob("*.parquet")):
        if not path.stem.isidentifier():
            raise ValueError("a view table has a name that is not an identifier")
        con.execute(f'CREATE TABLE "{path.stem}" AS SELECT * FROM read_parquet(?)', [str(path)])
    # The statement was checked and rewritten outside; still, nothing here may
    # read files, load extensions or change these settings back.
    con.execute("SET enable_external_access = false")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET lock_configuration = true")
    cursor = con.execute(code)
    columns = [d[0] for d in cursor.description or []]
    rows = [[_cell(v) for v in row] for row in cursor.fetchall()]
    return [{"name": "result", "columns": columns, "rows": rows, "declared": {}}]


def run_python(code: str, input_dir: Path) -> list[dict[str, Any]]:
    sys.path.insert(0, str(Path(__file__).parent))
    import sandbox_job

    compiled = compile(code, "<job>", "exec")
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compiled, namespace)
    outputs = []
    for item in sandbox_job._collected():
        columns, rows = frame_cells(item["frame"])
        outputs.append(
            {"name": item["name"], "columns": columns, "rows": rows, "declared": item["declared"]}
        )
    return outputs


MODEL_DIR = Path(os.environ.get("SANDBOX_MODEL", "/model"))
MODEL_FILE = "model.pkl"


def _submission(code: str) -> dict[str, Any]:
    """The team's module: its ``fit`` and ``predict`` functions (the checker saw to both)."""
    compiled = compile(code, "<job>", "exec")
    namespace: dict[str, Any] = {"__name__": "submission"}
    exec(compiled, namespace)
    return namespace


def _tables_of(input_dir: Path) -> dict[str, Any]:
    import pandas as pd

    return {path.stem: pd.read_parquet(path) for path in sorted(input_dir.glob("*.parquet"))}


def run_fit(code: str, input_dir: Path, max_model_bytes: int) -> None:
    """Fit on the training part; the model goes to the private volume, pickled by the
    harness (teams cannot pickle: the checker refuses it), under a file size cap."""
    import pickle
    import resource
    import signal

    namespace = _submission(code)
    model = namespace["fit"](_tables_of(input_dir))
    # Past the cap the write fails with EFBIG instead of the process being killed.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_model_bytes, max_model_bytes))
    try:
        with open(MODEL_DIR / MODEL_FILE, "wb") as handle:
            pickle.dump(model, handle, protocol=pickle.HIGHEST_PROTOCOL)
    except OSError as error:
        if error.errno == 27:  # EFBIG
            raise ModelTooLarge() from None
        raise


def run_predict(code: str, input_dir: Path) -> list[Any]:
    """Predict for the scored part's features; the predictions go to the worker only."""
    import pickle

    namespace = _submission(code)
    with open(MODEL_DIR / MODEL_FILE, "rb") as handle:
        model = pickle.load(handle)  # written by this harness's fit, on this volume only
    return prediction_values(namespace["predict"](model, _tables_of(input_dir)))


def prediction_values(predicted: Any) -> list[Any]:
    """Predictions as JSON values, NaN and infinities kept (the scorer refuses them)."""
    if hasattr(predicted, "to_numpy"):  # a pandas Series or one-column frame
        predicted = predicted.to_numpy()
    if hasattr(predicted, "tolist"):  # numpy arrays, nested ones stay nested
        predicted = predicted.tolist()
    if not isinstance(predicted, list | tuple):
        raise TypeError("predict did not return a sequence")
    return [_prediction(v) for v in predicted]


def _prediction(value: Any) -> Any:
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if hasattr(value, "item"):
        return _prediction(value.item())
    if isinstance(value, list | tuple):
        return [_prediction(v) for v in value]
    return str(value)


def frame_cells(frame: Any) -> tuple[list[str], list[list[Any]]]:
    """A DataFrame's column names and rows as JSON values, as an output leaves the runner."""
    rows = [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
    return [str(c) for c in frame.columns], rows


def _job_line(tb: Any) -> int | None:
    line = None
    for frame, lineno in traceback.walk_tb(tb):
        if frame.f_code.co_filename == "<job>":
            line = lineno
    return line


def _wait_for_job(input_dir: Path) -> bool:
    """Warm mode: import the job's libraries, then wait for this container's job file.

    SANDBOX_WARM_FOR names the language expected: a SQL job needs DuckDB only,
    a Python job pandas and pyarrow as well. A job of the other language runs
    all the same, importing what it lacks. False if no job came within
    SANDBOX_MAX_IDLE_S (the pool replaces the container).
    """
    import duckdb  # noqa: F401 - imported ahead: what a warm start saves

    if os.environ.get("SANDBOX_WARM_FOR", "python") != "sql":
        import pandas  # noqa: F401
        import pyarrow.parquet  # noqa: F401

    deadline = time.monotonic() + float(os.environ.get("SANDBOX_MAX_IDLE_S", "600"))
    while not (input_dir / "job.json").exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)  # a 2 ms poll cost an idle container 2.6 % of a core
    # The job runs with the same environment as in a container started for it.
    for name in ("SANDBOX_WAIT_FOR_JOB", "SANDBOX_MAX_IDLE_S", "SANDBOX_WARM_FOR"):
        os.environ.pop(name, None)
    return True


def _run(job: dict[str, Any], input_dir: Path) -> dict[str, Any]:
    """The job's successful envelope: its tables, or a predict run's predictions."""
    language = job["language"]
    if language == "sql":
        return {"ok": True, "tables": run_sql(job["code"], input_dir)}
    if language == "python":
        return {"ok": True, "tables": run_python(job["code"], input_dir)}
    if language == "fit":
        run_fit(job["code"], input_dir, int(job["max_model_bytes"]))
        return {"ok": True, "tables": []}
    if language == "predict":
        return {"ok": True, "tables": [], "predictions": run_predict(job["code"], input_dir)}
    raise ValueError("unknown language")


def main() -> int:
    input_dir = Path(os.environ.get("SANDBOX_INPUT", "/input"))
    if os.environ.get("SANDBOX_WAIT_FOR_JOB") and not _wait_for_job(input_dir):
        return 0
    started = time.monotonic()
    tmp_dir = Path(os.environ.get("SANDBOX_TMP", "/tmp"))
    log_path = tmp_dir / "job.log"
    result_fd = os.dup(1)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    envelope: dict[str, Any]
    try:
        job = json.loads((input_dir / "job.json").read_text(encoding="utf-8"))
        envelope = _run(job, input_dir)
        size = len(json.dumps(envelope, ensure_ascii=False).encode("utf-8"))
        if size > int(job.get("max_output_bytes", 8 * 1024 * 1024)):
            raise OutputTooLarge()
    except OutputTooLarge:
        envelope = {"ok": False, "error": {"reason": "output_too_large"}}
    except ModelTooLarge:
        envelope = {
            "ok": False,
            "error": {"reason": "model_too_large", "max_bytes": job.get("max_model_bytes", 0)},
        }
    except BaseException as error:
        traceback.print_exc()
        envelope = {
            "ok": False,
            "error": {
                "reason": "error",
                "type": type(error).__name__,
                "line": _job_line(error.__traceback__),
            },
        }
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        with open(log_path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(log_path) - LOG_TAIL_BYTES))
            envelope["log"] = handle.read().decode("utf-8", "replace")
    except OSError:
        envelope["log"] = ""
    envelope["duration_s"] = round(time.monotonic() - started, 4)
    line = RESULT_MARKER + json.dumps(envelope, ensure_ascii=False) + "\n"
    data = memoryview(line.encode("utf-8"))
    while data:
        data = data[os.write(result_fd, data) :]
    return 0


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The result is written: skip the interpreter's teardown of DuckDB, pandas and
    # pyarrow, which takes longer than many jobs.
    os._exit(status)
