"""The shapes the JSON API's description names once: component schemas (errors, jobs,
grants, teams, submissions…) and the request bodies several routes share. Built into the
OpenAPI 3.1 document by ``portal.openapi``."""

from __future__ import annotations

from typing import Any

from sandbox.access.grants import MAX_GRANT_DAYS, MAX_K_THRESHOLD, MODES
from sandbox.access.requests import MAX_DAYS
from sandbox.contest.contests import MAX_QUOTA, PHASES, TASKS
from sandbox.contest.disputes import KINDS
from sandbox.jobs import risk_signals
from sandbox.jobs.planning import LANGUAGES
from sandbox.jobs.reviews import BECAUSE_DATASET, BECAUSE_UNVERIFIED
from sandbox.models import AccessRequestStatus, ImportStatus, JobStatus, SubmissionStatus
from sandbox.owners.publishing import Mode

Schema = dict[str, Any]

# --- component schemas ----------------------------------------------------------------------


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(kind: str) -> Schema:
    return {"type": [kind, "null"]}


def object_of(
    properties: dict[str, Schema], *, required: tuple[str, ...] | None = None, **extra: Any
) -> Schema:
    """An object whose listed properties are all required unless ``required`` says which."""
    names = tuple(properties) if required is None else required
    return {"type": "object", "properties": properties, "required": list(names), **extra}


def list_of(key: str, item: Schema) -> Schema:
    return object_of({key: {"type": "array", "items": item}})


STRING: Schema = {"type": "string"}
TEXT: Schema = {"type": "string", "minLength": 1}
INTEGER: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}
BOOLEAN: Schema = {"type": "boolean"}
ANY_OBJECT: Schema = {"type": "object"}
TIME: Schema = {"type": "string", "format": "date-time", "description": "UTC, with its offset"}
MAYBE_TIME: Schema = TIME | {"type": ["string", "null"]}
STRINGS: Schema = {"type": "array", "items": STRING}
DATASET_NAME: Schema = TEXT | {"examples": ["health"]}
TABLE: Schema = TEXT | {"description": "A table's name.", "examples": ["visits"]}
ROW_COUNTS: Schema = {"type": "object", "additionalProperties": INTEGER}

SCHEMAS: dict[str, Schema] = {
    "Error": object_of(
        {
            "error": object_of(
                {
                    "code": STRING,
                    "message": STRING,
                    "field": STRING,
                    "rule": STRING,
                    "findings": {"type": "array", "items": ref("Finding")},
                },
                required=("code", "message"),
                description="Further fields (field, rule, findings, …) name what failed.",
            )
        }
    ),
    "Finding": object_of(
        {
            "rule": STRING,
            "message": STRING,
            "message_id": STRING,
            "location": nullable("string"),
            "params": ANY_OBJECT,
        },
        required=("rule", "message"),
    ),
    "Token": object_of({"token": STRING, "id": INTEGER, "expires_at": TIME}),
    "TokenInfo": object_of(
        {
            "id": INTEGER,
            "label": nullable("string"),
            "created_at": TIME,
            "expires_at": MAYBE_TIME,
            "last_used_at": MAYBE_TIME,
            "revoked_at": MAYBE_TIME,
            "user": STRING,
        },
        required=("id", "created_at", "expires_at", "revoked_at"),
    ),
    "DatasetSummary": object_of(
        {
            "name": STRING,
            "title": STRING,
            "title_en": nullable("string"),
            "privacy_unit": STRING,
            "tables": STRINGS,
            "row_counts": ROW_COUNTS,
            "version": STRING,
            "version_number": INTEGER,
            "available": BOOLEAN,
        },
        required=("name", "tables"),
    ),
    "DatasetSchema": object_of(
        {
            "name": STRING,
            "privacy_unit": STRING,
            "tables": {
                "type": "array",
                "items": object_of(
                    {
                        "name": STRING,
                        "columns": {"type": "array", "items": ref("Column")},
                    },
                    required=("name", "columns"),
                ),
            },
        },
        required=("name", "tables"),
    ),
    "Column": object_of(
        {
            "name": STRING,
            "type": STRING,
            "class": STRING,
            "masking": STRING,
            "view_name": nullable("string"),
            "description": nullable("string"),
        },
        required=("name", "type", "class"),
        description="A column's class and rule; never a value from the data.",
    ),
    "DatasetSettings": object_of(
        {
            "name": STRING,
            "version": STRING,
            "reviewers_required": {"enum": [1, 2]},
            "unverified_reviewers_required": {"enum": [1, 2]},
        },
    ),
    "DatasetVersions": object_of(
        {
            "name": STRING,
            "status": STRING,
            "current": nullable("integer"),
            "version": nullable("string"),
            "retired_at": MAYBE_TIME,
            "row_counts": {"type": ["object", "null"]},
            "versions": {
                "type": "array",
                "items": object_of(
                    {
                        "number": INTEGER,
                        "version": STRING,
                        "mode": STRING,
                        "published_at": TIME,
                        "published_by": nullable("string"),
                        "rows": ROW_COUNTS,
                    },
                    required=("number", "version"),
                ),
            },
        },
        required=("name", "versions"),
    ),
    "JobAccepted": object_of({"id": STRING, "status": {"enum": [s.value for s in JobStatus]}}),
    "Job": object_of(
        {
            "id": STRING,
            "status": {"enum": [s.value for s in JobStatus]},
            "dataset": STRING,
            "language": STRING,
            "mode": STRING,
            "epsilon": nullable("number"),
            "attempts": INTEGER,
            "runner": nullable("string"),
            "runtime": {"enum": ["runsc", "runc", None]},
            "image_digest": nullable("string"),
            "findings": {"type": "array", "items": ref("Finding")},
            "submitted_at": TIME,
            "started_at": MAYBE_TIME,
            "finished_at": MAYBE_TIME,
            "error": {"type": ["object", "null"]},
        },
        required=("id", "status", "dataset", "language", "mode"),
        description="Its analyst sees the status; auditors also the code, log and suppressions.",
    ),
    "CheckResult": object_of(
        {
            "allowed": BOOLEAN,
            "findings": {"type": "array", "items": ref("Finding")},
            "policy_version": nullable("string"),
        },
        required=("allowed", "findings"),
    ),
    "JobResult": {
        "type": "object",
        "description": "The released result: tables of aggregates, their noise and certificate.",
    },
    "AnalystReview": object_of(
        {
            "id": STRING,
            "status": {"enum": [s.value for s in JobStatus]},
            "review": {"type": ["object", "null"]},
        }
    ),
    "Quorum": object_of(
        {
            "required": {"type": "integer", "minimum": 1, "maximum": 2},
            "given": INTEGER,
            "because": {"enum": [BECAUSE_DATASET, BECAUSE_UNVERIFIED]},
            "unverified_outputs": STRINGS,
        },
        description="Approvals needed from distinct auditors, given so far, and why.",
    ),
    "RiskSignal": object_of(
        {
            "kind": {"enum": list(risk_signals.KINDS)},
            "severity": {"enum": list(risk_signals.SEVERITIES)},
            "output": nullable("string"),
        },
        required=("kind", "severity"),
        description="One thing for the auditor to look at first; worst first in a list.",
    ),
    "ReviewItem": object_of(
        {
            "id": STRING,
            "status": {"enum": [s.value for s in JobStatus]},
            "quorum": ref("Quorum"),
            "signals": {"type": "array", "items": ref("RiskSignal")},
        },
        required=("id", "quorum"),
        description="A held job in the queue (no signals) or its review (with them).",
    ),
    "Budget": object_of(
        {
            "grant": STRING,
            "dataset": STRING,
            "active": BOOLEAN,
            "modes": STRINGS,
            "epsilon_total": NUMBER,
            "epsilon_spent": NUMBER,
            "epsilon_remaining": NUMBER,
            "delta_total": NUMBER,
            "delta_spent": NUMBER,
            "expires_at": MAYBE_TIME,
        },
        required=("grant", "dataset", "epsilon_total", "epsilon_spent"),
    ),
    "Grant": object_of(
        {
            "id": STRING,
            "dataset": STRING,
            "analyst": STRING,
            "active": BOOLEAN,
            "modes": STRINGS,
            "epsilon_total": NUMBER,
            "epsilon_spent": NUMBER,
            "max_epsilon_per_job": NUMBER,
            "k_threshold": INTEGER,
            "purpose": STRING,
            "requires_consent": BOOLEAN,
            "requires_review": BOOLEAN,
            "expires_at": MAYBE_TIME,
            "revoked_at": MAYBE_TIME,
        },
        required=("id", "dataset", "analyst", "active", "modes"),
    ),
    "AccessRequest": object_of(
        {
            "id": STRING,
            "dataset": STRING,
            "analyst": STRING,
            "status": {"enum": [s.value for s in AccessRequestStatus]},
            "purpose": STRING,
            "columns": STRINGS,
            "modes": STRINGS,
            "epsilon": NUMBER,
            "days": INTEGER,
            "justification": STRING,
            "comment": STRING,
            "grant": {"anyOf": [ref("Grant"), {"type": "null"}], "description": "Once approved."},
            "created_at": TIME,
            "decided_at": MAYBE_TIME,
            "decided_by": nullable("string"),
        },
        required=("id", "dataset", "analyst", "status"),
    ),
    "ConsentChange": object_of({"dataset": STRING, "purpose": STRING, "records": INTEGER}),
    "ConsentImport": object_of({"dataset": STRING}, required=("dataset",)),
    "Import": object_of(
        {
            "id": STRING,
            "dataset": STRING,
            "mode": {"enum": [m.value for m in Mode]},
            "status": {"enum": [s.value for s in ImportStatus]},
            "tables": {"type": "array", "items": ANY_OBJECT},
            "published_number": nullable("integer"),
            "created_at": TIME,
            "updated_at": TIME,
        },
        required=("id", "dataset", "mode", "status", "tables"),
    ),
    "Usage": {"type": "object", "description": "Who used the dataset: grants, jobs, audit."},
    "AuditEntry": object_of(
        {
            "seq": INTEGER,
            "at": TIME,
            "actor": STRING,
            "action": STRING,
            "subject": nullable("string"),
            "details": ANY_OBJECT,
            "hash": STRING,
            "prev_hash": STRING,
        },
        required=("seq", "at", "actor", "action"),
    ),
    "AuditPage": object_of(
        {
            "entries": {"type": "array", "items": ref("AuditEntry")},
            "next_after_seq": nullable("integer"),
        },
        required=("entries",),
    ),
    "AuditVerification": object_of(
        {
            "ok": BOOLEAN,
            "entries": INTEGER,
            "checkpoints": INTEGER,
            "head": nullable("string"),
            "first_broken": nullable("integer"),
            "reason": nullable("string"),
        },
        required=("ok", "entries"),
    ),
    "ReleaseKey": object_of({"key_id": STRING, "algorithm": STRING, "public_key": STRING}),
    "Keyring": object_of(
        {
            "format": STRING,
            "algorithm": STRING,
            "current": STRING,
            "keys": {
                "type": "array",
                "items": object_of(
                    {
                        "key_id": STRING,
                        "algorithm": STRING,
                        "public_key": STRING,
                        "created_at": MAYBE_TIME,
                        "retired_at": MAYBE_TIME,
                    },
                    required=("key_id", "public_key"),
                ),
            },
        },
        required=("keys",),
    ),
    "Track": object_of(
        {
            "slug": STRING,
            "title": STRING,
            "title_en": STRING,
            "dataset": STRING,
            "dataset_version": STRING,
            "task": {"enum": list(TASKS)},
            "target": STRING,
            "metric": STRING,
            "features": STRINGS,
            "withheld": STRINGS,
            "event": nullable("string"),
            "has_baseline": BOOLEAN,
            "quotas": {"type": "object", "additionalProperties": INTEGER},
        },
        required=("slug", "title", "dataset", "task", "target", "metric"),
    ),
    "Contest": object_of(
        {
            "slug": STRING,
            "title": STRING,
            "title_en": STRING,
            "phase": {"enum": list(PHASES)},
            "max_team_size": INTEGER,
            "created_at": TIME,
            "tracks": {"type": "array", "items": ref("Track")},
        },
        required=("slug", "title", "phase", "tracks"),
    ),
    "Registration": object_of(
        {
            "id": INTEGER,
            "user": STRING,
            "real_name": STRING,
            "institution": STRING,
            "status": STRING,
            "decided_by": nullable("string"),
            "created_at": TIME,
        },
        required=("id", "user", "status"),
    ),
    "Team": object_of(
        {
            "id": STRING,
            "name": STRING,
            "captain": STRING,
            "members": {
                "type": "array",
                "items": object_of({"user": STRING, "status": STRING}),
            },
            "created_at": TIME,
            "disqualified_at": MAYBE_TIME,
            "disqualified_reason": STRING,
            "merged_into": nullable("string"),
            "merge_requested_into": nullable("string"),
            "merge_requests_from": {"type": "array"},
        },
        required=("id", "name", "captain", "members"),
    ),
    "TeamOrNone": object_of({"team": {"anyOf": [ref("Team"), {"type": "null"}]}}),
    "Merge": object_of({"merge": {"enum": ["requested", "merged"]}, "team": ref("Team")}),
    "Dispute": object_of(
        {
            "id": INTEGER,
            "kind": {"enum": list(KINDS)},
            "status": STRING,
            "text": STRING,
            "submission": nullable("string"),
            "team": STRING,
            "raised_by": nullable("string"),
            "decision": nullable("string"),
            "decided_by": nullable("string"),
            "created_at": TIME,
            "decided_at": MAYBE_TIME,
        },
        required=("id", "kind", "status", "text"),
    ),
    "Submission": object_of(
        {
            "id": STRING,
            "status": {"enum": [s.value for s in SubmissionStatus]},
            "team": STRING,
            "track": STRING,
            "code_sha256": STRING,
            "counted": BOOLEAN,
            "selected": BOOLEAN,
            "score": {"type": ["object", "number", "null"]},
            "final": {"type": ["object", "number", "null"]},
            "certificate": {"type": ["object", "string", "null"]},
            "error": {"type": ["object", "string", "null"]},
            "failed_in": nullable("string"),
            "smoke": {"type": ["object", "null"]},
            "created_at": TIME,
            "finished_at": MAYBE_TIME,
        },
        required=("id", "status", "team", "track"),
    ),
    "MySubmissions": object_of(
        {
            "team": STRING,
            "quotas": ANY_OBJECT,
            "submissions": {"type": "array", "items": ref("Submission")},
        },
        required=("submissions",),
    ),
    "Leaderboard": object_of(
        {
            "contest": STRING,
            "track": STRING,
            "phase": STRING,
            "metric": STRING,
            "rule": STRING,
            "higher_is_better": BOOLEAN,
            "public": {"type": "array", "items": ANY_OBJECT},
            "final": {"type": ["array", "object", "null"]},
        },
        required=("contest", "track", "public"),
    ),
    "TrackSchema": object_of(
        {"contest": STRING, "metric": STRING, "tables": {"type": "array", "items": ANY_OBJECT}},
        required=("contest", "tables"),
    ),
    "FinalScoring": object_of(
        {"queued": INTEGER, "submissions": {"type": "array"}}, required=("queued",)
    ),
    "FinalBoard": object_of(
        {"contest": STRING, "phase": STRING, "tracks": {"type": "array"}},
        required=("contest", "tracks"),
    ),
}

# --- request bodies ---------------------------------------------------------------------------

JOB_REQUEST = object_of(
    {
        "dataset": DATASET_NAME,
        "language": {"enum": list(LANGUAGES)},
        "mode": {"enum": list(MODES)},
        "code": TEXT
        | {"examples": ["SELECT district, COUNT(*) AS n FROM patients GROUP BY district"]},
        "epsilon": {"type": "number", "exclusiveMinimum": 0},
        "delta": {"type": "number", "minimum": 0},
        "rows_per_person": {"type": "integer", "minimum": 1},
    },
    required=("dataset", "language", "mode", "code"),
)
GRANT_REQUEST = object_of(
    {
        "dataset": DATASET_NAME,
        "analyst": TEXT | {"examples": ["analyst2"]},
        "modes": {"type": "array", "items": {"enum": list(MODES)}},
        "epsilon_total": {"type": "number", "exclusiveMinimum": 0},
        "max_epsilon_per_job": {"type": "number", "exclusiveMinimum": 0},
        "k_threshold": {"type": "integer", "minimum": 2, "maximum": MAX_K_THRESHOLD},
        "days": {"type": "integer", "minimum": 1, "maximum": MAX_GRANT_DAYS},
        "requires_review": BOOLEAN,
    },
    required=("dataset", "analyst"),
)
ACCESS_ASK = object_of(
    {
        "dataset": DATASET_NAME,
        "purpose": STRING,
        "columns": STRINGS,
        "modes": {"type": "array", "items": {"enum": list(MODES)}},
        "epsilon": {"type": "number", "minimum": 0},
        "days": {"type": "integer", "minimum": 1, "maximum": MAX_DAYS},
        "justification": STRING,
    },
    required=("dataset",),
)
APPROVAL = object_of(
    {
        "comment": STRING,
        "columns": STRINGS,
        "modes": {"type": "array", "items": {"enum": list(MODES)}},
        "epsilon": {"type": "number", "minimum": 0},
        "days": {"type": "integer", "minimum": 1},
        "k_threshold": {"type": "integer", "minimum": 1},
        "column_rules": ANY_OBJECT,
    },
    required=(),
)
TRACK_TERMS = object_of(
    {
        "slug": TEXT,
        "title": TEXT,
        "title_en": STRING,
        "dataset": DATASET_NAME,
        "task": {"enum": list(TASKS)},
        "target": TEXT,
        "metric": TEXT,
        "features": STRINGS,
        "withheld": STRINGS,
        "daily_quota": {"type": "integer", "minimum": 1, "maximum": MAX_QUOTA},
        "total_quota": {"type": "integer", "minimum": 1, "maximum": MAX_QUOTA},
        "max_running": {"type": "integer", "minimum": 1, "maximum": MAX_QUOTA},
        "event": STRING,
        "baseline": STRING,
    },
    required=("slug", "title", "dataset", "task", "target", "metric"),
)


def text_fields(*names: str) -> Schema:
    """A JSON object of required text fields."""
    return object_of(dict.fromkeys(names, TEXT))
