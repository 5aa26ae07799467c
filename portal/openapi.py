"""The OpenAPI 3.1 description of the JSON API, served at ``GET /api/v1/openapi.json``.

Every route under ``/api/v1`` is one entry of ``OPERATIONS``; the shapes the routes share
(errors, jobs, grants, teams, submissions…) are component schemas named once in
``portal.openapi_schemas``. ``tests/integration/portal/test_openapi.py`` fails when a
route of ``app.url_map`` is missing here or this names a route that does not exist, and
schemathesis checks the live portal against it (``tests/e2e/test_openapi_conformance.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, jsonify

from portal.openapi_schemas import (
    ACCESS_ASK,
    ANY_OBJECT,
    APPROVAL,
    BOOLEAN,
    GRANT_REQUEST,
    INTEGER,
    JOB_REQUEST,
    SCHEMAS,
    STRING,
    TABLE,
    TEXT,
    TIME,
    TRACK_TERMS,
    Schema,
    list_of,
    object_of,
    ref,
    text_fields,
)
from portal.request_checks import LARGEST_ROW_ID
from sandbox.contest.contests import PHASES
from sandbox.contest.disputes import KINDS
from sandbox.jobs.results import RESULT_FORMATS
from sandbox.models import AccessRequestStatus
from sandbox.owners.publishing import Mode

PREFIX = "/api/v1"
bp = Blueprint("api_openapi", __name__, url_prefix=PREFIX)

# What each error status means; the body is always the Error schema (422: with findings).
ERRORS = {
    400: "The request is malformed: the error names the field or rule.",
    401: "No valid bearer token (or the login failed).",
    403: "Not allowed for this user: the error names the rule.",
    404: "No such thing, or not visible to this user.",
    405: "The method is not allowed here.",
    409: "The thing is not in a state that allows this.",
    413: "The request body is larger than allowed.",
    422: "A policy rejected the request: `findings` names every rule it broke.",
    429: "Too many requests for now: `Retry-After` says in how many seconds to try again.",
}
TAGS = (
    ("auth", "Logging in and bearer tokens."),
    ("catalog", "Datasets, their schemas and mock rows."),
    ("jobs", "Analysts' SQL and Python jobs, their dry run and results."),
    ("access", "Grants, budgets, access requests and consent."),
    ("reviews", "Auditors' output review and analysts' objections."),
    ("owners", "Owners' imports, dataset versions, definitions and usage."),
    ("audit", "The audit log, its chain check and the release keys."),
    ("contest", "Contests, tracks, registrations, teams and disputes."),
    ("submissions", "Contest submissions and leaderboards."),
    ("meta", "This description."),
)

# --- operations -------------------------------------------------------------------------------

ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
SLUG = {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,62}$"}
PATH_PARAMETERS: dict[str, Schema] = {
    "name": SLUG | {"description": "A dataset's name.", "examples": ["health"]},
    "contest": SLUG | {"description": "A contest's slug.", "examples": ["health-2026"]},
    "track": SLUG | {"description": "A track's slug.", "examples": ["readmission-30d"]},
    "username": ID | {"description": "A user's name.", "examples": ["analyst"]},
    "decision": {"enum": ["approve", "reject"]},
    "dispute_id": {"type": "integer", "minimum": 0, "maximum": LARGEST_ROW_ID},
    "token_id": {"type": "integer", "minimum": 0, "maximum": LARGEST_ROW_ID},
}


@dataclass(frozen=True)
class Operation:
    """One route: what it does, what it takes and what it can answer."""

    method: str
    path: str
    summary: str
    tag: str
    ok: int = 200
    answer: Schema | None = None
    body: Schema | None = None
    errors: tuple[int, ...] = ()
    query: dict[str, Schema] = field(default_factory=dict)
    required_query: tuple[str, ...] = ()
    content: dict[str, Schema] | None = None  # a request body other than JSON
    answer_type: str = "application/json"
    also_csv: bool = False  # the answer may be asked for as CSV instead (?format=csv)
    public: bool = False

    def to_dict(self) -> Schema:
        spec: Schema = {
            "summary": self.summary,
            "tags": [self.tag],
            "operationId": f"{self.method}_{self.path}".replace("/", "_").strip("_"),
            "responses": self._responses(),
        }
        parameters = self._parameters()
        if parameters:
            spec["parameters"] = parameters
        if self.public:
            spec["security"] = []
        if self.body is not None or self.content is not None:
            media = dict(self.content or {})
            if self.body is not None:
                media["application/json"] = {"schema": self.body}
            spec["requestBody"] = {"required": True, "content": media}
        return spec

    def _parameters(self) -> list[Schema]:
        found = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": PATH_PARAMETERS.get(name, ID),
            }
            for name in _path_names(self.path)
        ]
        found += [
            {"name": name, "in": "query", "required": name in self.required_query, "schema": s}
            for name, s in self.query.items()
        ]
        return found

    def _responses(self) -> Schema:
        if self.answer_type == "text/csv":
            success = {"schema": {"type": "string"}}
        else:
            success = {"schema": self.answer or ANY_OBJECT}
        media = {self.answer_type: success}
        if self.also_csv:
            media["text/csv"] = {"schema": {"type": "string"}}
        answers: Schema = {str(self.ok): {"description": "Done.", "content": media}}
        statuses = set(self.errors) | ({400} if self.body is not None else set())
        if not self.public:
            statuses.add(401)
        if self.body is not None or self.content is not None:
            statuses.add(413)
        for status in sorted(statuses):
            answers[str(status)] = {"$ref": f"#/components/responses/E{status}"}
        return answers


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _get(
    path: str, summary: str, tag: str, answer: Schema, *errors: int, **extra: Any
) -> Operation:
    return Operation("get", path, summary, tag, answer=answer, errors=errors, **extra)


def _post(
    path: str, summary: str, tag: str, answer: Schema, *errors: int, **extra: Any
) -> Operation:
    return Operation("post", path, summary, tag, answer=answer, errors=errors, **extra)


JOBS = "/jobs/{job_id}"
IMPORT = "/imports/{import_id}"
DATASET = "/datasets/{name}"
CONTEST = "/contests/{contest}"
TRACK = "/contests/{contest}/tracks/{track}"
SUBMISSION = "/submissions/{submission_id}"
TEAM = "/teams/{team_id}"
FILE_UPLOAD = {
    "text/csv": {"schema": {"type": "string"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
}
FILE_NAME = {"filename": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,200}$"}}
BOOLEAN_TEXT = {"enum": ["true", "false"]}

OPERATIONS: tuple[Operation, ...] = (
    # auth
    _post(
        "/auth/token",
        "Log in: a bearer token for the API",
        "auth",
        ref("Token"),
        401,
        403,
        429,
        public=True,
        body=object_of(
            {
                "username": TEXT,
                "password": TEXT,
                "label": {"type": "string", "maxLength": 64},
                "lifetime_days": {"type": "integer", "minimum": 1},
            },
            required=("username", "password"),
        ),
    ),
    _get(
        "/tokens",
        "The user's tokens (an admin's: ?user=NAME or * for everyone's)",
        "auth",
        list_of("tokens", ref("TokenInfo")),
        400,
        403,
        404,
        query={"user": STRING},
    ),
    Operation(
        "delete",
        "/tokens/{token_id}",
        "Revoke a token",
        "auth",
        answer=object_of({"id": INTEGER, "revoked_at": TIME}),
        errors=(403, 404),
    ),
    _get("/openapi.json", "This description (OpenAPI 3.1)", "meta", ANY_OBJECT, public=True),
    # catalog
    _get("/datasets", "The catalog", "catalog", list_of("datasets", ref("DatasetSummary"))),
    _get(
        DATASET,
        "A dataset's schema: each column's class and rule, never data",
        "catalog",
        ref("DatasetSchema"),
        404,
    ),
    Operation(
        "patch",
        DATASET,
        "The owner's settings: how many auditors review an output",
        "owners",
        answer=ref("DatasetSettings"),
        body=object_of(
            {
                "reviewers_required": {"enum": [1, 2]},
                "unverified_reviewers_required": {"enum": [1, 2]},
            },
            required=(),
            minProperties=1,
        ),
        errors=(403, 404),
    ),
    _get(
        f"{DATASET}/mock",
        "Synthetic rows with the view's schema (CSV)",
        "catalog",
        {},
        400,
        404,
        query={"table": TABLE, "rows": {"type": "integer", "minimum": 1, "maximum": 10_000}},
        required_query=("table",),
        answer_type="text/csv",
    ),
    # jobs
    _post(
        "/jobs",
        "Submit a SQL or Python job",
        "jobs",
        ref("JobAccepted"),
        403,
        404,
        409,
        422,
        429,
        ok=202,
        body=JOB_REQUEST,
    ),
    _get("/jobs", "The analyst's own jobs", "jobs", list_of("jobs", ref("Job"))),
    _get(JOBS, "A job's status", "jobs", ref("Job"), 403, 404),
    _get(
        f"{JOBS}/result",
        "A released job's result (JSON or CSV); 409 before its release",
        "jobs",
        ref("JobResult"),
        400,
        403,
        404,
        409,
        query={"format": {"enum": list(RESULT_FORMATS)}, "table": STRING},
        also_csv=True,
    ),
    _post(
        "/policy/check",
        "Dry run: every finding, nothing queued or spent",
        "jobs",
        ref("CheckResult"),
        403,
        404,
        body=JOB_REQUEST,
    ),
    _get(
        f"{JOBS}/review",
        "The review of the analyst's own job, never the held output",
        "reviews",
        ref("AnalystReview"),
        403,
        404,
    ),
    _post(
        f"{JOBS}/objection",
        "Object (异议) to a withheld output",
        "reviews",
        ref("AnalystReview"),
        403,
        404,
        409,
        body=text_fields("reason"),
    ),
    # access
    _get("/budget", "ε/δ left per grant", "access", list_of("budgets", ref("Budget")), 403),
    _get(
        "/grants",
        "Grants on the owner's datasets",
        "access",
        list_of("grants", ref("Grant")),
        403,
    ),
    _post(
        "/grants",
        "Grant an analyst access",
        "access",
        ref("Grant"),
        403,
        404,
        409,
        ok=201,
        body=GRANT_REQUEST,
    ),
    Operation(
        "delete",
        "/grants/{grant_id}",
        "Revoke a grant",
        "access",
        answer=ref("Grant"),
        errors=(403, 404, 409),
    ),
    _get(
        "/access-requests",
        "Access requests: an analyst's own, an owner's on their datasets",
        "access",
        list_of("access_requests", ref("AccessRequest")),
        400,
        403,
        query={"status": {"enum": [s.value for s in AccessRequestStatus]}},
    ),
    _post(
        "/access-requests",
        "Ask a dataset's owner for access",
        "access",
        ref("AccessRequest"),
        403,
        404,
        409,
        ok=201,
        body=ACCESS_ASK,
    ),
    _post(
        "/access-requests/{request_id}/approve",
        "Approve an access request, as filed or narrowed",
        "access",
        ref("AccessRequest"),
        403,
        404,
        409,
        body=APPROVAL,
    ),
    _post(
        "/access-requests/{request_id}/deny",
        "Deny an access request",
        "access",
        ref("AccessRequest"),
        403,
        404,
        409,
        body=object_of({"comment": STRING}, required=()),
    ),
    *(
        _post(
            f"{DATASET}/consents/{change}",
            summary,
            "access",
            ref("ConsentChange"),
            403,
            404,
            409,
            body=object_of({"person_id": {"type": ["string", "integer"]}, "purpose": TEXT}),
        )
        for change, summary in (
            ("withdraw", "One person's consent to one purpose ends"),
            ("give", "One person's consent to one purpose"),
        )
    ),
    # reviews
    _get(
        "/reviews",
        "Jobs held for review, oldest first",
        "reviews",
        list_of("reviews", ref("ReviewItem")),
        403,
    ),
    _get(
        "/reviews/{job_id}",
        "A held job's review: its output and checks",
        "reviews",
        ref("ReviewItem"),
        403,
        404,
    ),
    _post(
        "/reviews/{job_id}",
        "Approve or withhold a held output (a comment is required)",
        "reviews",
        ANY_OBJECT,
        403,
        404,
        409,
        body=object_of({"decision": {"enum": ["approve", "withhold"]}, "comment": TEXT}),
    ),
    # audit
    _get("/audit/verify", "Check the audit chain", "audit", ref("AuditVerification"), 403),
    _get(
        "/audit",
        "The audit log, oldest first, by page",
        "audit",
        ref("AuditPage"),
        400,
        403,
        query={
            "actor": STRING,
            "action": STRING,
            "subject": STRING,
            "since": STRING,
            "until": STRING,
            "limit": {"type": "integer", "minimum": 1},
            "after_seq": {"type": "integer", "minimum": 0},
        },
    ),
    _get("/keys/release", "The current release key", "audit", ref("ReleaseKey"), public=True),
    _get(
        "/release-keys",
        "The public keyring: current and retired signing keys",
        "audit",
        ref("Keyring"),
        public=True,
    ),
    # owners
    _post(
        "/imports",
        "Start an import: a new dataset or a new version",
        "owners",
        ref("Import"),
        403,
        404,
        409,
        ok=201,
        body=object_of(
            {"dataset": TEXT, "mode": {"enum": [m.value for m in Mode]}}, required=("dataset",)
        ),
    ),
    _get("/imports", "The owner's imports", "owners", list_of("imports", ref("Import")), 403),
    _get(
        IMPORT,
        "An import: staged tables, profile, proposed classes",
        "owners",
        ref("Import"),
        403,
        404,
    ),
    Operation(
        "delete",
        IMPORT,
        "Discard an import",
        "owners",
        answer=ref("Import"),
        errors=(403, 404, 409),
    ),
    Operation(
        "put",
        f"{IMPORT}/files",
        "Stage a file (CSV, Excel, Parquet): the file is the body",
        "owners",
        answer=ref("Import"),
        errors=(400, 403, 404, 409),
        query=FILE_NAME
        | {"table": STRING, "encoding": STRING, "delimiter": STRING, "header": BOOLEAN_TEXT},
        required_query=("filename",),
        content=FILE_UPLOAD,
    ),
    _post(
        f"{IMPORT}/connections",
        "Stage a table or query from the owner's database",
        "owners",
        ref("Import"),
        403,
        404,
        409,
        body=object_of(
            {"url": TEXT, "name": TEXT, "table": STRING, "query": STRING},
            required=("url", "name"),
        ),
    ),
    _post(
        f"{IMPORT}/profile",
        "Profile the staged tables",
        "owners",
        ref("Import"),
        400,
        403,
        404,
        409,
    ),
    Operation(
        "put",
        f"{IMPORT}/definition",
        "Confirm every column: the owner's definition (JSON or YAML)",
        "owners",
        answer=ref("Import"),
        errors=(400, 403, 404, 409),
        body=object_of({"definition": ANY_OBJECT}),
        content={"application/yaml": {"schema": ANY_OBJECT}},
    ),
    _post(
        f"{IMPORT}/publish",
        "Publish the import as a dataset version",
        "owners",
        ANY_OBJECT,
        400,
        403,
        404,
        409,
    ),
    _get(
        "/owner/datasets",
        "The owner's datasets and their versions",
        "owners",
        list_of("datasets", ref("DatasetVersions")),
        403,
    ),
    _get(f"{DATASET}/versions", "A dataset's versions", "owners", ref("DatasetVersions"), 403, 404),
    _get(
        f"{DATASET}/definition",
        "A dataset's definition (YAML)",
        "owners",
        object_of({"dataset": STRING, "tables": ANY_OBJECT}, required=("dataset", "tables")),
        403,
        404,
        answer_type="application/yaml",
    ),
    _get(f"{DATASET}/usage", "How a dataset is used", "owners", ref("Usage"), 403, 404),
    _post(
        f"{DATASET}/retire",
        "Retire a dataset: its data key is destroyed for good",
        "owners",
        ANY_OBJECT,
        403,
        404,
        409,
        body=text_fields("confirm"),
    ),
    Operation(
        "put",
        f"{DATASET}/consents",
        "Import the consent registry (CSV): the file is the body",
        "owners",
        answer=ref("ConsentImport"),
        errors=(400, 403, 404, 409),
        query=FILE_NAME,
        required_query=("filename",),
        content=FILE_UPLOAD,
    ),
    # contest
    _get("/contests", "Contests and their tracks", "contest", list_of("contests", ref("Contest"))),
    _post(
        "/contests",
        "Create a contest",
        "contest",
        ref("Contest"),
        403,
        409,
        ok=201,
        body=object_of(
            {"slug": TEXT, "title": TEXT, "title_en": STRING}, required=("slug", "title")
        ),
    ),
    _post(
        f"{CONTEST}/tracks",
        "Add a track",
        "contest",
        ref("Track"),
        403,
        404,
        409,
        ok=201,
        body=TRACK_TERMS,
    ),
    _post(
        f"{CONTEST}/phase",
        "Move the contest to its next phase",
        "contest",
        ref("Contest"),
        403,
        404,
        409,
        body=object_of({"phase": {"enum": list(PHASES)}}),
    ),
    _post(
        f"{CONTEST}/registrations",
        "Register for a contest under one's real name",
        "contest",
        ref("Registration"),
        403,
        404,
        409,
        ok=201,
        body=text_fields("real_name", "institution"),
    ),
    _post(
        f"{CONTEST}/registrations/{{username}}/{{decision}}",
        "Approve or reject a registration",
        "contest",
        ref("Registration"),
        403,
        404,
        409,
    ),
    _post(
        f"{CONTEST}/teams",
        "Form a team",
        "contest",
        ref("Team"),
        403,
        404,
        409,
        ok=201,
        body=text_fields("name"),
    ),
    _get(
        f"{CONTEST}/team",
        "The user's team in a contest, if any",
        "contest",
        ref("TeamOrNone"),
        404,
    ),
    _post(
        f"{TEAM}/invitations",
        "Invite a user to the team",
        "contest",
        ref("Team"),
        403,
        404,
        409,
        body=text_fields("username"),
    ),
    _post(f"{TEAM}/accept", "Accept an invitation", "contest", ref("Team"), 403, 404, 409),
    _post(
        f"{TEAM}/disqualify",
        "Disqualify a team",
        "contest",
        ref("Team"),
        403,
        404,
        409,
        body=text_fields("reason"),
    ),
    _post(
        f"{TEAM}/merge",
        "Merge two teams: both captains post the same pair",
        "contest",
        ref("Merge"),
        403,
        404,
        409,
        body=text_fields("into"),
    ),
    _post(
        f"{CONTEST}/disputes",
        "Dispute a score or a disqualification",
        "contest",
        ref("Dispute"),
        403,
        404,
        409,
        ok=201,
        body=object_of(
            {"kind": {"enum": list(KINDS)}, "text": TEXT, "submission": STRING},
            required=("kind", "text"),
        ),
    ),
    _get(
        f"{CONTEST}/disputes",
        "A contest's disputes",
        "contest",
        list_of("disputes", ref("Dispute")),
        403,
        404,
    ),
    _post(
        "/disputes/{dispute_id}/decision",
        "Uphold or reject a dispute",
        "contest",
        ref("Dispute"),
        403,
        404,
        409,
        body=object_of({"decision": {"enum": ["uphold", "reject"]}, "comment": TEXT}),
    ),
    # submissions
    _post(
        f"{TRACK}/submissions",
        "Submit model code (JSON or an uploaded file)",
        "submissions",
        ref("Submission"),
        403,
        404,
        409,
        422,
        429,
        ok=202,
        body=text_fields("code"),
        content={
            "multipart/form-data": {
                "schema": object_of({"file": {"type": "string", "format": "binary"}})
            }
        },
    ),
    _get(
        f"{TRACK}/submissions",
        "The team's submissions and quotas",
        "submissions",
        ref("MySubmissions"),
        403,
        404,
    ),
    _get(
        f"{TRACK}/leaderboard",
        "Released scores with their intervals",
        "submissions",
        ref("Leaderboard"),
        404,
    ),
    _get(
        f"{TRACK}/schema", "The track's tables and columns", "submissions", ref("TrackSchema"), 404
    ),
    _get(
        f"{TRACK}/mock",
        "Mock rows of a track's part (CSV)",
        "submissions",
        {},
        400,
        404,
        query={"part": {"enum": ["train", "features"]}, "table": TABLE},
        required_query=("table",),
        answer_type="text/csv",
    ),
    _get(
        SUBMISSION,
        "A submission's status and released score",
        "submissions",
        ref("Submission"),
        403,
        404,
    ),
    _post(
        f"{SUBMISSION}/select",
        "Pick (or unpick) a submission for the final scoring",
        "submissions",
        ref("Submission"),
        403,
        404,
        409,
        body=object_of({"selected": BOOLEAN}, required=()),
    ),
    _post(
        f"{SUBMISSION}/rerun",
        "Run a failed submission again",
        "submissions",
        ref("Submission"),
        403,
        404,
        409,
        ok=202,
    ),
    _get(
        f"{CONTEST}/submissions",
        "Every submission of a contest (organizers)",
        "submissions",
        list_of("submissions", ref("Submission")),
        403,
        404,
    ),
    _post(
        f"{CONTEST}/final-scoring",
        "Start the private scoring of the selected submissions",
        "submissions",
        ref("FinalScoring"),
        403,
        404,
        409,
        ok=202,
    ),
    _post(
        f"{CONTEST}/final-board",
        "Publish the final board",
        "submissions",
        ref("FinalBoard"),
        403,
        404,
        409,
    ),
)


def _error_responses() -> Schema:
    answers: Schema = {}
    for status, meaning in ERRORS.items():
        answer: Schema = {
            "description": meaning,
            "content": {"application/json": {"schema": ref("Error")}},
        }
        if status == 429:
            answer["headers"] = {
                "Retry-After": {
                    "description": "Seconds until a new request may succeed.",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                }
            }
        answers[f"E{status}"] = answer
    return answers


def openapi_document() -> Schema:
    """The whole description, built from ``OPERATIONS`` and ``SCHEMAS``."""
    paths: Schema = {}
    for operation in OPERATIONS:
        paths.setdefault(PREFIX + operation.path, {})[operation.method] = operation.to_dict()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Open-data sandbox API",
            "version": "1",
            "description": (
                "Data usable, never visible (数据可用不可见): analysts submit SQL and Python "
                "jobs over masked or differentially private views and read only released "
                "aggregates. Errors are always JSON `{error: {code, message, ...}}`."
            ),
        },
        "tags": [{"name": name, "description": text} for name, text in TAGS],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from POST /auth/token.",
                }
            },
            "schemas": SCHEMAS,
            "responses": _error_responses(),
        },
    }


@bp.get("/openapi.json")
def openapi() -> Any:
    return jsonify(openapi_document())
