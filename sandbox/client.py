"""A Python client of the JSON API (ARCHITECTURE.md, "HTTP API") for analysts.

It speaks HTTP only, with the standard library, and hands results over as pandas
DataFrames; nothing here reaches the database or the data::

    from sandbox.client import Client

    client = Client.login("http://127.0.0.1:8000", "analyst", password)
    job = client.submit("by_department.sql", dataset="health", mode="dp", epsilon=0.5)
    client.wait(job.id, timeout=120)
    tables = client.result(job.id)        # {"result": DataFrame}, errors as columns

Every answer the API refuses raises :class:`ClientError` with its HTTP status,
the API's error code and its message (and ``retry_after`` on a 429).
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported when a table is made: the CLI starts faster
    import pandas as pd

DEFAULT_URL = "http://127.0.0.1:8000"  # where `sandbox demo` and `sandbox serve` listen
LANGUAGES = {".sql": "sql", ".py": "python"}
# Nothing more happens to a job in these states without a person: `wait` returns.
FINAL_STATES = frozenset({"released", "rejected", "failed", "withheld"})
REVIEW_STATE = "pending_review"
# Polling starts quick (most jobs take a second or two) and slows down to this.
FIRST_POLL_S = 0.25
MAX_POLL_S = 5.0
POLL_GROWTH = 1.5
REQUEST_TIMEOUT_S = 60.0
# A string naming a .sql/.py file (one word, this short) is read as that file.
MAX_PATH_LENGTH = 4096


class ClientError(Exception):
    """The API refused a call, or could not be reached (``status`` 0).

    ``code`` is the API's error code (``policy_violation``, ``rate_limited``,
    ``not_found``, ...), ``details`` the rest of its error object (``findings``,
    ``rule``, ``location``, ...), ``retry_after`` the seconds to wait after a 429.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        details: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(f"{message} ({code}, HTTP {status})" if status else message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.details: dict[str, object] = dict(details or {})

    @property
    def findings(self) -> list[dict[str, object]]:
        """Every rule a rejected job broke (422), as the API words them."""
        found = self.details.get("findings")
        return [f for f in found if isinstance(f, dict)] if isinstance(found, list) else []


class WaitTimedOut(ClientError):
    """The job did not settle within ``wait``'s timeout; it goes on running."""

    def __init__(self, job: Job, timeout: float) -> None:
        super().__init__(
            0, "timeout", f"job {job.id} is still {job.status} after {timeout:g} s", details={}
        )
        self.job = job


@dataclass(frozen=True)
class Job:
    """A job as ``GET /api/v1/jobs/<id>`` shows it to its analyst."""

    id: str
    status: str
    dataset: str | None = None
    language: str | None = None
    mode: str | None = None
    epsilon: float | None = None
    submitted_at: str | None = None
    finished_at: str | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Job:
        if not isinstance(body.get("id"), str) or not isinstance(body.get("status"), str):
            raise ClientError(0, "bad_answer", "the API's answer is not a job")
        findings = body.get("findings")
        error = body.get("error")
        return cls(
            id=body["id"],
            status=body["status"],
            dataset=body.get("dataset"),
            language=body.get("language"),
            mode=body.get("mode"),
            epsilon=body.get("epsilon"),
            submitted_at=body.get("submitted_at"),
            finished_at=body.get("finished_at"),
            findings=list(findings) if isinstance(findings, list) else [],
            error=error if isinstance(error, dict) else None,
        )

    @property
    def settled(self) -> bool:
        """Nothing more happens to it without a person (final, or held for review)."""
        return self.status in FINAL_STATES or self.status == REVIEW_STATE


Progress = bool | Callable[[Job], None]


class Client:
    """The JSON API of one portal, as one user (their bearer token)."""

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token

    @classmethod
    def login(cls, url: str, username: str, password: str, *, label: str | None = None) -> Client:
        """A client holding a fresh token of ``username``'s; ``label`` names it in the
        portal's list of your tokens. Wrong credentials raise a 401 :class:`ClientError`,
        too many tries a 429 with ``retry_after``."""
        client = cls(url)
        ask = {"username": username, "password": password}
        body = client._json("POST", "/api/v1/auth/token", ask | ({"label": label} if label else {}))
        client.token = str(body["token"])
        return client

    # --- jobs -----------------------------------------------------------------------------

    def submit(
        self,
        code_or_path: str | os.PathLike[str],
        *,
        dataset: str,
        mode: str,
        language: str | None = None,
        epsilon: float | None = None,
        delta: float | None = None,
        rows_per_person: int | None = None,
    ) -> Job:
        """Submit SQL or Python code (or the .sql/.py file it names); the job as queued.

        ``language`` is taken from the file's suffix when left out. A policy's
        rejection raises :class:`ClientError` (422) with every finding.
        """
        code, language = read_code(code_or_path, language)
        body: dict[str, Any] = {
            "dataset": dataset,
            "language": language,
            "mode": mode,
            "code": code,
        }
        optional = {"epsilon": epsilon, "delta": delta, "rows_per_person": rows_per_person}
        body.update({k: v for k, v in optional.items() if v is not None})
        return Job.from_json(self._json("POST", "/api/v1/jobs", body))

    def status(self, job_id: str) -> Job:
        return Job.from_json(self._json("GET", f"/api/v1/jobs/{_segment(job_id)}"))

    def jobs(self) -> list[Job]:
        """Your newest jobs, newest first."""
        return [Job.from_json(j) for j in self._json("GET", "/api/v1/jobs").get("jobs", [])]

    def wait(
        self,
        job_id: str,
        *,
        timeout: float = 300.0,
        progress: Progress = True,
        stop_at_review: bool = True,
    ) -> Job:
        """Poll the job until it is released, rejected, failed or withheld (or, with
        ``stop_at_review``, held for an auditor), backing off from a quarter second to
        five. ``progress`` prints each change of status to stderr (True) or hands the
        job to a callback. Raises :class:`WaitTimedOut` after ``timeout`` seconds."""
        report = _progress_printer() if progress is True else progress or None
        deadline = time.monotonic() + timeout
        pause, seen = FIRST_POLL_S, None
        while True:
            try:
                job = self.status(job_id)
            except ClientError as error:
                if error.status != 429:  # only a rate limit is worth waiting out here
                    raise
                time.sleep(min(error.retry_after or MAX_POLL_S, _left(deadline)))
                continue
            if job.status != seen:
                seen = job.status
                if report is not None:
                    report(job)
            if job.status in FINAL_STATES or (stop_at_review and job.status == REVIEW_STATE):
                return job
            if _left(deadline) <= 0:
                raise WaitTimedOut(job, timeout)
            time.sleep(min(pause, _left(deadline)))
            pause = min(pause * POLL_GROWTH, MAX_POLL_S)

    def result_document(self, job_id: str) -> dict[str, Any]:
        """The released result as the API sends it: tables, privacy, certificate."""
        return self._json("GET", f"/api/v1/jobs/{_segment(job_id)}/result")

    def result(self, job_id: str) -> dict[str, pd.DataFrame]:
        """The released tables by name (409 :class:`ClientError` before the release).

        Each differentially private cell's 95 % error is kept beside it: ``<col>_error95``
        with ``<col>_low`` and ``<col>_high``, or ``<col>_rank_error95`` for a quantile
        (rows of rank). Each frame's ``attrs`` hold the privacy spent and the job's id.
        """
        return tables_from_result(self.result_document(job_id), job_id=job_id)

    # --- datasets and budgets --------------------------------------------------------------

    def datasets(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/api/v1/datasets").get("datasets", []))

    def mock(self, dataset: str, table: str, *, rows: int | None = None) -> pd.DataFrame:
        """Synthetic rows with the view's schema (no real data) to write code against."""
        import pandas as pd

        query = {"table": table, **({"rows": str(rows)} if rows is not None else {})}
        path = f"/api/v1/datasets/{_segment(dataset)}/mock?{urllib.parse.urlencode(query)}"
        return pd.read_csv(io.StringIO(self._text("GET", path)))

    def budget(self) -> list[dict[str, Any]]:
        """Each of your grants with ε and δ spent and left."""
        return list(self._json("GET", "/api/v1/budget").get("budgets", []))

    # --- HTTP ------------------------------------------------------------------------------

    def _json(self, method: str, path: str, body: object = None) -> dict[str, Any]:
        raw, kind = self._call(method, path, body)
        if "json" not in kind:
            raise ClientError(0, "bad_answer", f"{path} did not answer JSON")
        answer = json.loads(raw)
        if not isinstance(answer, dict):
            raise ClientError(0, "bad_answer", f"{path} did not answer a JSON object")
        return answer

    def _text(self, method: str, path: str) -> str:
        raw, _ = self._call(method, path, None)
        return raw.decode("utf-8")

    def _call(self, method: str, path: str, body: object) -> tuple[bytes, str]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
                return response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            with error:
                raise error_from_response(
                    error.code, error.read(), error.headers.get("Retry-After")
                ) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ClientError(0, "unreachable", f"cannot reach {self.url}: {reason}") from None


def error_from_response(status: int, raw: bytes, retry_after: str | None) -> ClientError:
    """The API's ``{error: {code, message, ...}}`` as a :class:`ClientError`; a body that
    is not one (a proxy's page) still gives the status and a plain message."""
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return ClientError(status, f"http_{status}", f"the server answered HTTP {status}")
    details = {k: v for k, v in error.items() if k not in ("code", "message")}
    wait = (
        _seconds(retry_after) if retry_after is not None else _seconds(details.get("retry_after"))
    )
    return ClientError(
        status,
        str(error.get("code") or f"http_{status}"),
        str(error.get("message") or f"the server answered HTTP {status}"),
        retry_after=wait,
        details=details,
    )


def read_code(code_or_path: str | os.PathLike[str], language: str | None) -> tuple[str, str]:
    """The code to send and its language: a path's file and suffix, or the code as given."""
    path = _as_path(code_or_path)
    if path is not None:
        try:
            code = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ClientError(0, "bad_file", f"cannot read {path}: {error}") from None
        language = language or LANGUAGES.get(path.suffix.lower())
    else:
        code = str(code_or_path)
    if language is None:
        raise ClientError(
            0, "language_unknown", "say language='sql' or 'python' (or give a .sql/.py file)"
        )
    return code, language


def _as_path(code_or_path: str | os.PathLike[str]) -> Path | None:
    if isinstance(code_or_path, os.PathLike):
        return Path(code_or_path)
    text = str(code_or_path)
    if len(text) > MAX_PATH_LENGTH or "\n" in text or Path(text).suffix.lower() not in LANGUAGES:
        return None
    # One word ending in .sql or .py is a file's name, not code: a missing one says so
    # (read_code's error) rather than being sent as a query.
    return Path(text) if Path(text).is_file() or " " not in text.strip() else None


def tables_from_result(document: Mapping[str, Any], *, job_id: str = "") -> dict[str, pd.DataFrame]:
    """The released tables of a result document, one DataFrame per table, with each
    noisy column's 95 % error (and its interval, where it is in the value's units)."""
    import pandas as pd

    tables = document.get("tables")
    if not isinstance(tables, list):
        raise ClientError(0, "bad_answer", "the result holds no tables")
    privacy = document.get("privacy") or {}
    frames: dict[str, pd.DataFrame] = {}
    for table in tables:
        columns = [str(c) for c in table.get("columns", [])]
        rows = table.get("rows") or []
        frame = pd.DataFrame(rows, columns=columns)
        for position, column in enumerate(columns):
            _add_error_columns(frame, table, position, column)
        frame.attrs.update(job=job_id, table=table.get("name"), privacy=privacy)
        frames[str(table.get("name"))] = frame
    return frames


def _add_error_columns(
    frame: pd.DataFrame, table: Mapping[str, Any], position: int, column: str
) -> None:
    errors = table.get("error95")
    if not errors:
        return
    bounds = [row[position] if position < len(row) else None for row in errors]
    if all(b is None for b in bounds):
        return
    units = (table.get("error95_units") or [None] * (position + 1))[position]
    if units == "rank":  # ± rows of rank around the quantile: no interval in its units
        frame[f"{column}_rank_error95"] = bounds
        return
    error = [float(b) if b is not None else float("nan") for b in bounds]
    values = [
        v if isinstance(v, int | float) and not isinstance(v, bool) else None for v in frame[column]
    ]
    frame[f"{column}_error95"] = error
    frame[f"{column}_low"] = [
        v - e if v is not None else None for v, e in zip(values, error, strict=True)
    ]
    frame[f"{column}_high"] = [
        v + e if v is not None else None for v, e in zip(values, error, strict=True)
    ]


def _progress_printer() -> Callable[[Job], None]:
    started = time.monotonic()

    def report(job: Job) -> None:
        print(f"job {job.id}: {job.status} ({time.monotonic() - started:.1f} s)", file=sys.stderr)

    return report


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _seconds(value: object) -> float | None:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _segment(value: str) -> str:
    """One path segment: a job id or dataset name cannot walk to another endpoint."""
    return urllib.parse.quote(str(value), safe="")
