"""The JSON API (ARCHITECTURE.md, "HTTP API"). Views parse, authorize, call, serialize."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from portal.auth import requires, sandbox
from sandbox import catalog
from sandbox.access import consent, grants, requests, users
from sandbox.access import requests as access
from sandbox.dp.marginals import load_marginals
from sandbox.errors import InvalidRequest, Unauthenticated
from sandbox.integrity import audit, checkpoints
from sandbox.jobs import results, reviews
from sandbox.jobs import submit as submission
from sandbox.models import AccessRequest, Grant, Role, User

bp = Blueprint("api", __name__, url_prefix="/api/v1")
ANY_ROLE = ()


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def _field(body: dict[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise InvalidRequest(f"{name} must be a {kind.__name__}.", field=name)
    return value


def _privacy_numbers(body: dict[str, Any]) -> tuple[Any, Any]:
    epsilon, delta = body.get("epsilon"), body.get("delta")
    for name, value in (("epsilon", epsilon), ("delta", delta)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InvalidRequest(f"{name} must be a number.", field=name)
    return epsilon, delta


@bp.post("/auth/token")
def token() -> Any:
    body = _body()
    username = _field(body, "username", str)
    password = _field(body, "password", str)
    failure: Unauthenticated | None = None
    with sandbox().tx() as db:
        try:
            user = users.authenticate(db, username=username, password=password)
        except Unauthenticated as error:
            failure = error  # raised after the commit, so the audit keeps the failed login
        else:
            issued = users.issue_token(db, user=user)
    if failure is not None:
        raise failure
    return jsonify(token=issued, role=user.role)


@bp.get("/datasets")
@requires(*ANY_ROLE)
def datasets() -> Any:
    with sandbox().tx() as db:
        return jsonify(datasets=catalog.catalog(db))


@bp.get("/datasets/<name>")
@requires(*ANY_ROLE)
def dataset(name: str) -> Any:
    return jsonify(catalog.dataset_schema(name))


@bp.get("/datasets/<name>/mock")
@requires(*ANY_ROLE)
def mock(name: str) -> Any:
    marginals = load_marginals(sandbox().settings.instance, name)
    csv = catalog.mock_csv(
        name, table=request.args.get("table"), rows=request.args.get("rows"), marginals=marginals
    )
    return Response(csv, mimetype="text/csv; charset=utf-8")


@bp.post("/datasets/<name>/consents/withdraw")
@requires(Role.OWNER, Role.ADMIN)
def withdraw_consent(name: str) -> Any:
    return _change_consent(consent.withdraw_consent, name)


@bp.post("/datasets/<name>/consents/give")
@requires(Role.OWNER, Role.ADMIN)
def give_consent(name: str) -> Any:
    return _change_consent(consent.give_consent, name)


def _change_consent(change: Callable[..., int], dataset: str) -> Any:
    """One person's consent (个人授权) to one purpose: ``{person_id, purpose}``."""
    body = _body()
    person_id = body.get("person_id")
    if isinstance(person_id, bool) or not isinstance(person_id, str | int):
        raise InvalidRequest("person_id must be a string.", field="person_id")
    purpose = _field(body, "purpose", str)
    with sandbox().tx() as db:
        records = change(
            db,
            by=db.get_one(User, g.user_id),
            dataset=dataset,
            person_id=str(person_id),
            purpose=purpose,
        )
    return jsonify(dataset=dataset, purpose=purpose, records=records)


@bp.post("/jobs")
@requires(Role.ANALYST)
def submit() -> Any:
    body = _body()
    epsilon, delta = _privacy_numbers(body)
    job = submission.submit(
        sandbox(),
        by_id=g.user_id,
        dataset=_field(body, "dataset", str),
        language=_field(body, "language", str),
        mode=_field(body, "mode", str),
        code=_field(body, "code", str),
        epsilon=epsilon,
        delta=delta,
        rows_per_person=_field(body, "rows_per_person", int, required=False),
        enqueue=current_app.extensions["enqueue"],
    )
    return jsonify(id=job.id, status=job.status), 202


@bp.get("/jobs")
@requires(Role.ANALYST)
def my_jobs() -> Any:
    with sandbox().tx() as db:
        return jsonify(
            jobs=[
                results.job_status(j, role=g.role) for j in results.jobs_of(db, user_id=g.user_id)
            ]
        )


@bp.get("/jobs/<job_id>")
@requires(*ANY_ROLE)
def job(job_id: str) -> Any:
    with sandbox().tx() as db:
        found = results.job_for(db, job_id, user_id=g.user_id, role=g.role)
        return jsonify(results.job_status(found, role=g.role))


@bp.get("/jobs/<job_id>/result")
@requires(Role.ANALYST)
def result(job_id: str) -> Any:
    with sandbox().tx() as db:
        found = results.job_for(db, job_id, user_id=g.user_id, role=g.role)
        data = results.job_result(found, user_id=g.user_id)
        wanted = request.args.get("format", "json")
        if wanted not in ("json", "csv"):
            raise InvalidRequest("format must be json or csv.", field="format")
        csv = results.result_csv(data, table=request.args.get("table")) if wanted == "csv" else None
        audit.append(
            db,
            actor=g.username,
            action="result.downloaded",
            subject=job_id,
            details={"format": wanted},
        )
    if csv is not None:
        return Response(csv, mimetype="text/csv; charset=utf-8")
    return jsonify(data)


@bp.post("/policy/check")
@requires(Role.ANALYST)
def policy_check() -> Any:
    """Dry run: every finding at once, without queueing a job or spending budget."""
    body = _body()
    epsilon, delta = _privacy_numbers(body)
    with sandbox().tx() as db:
        report = submission.dry_run(
            db,
            by=db.get_one(User, g.user_id),
            dataset=_field(body, "dataset", str),
            language=_field(body, "language", str),
            mode=_field(body, "mode", str),
            code=_field(body, "code", str),
            epsilon=epsilon,
            delta=delta,
            rows_per_person=_field(body, "rows_per_person", int, required=False),
        )
    return jsonify(report)


@bp.get("/budget")
@requires(Role.ANALYST)
def budget() -> Any:
    with sandbox().tx() as db:
        return jsonify(budgets=grants.budgets(db, user_id=g.user_id))


@bp.get("/grants")
@requires(Role.OWNER, Role.ADMIN)
def list_grants() -> Any:
    with sandbox().tx() as db:
        return jsonify(grants=[grants.grant_view(x) for x in db.query(Grant).all()])


@bp.post("/grants")
@requires(Role.OWNER, Role.ADMIN)
def create_grant() -> Any:
    body = _body()
    modes = body.get("modes", ["dp", "masked"])
    if not isinstance(modes, list) or not all(isinstance(m, str) for m in modes):
        raise InvalidRequest("modes must be a list of strings.", field="modes")
    numbers = {}
    for name, default in (
        ("epsilon_total", 10.0),
        ("max_epsilon_per_job", 2.0),
        ("k_threshold", 10),
        ("days", 90),
    ):
        value = body.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest(f"{name} must be a number.", field=name)
        numbers[name] = value
    with sandbox().tx() as db:
        owner = db.get_one(User, g.user_id)
        analyst = users.user_named(db, _field(body, "analyst", str))
        grant = grants.grant_access(
            db,
            by=owner,
            dataset=_field(body, "dataset", str),
            analyst=analyst,
            modes=modes,
            epsilon_total=float(numbers["epsilon_total"]),
            max_epsilon_per_job=float(numbers["max_epsilon_per_job"]),
            k_threshold=int(numbers["k_threshold"]),
            days=int(numbers["days"]),
            requires_review=bool(body.get("requires_review", False)),
        )
        return jsonify(grants.grant_view(grant)), 201


@bp.delete("/grants/<grant_id>")
@requires(Role.OWNER, Role.ADMIN)
def revoke(grant_id: str) -> Any:
    with sandbox().tx() as db:
        grant = grants.revoke_grant(db, by=db.get_one(User, g.user_id), grant_id=grant_id)
        return jsonify(grants.grant_view(grant))


@bp.get("/access-requests")
@requires(Role.ANALYST, Role.OWNER, Role.ADMIN)
def list_access_requests() -> Any:
    with sandbox().tx() as db:
        found = access.list_requests(
            db, user=db.get_one(User, g.user_id), status=request.args.get("status")
        )
        return jsonify(access_requests=[requests.access_request_view(db, r) for r in found])


@bp.post("/access-requests")
@requires(Role.ANALYST)
def file_access_request() -> Any:
    body = _body()
    with sandbox().tx() as db:
        filed = access.request_access(
            db,
            by=db.get_one(User, g.user_id),
            dataset=_field(body, "dataset", str),
            purpose=body.get("purpose", ""),
            columns=body.get("columns", []),
            modes=body.get("modes", []),
            epsilon=body.get("epsilon", 0.0),
            days=body.get("days", 90),
            justification=body.get("justification", ""),
        )
        return jsonify(requests.access_request_view(db, filed)), 201


@bp.post("/access-requests/<request_id>/approve")
@requires(Role.OWNER, Role.ADMIN)
def approve_access_request(request_id: str) -> Any:
    body = _body()  # {} approves the request as filed; the action checks each field's type
    with sandbox().tx() as db:
        access.approve_request(
            db,
            by=db.get_one(User, g.user_id),
            request_id=request_id,
            comment=body.get("comment", ""),
            columns=body.get("columns"),
            modes=body.get("modes"),
            epsilon=body.get("epsilon"),
            days=body.get("days"),
            k_threshold=body.get("k_threshold"),
            column_rules=body.get("column_rules"),
        )
        return jsonify(requests.access_request_view(db, db.get_one(AccessRequest, request_id)))


@bp.post("/access-requests/<request_id>/deny")
@requires(Role.OWNER, Role.ADMIN)
def deny_access_request(request_id: str) -> Any:
    body = _body()
    with sandbox().tx() as db:
        denied = access.deny_request(
            db,
            by=db.get_one(User, g.user_id),
            request_id=request_id,
            comment=body.get("comment", ""),
        )
        return jsonify(requests.access_request_view(db, denied))


@bp.get("/reviews")
@requires(Role.AUDITOR, Role.ADMIN)
def list_reviews() -> Any:
    """The queue of held jobs, oldest first; outputs only on each job's own review."""
    with sandbox().tx() as db:
        return jsonify(reviews=reviews.queue(db, viewer=db.get_one(User, g.user_id)))


@bp.get("/reviews/<job_id>")
@requires(Role.AUDITOR, Role.ADMIN)
def review_detail(job_id: str) -> Any:
    with sandbox().tx() as db:
        return jsonify(reviews.open_review(db, by=db.get_one(User, g.user_id), job_id=job_id))


@bp.post("/reviews/<job_id>")
@requires(Role.AUDITOR)
def review(job_id: str) -> Any:
    """``{decision: approve|withhold, comment}``; the comment is required."""
    body = _body()
    with sandbox().tx() as db:
        reviewed = reviews.review_job(
            sandbox(),
            db,
            by=db.get_one(User, g.user_id),
            job_id=job_id,
            decision=_field(body, "decision", str),
            comment=_field(body, "comment", str),
        )
        return jsonify(reviews.review_state(db, reviewed))


@bp.post("/jobs/<job_id>/objection")
@requires(Role.ANALYST)
def object_to_review(job_id: str) -> Any:
    """The analyst's objection (异议) to a withheld output: ``{reason}``."""
    body = _body()
    with sandbox().tx() as db:
        job = reviews.file_objection(
            db, by=db.get_one(User, g.user_id), job_id=job_id, reason=_field(body, "reason", str)
        )
        return jsonify(id=job.id, status=job.status, review=reviews.analyst_view(db, job))


@bp.get("/jobs/<job_id>/review")
@requires(Role.ANALYST)
def job_review(job_id: str) -> Any:
    """The review of the analyst's own job: decisions and comments, never the held output."""
    with sandbox().tx() as db:
        found = results.job_for(db, job_id, user_id=g.user_id, role=g.role)
        return jsonify(id=found.id, status=found.status, review=reviews.analyst_view(db, found))


@bp.patch("/datasets/<name>")
@requires(Role.OWNER, Role.ADMIN)
def update_dataset(name: str) -> Any:
    """The owner's settings for a dataset: ``{reviewers_required: 1|2}``."""
    body = _body()
    if "reviewers_required" not in body:
        raise InvalidRequest("Send reviewers_required (1 or 2).", field="reviewers_required")
    with sandbox().tx() as db:
        record = reviews.set_reviewers_required(
            db, by=db.get_one(User, g.user_id), dataset=name, count=body["reviewers_required"]
        )
        return jsonify(reviews.dataset_settings(record))


@bp.get("/audit/verify")
@requires(Role.AUDITOR, Role.ADMIN)
def audit_verify() -> Any:
    return jsonify(checkpoints.verify_chain(sandbox()).to_dict())


@bp.get("/keys/release")
def release_key() -> Any:
    key = sandbox().release_key
    return jsonify(key_id=key.key_id, algorithm="Ed25519", public_key=key.public_pem)


@bp.get("/audit")
@requires(Role.AUDITOR, Role.ADMIN)
def audit_entries() -> Any:
    """``?actor=&action=&subject=&since=&until=&limit=&after_seq=``, oldest first."""
    filters = audit.AuditFilter.from_args(request.args)
    with sandbox().tx() as db:
        return jsonify(audit.browse(db, filters).to_dict())


@bp.get("/release-keys")
def release_keys() -> Any:
    """The public keyring (current and retired signing keys): verifies any certificate
    offline, e.g. with ``sandbox verify-release CERT --keys release-keys.json``."""
    return jsonify(sandbox().signing_keys.public_keyring().to_dict())
