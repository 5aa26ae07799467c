"""The JSON API (ARCHITECTURE.md, "HTTP API"). Views parse, call one action, serialize."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from portal.auth import login_required, sandbox
from portal.json_body import json_object
from portal.security import client_address
from sandbox import catalog
from sandbox.access import consent, grants, requests, users
from sandbox.errors import InvalidRequest
from sandbox.integrity import audit
from sandbox.integrity.audit_log import browse_audit, verify_audit
from sandbox.jobs import results, reviews
from sandbox.jobs import submit as submission
from sandbox.jobs.planning import JobRequest

bp = Blueprint("api", __name__, url_prefix="/api/v1")
GRANT_NUMBERS = ("epsilon_total", "max_epsilon_per_job", "k_threshold", "days")


def _field(body: dict[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise InvalidRequest(f"{name} must be a {kind.__name__}.", field=name)
    return value


def _number(body: dict[str, Any], name: str) -> Any:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise InvalidRequest(f"{name} must be a number.", field=name)
    return value


def _job_request(body: dict[str, Any]) -> JobRequest:
    return JobRequest(
        dataset=_field(body, "dataset", str),
        language=_field(body, "language", str),
        mode=_field(body, "mode", str),
        code=_field(body, "code", str),
        epsilon=_number(body, "epsilon"),
        delta=_number(body, "delta"),
        rows_per_person=_field(body, "rows_per_person", int, required=False),
    )


@bp.post("/auth/token")
def token() -> Any:
    """``{username, password, label?, lifetime_days?}`` -> ``{token, id, expires_at}``;
    401 when wrong, 429 (Retry-After) while the account or the address is throttled."""
    body = json_object()
    issued = users.log_in_for_token(
        sandbox(),
        username=_field(body, "username", str),
        password=_field(body, "password", str),
        address=client_address(),
        label=body.get("label", ""),
        lifetime_days=body.get("lifetime_days"),
    )
    response = jsonify(issued)
    response.headers["Cache-Control"] = "no-store"  # the token is shown this once
    return response


@bp.get("/tokens")
@login_required
def list_tokens() -> Any:
    """The caller's API tokens; an admin's ``?user=NAME`` one user's, ``?user=*`` all."""
    return jsonify(tokens=users.list_tokens(sandbox(), by=g.actor, user=request.args.get("user")))


@bp.delete("/tokens/<int:token_id>")
@login_required
def revoke_token(token_id: int) -> Any:
    return jsonify(users.revoke_token(sandbox(), by=g.actor, token_id=token_id))


@bp.get("/datasets")
@login_required
def datasets() -> Any:
    return jsonify(datasets=catalog.list_datasets(sandbox()))


@bp.get("/datasets/<name>")
@login_required
def dataset(name: str) -> Any:
    return jsonify(catalog.dataset_schema(sandbox(), name))


@bp.get("/datasets/<name>/mock")
@login_required
def mock(name: str) -> Any:
    csv = catalog.mock_rows(
        sandbox(), name, table=request.args.get("table"), rows=request.args.get("rows")
    )
    return Response(csv, mimetype="text/csv")


@bp.post("/datasets/<name>/consents/withdraw")
@login_required
def withdraw_consent(name: str) -> Any:
    """One person's consent (个人授权) to one purpose ends: ``{person_id, purpose}``."""
    person_id, purpose = _consent_body()
    records = consent.withdraw_consent(
        sandbox(), by=g.actor, dataset=name, person_id=person_id, purpose=purpose
    )
    return jsonify(dataset=name, purpose=purpose, records=records)


@bp.post("/datasets/<name>/consents/give")
@login_required
def give_consent(name: str) -> Any:
    """One person's consent (个人授权) to one purpose: ``{person_id, purpose}``."""
    person_id, purpose = _consent_body()
    records = consent.give_consent(
        sandbox(), by=g.actor, dataset=name, person_id=person_id, purpose=purpose
    )
    return jsonify(dataset=name, purpose=purpose, records=records)


def _consent_body() -> tuple[str, str]:
    body = json_object()
    person_id = body.get("person_id")
    if isinstance(person_id, bool) or not isinstance(person_id, str | int):
        raise InvalidRequest("person_id must be a string.", field="person_id")
    return str(person_id), _field(body, "purpose", str)


@bp.post("/jobs")
@login_required
def submit() -> Any:
    job = submission.submit_job(
        sandbox(),
        by=g.actor,
        request=_job_request(json_object()),
        enqueue=current_app.extensions["enqueue"],
    )
    return jsonify(id=job.id, status=job.status), 202


@bp.get("/jobs")
@login_required
def my_jobs() -> Any:
    return jsonify(jobs=results.my_jobs(sandbox(), by=g.actor))


@bp.get("/jobs/<job_id>")
@login_required
def job(job_id: str) -> Any:
    return jsonify(results.job_status_for(sandbox(), by=g.actor, job_id=job_id))


@bp.get("/jobs/<job_id>/result")
@login_required
def result(job_id: str) -> Any:
    answer = results.read_result(
        sandbox(),
        by=g.actor,
        job_id=job_id,
        format=request.args.get("format", "json"),
        table=request.args.get("table"),
    )
    if isinstance(answer, str):
        return Response(answer, mimetype="text/csv")
    return jsonify(answer)


@bp.post("/policy/check")
@login_required
def policy_check() -> Any:
    """Dry run: every finding at once, without queueing a job or spending budget."""
    return jsonify(submission.check_job(sandbox(), by=g.actor, request=_job_request(json_object())))


@bp.get("/budget")
@login_required
def budget() -> Any:
    return jsonify(budgets=grants.budgets(sandbox(), by=g.actor))


@bp.get("/grants")
@login_required
def list_grants() -> Any:
    return jsonify(grants=grants.list_grants(sandbox(), by=g.actor))


@bp.post("/grants")
@login_required
def create_grant() -> Any:
    """``{dataset, analyst, modes?, epsilon_total?, max_epsilon_per_job?, k_threshold?, days?,
    requires_review?}``; what is left out takes the defaults of ``grants.GrantTerms``."""
    body = json_object()
    modes = body.get("modes", list(grants.MODES))
    if not isinstance(modes, list) or not all(isinstance(m, str) for m in modes):
        raise InvalidRequest("modes must be a list of strings.", field="modes")
    terms = replace(
        grants.GrantTerms(modes=tuple(modes), requires_review=bool(body.get("requires_review"))),
        **{name: _number(body, name) for name in GRANT_NUMBERS if body.get(name) is not None},
    )
    grant = grants.grant_access(
        sandbox(),
        by=g.actor,
        dataset=_field(body, "dataset", str),
        analyst=_field(body, "analyst", str),
        terms=terms,
    )
    return jsonify(grant), 201


@bp.delete("/grants/<grant_id>")
@login_required
def revoke(grant_id: str) -> Any:
    return jsonify(grants.revoke_grant(sandbox(), by=g.actor, grant_id=grant_id))


@bp.get("/access-requests")
@login_required
def list_access_requests() -> Any:
    found = requests.list_requests(sandbox(), by=g.actor, status=request.args.get("status"))
    return jsonify(access_requests=found)


@bp.post("/access-requests")
@login_required
def file_access_request() -> Any:
    body = json_object()
    ask = requests.AccessAsk(
        dataset=_field(body, "dataset", str),
        purpose=body.get("purpose", ""),
        columns=body.get("columns", []),
        modes=body.get("modes", []),
        epsilon=body.get("epsilon", 0.0),
        days=body.get("days", 90),
        justification=body.get("justification", ""),
    )
    return jsonify(requests.request_access(sandbox(), by=g.actor, ask=ask)), 201


@bp.post("/access-requests/<request_id>/approve")
@login_required
def approve_access_request(request_id: str) -> Any:
    body = json_object()  # {} approves the request as filed; the action checks each field's type
    approval = requests.Approval(
        comment=body.get("comment", ""),
        columns=body.get("columns"),
        modes=body.get("modes"),
        epsilon=body.get("epsilon"),
        days=body.get("days"),
        k_threshold=body.get("k_threshold"),
        column_rules=body.get("column_rules"),
    )
    return jsonify(
        requests.approve_request(sandbox(), by=g.actor, request_id=request_id, approval=approval)
    )


@bp.post("/access-requests/<request_id>/deny")
@login_required
def deny_access_request(request_id: str) -> Any:
    comment = json_object().get("comment", "")
    return jsonify(
        requests.deny_request(sandbox(), by=g.actor, request_id=request_id, comment=comment)
    )


@bp.get("/reviews")
@login_required
def list_reviews() -> Any:
    """The queue of held jobs, oldest first; outputs only on each job's own review."""
    return jsonify(reviews=reviews.queue(sandbox(), by=g.actor))


@bp.get("/reviews/<job_id>")
@login_required
def review_detail(job_id: str) -> Any:
    return jsonify(reviews.open_review(sandbox(), by=g.actor, job_id=job_id))


@bp.post("/reviews/<job_id>")
@login_required
def review(job_id: str) -> Any:
    """``{decision: approve|withhold, comment}``; the comment is required."""
    body = json_object()
    state = reviews.review_job(
        sandbox(),
        by=g.actor,
        job_id=job_id,
        decision=_field(body, "decision", str),
        comment=_field(body, "comment", str),
    )
    return jsonify(state)


@bp.post("/jobs/<job_id>/objection")
@login_required
def object_to_review(job_id: str) -> Any:
    """The analyst's objection (异议) to a withheld output: ``{reason}``."""
    reason = _field(json_object(), "reason", str)
    return jsonify(reviews.file_objection(sandbox(), by=g.actor, job_id=job_id, reason=reason))


@bp.get("/jobs/<job_id>/review")
@login_required
def job_review(job_id: str) -> Any:
    """The review of the analyst's own job: decisions and comments, never the held output."""
    return jsonify(results.review_for_analyst(sandbox(), by=g.actor, job_id=job_id))


@bp.patch("/datasets/<name>")
@login_required
def update_dataset(name: str) -> Any:
    """The owner's review settings for a dataset: ``{reviewers_required?: 1|2,
    unverified_reviewers_required?: 1|2}``, at least one; answers the dataset's settings."""
    return jsonify(
        reviews.set_review_quorum(sandbox(), by=g.actor, dataset=name, settings=json_object())
    )


@bp.get("/audit/verify")
@login_required
def audit_verify() -> Any:
    return jsonify(verify_audit(sandbox(), by=g.actor))


@bp.get("/keys/release")
def release_key() -> Any:
    key = sandbox().release_key
    return jsonify(key_id=key.key_id, algorithm="Ed25519", public_key=key.public_pem)


@bp.get("/audit")
@login_required
def audit_entries() -> Any:
    """``?actor=&action=&subject=&since=&until=&limit=&after_seq=``, oldest first."""
    page, _ = browse_audit(sandbox(), by=g.actor, filters=audit.AuditFilter.from_args(request.args))
    return jsonify(page.to_dict())


@bp.get("/release-keys")
def release_keys() -> Any:
    """The public keyring (current and retired signing keys): verifies any certificate
    offline, e.g. with ``sandbox verify-release CERT --keys release-keys.json``."""
    return jsonify(sandbox().signing_keys.public_keyring().to_dict())
