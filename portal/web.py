"""The web pages: server-rendered, Chinese first. Views parse, authorize, call, render.

Everything shown comes from ``sandbox.catalog``; a job is submitted through
``sandbox.jobs.submit`` exactly as the JSON API does. No view shows a job's log.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from policies.permissions import (
    user_may_bring_datasets,
    user_may_list_tokens_of_others,
    user_may_read_audit,
    user_may_read_held_outputs,
    user_may_request_access,
    user_may_submit_jobs,
)
from portal import charts
from portal.auth import allowed, login_required, sandbox, session_actor
from portal.i18n import LANGUAGES, language
from portal.security import client_address
from sandbox import catalog
from sandbox.access import grants, requests, users
from sandbox.errors import (
    InvalidRequest,
    PolicyRejected,
    SandboxError,
    TooManyRequests,
    Unauthenticated,
)
from sandbox.integrity import audit
from sandbox.integrity.audit_log import browse_audit
from sandbox.jobs import planning, results, reviews, submit
from sandbox.models import JobStatus

log = logging.getLogger(__name__)
bp = Blueprint("web", __name__)

CSRF_FIELD = "csrf_token"
REFRESH_SECONDS = 2
# A job waiting for an auditor may wait for hours: poll gently.
REVIEW_REFRESH_SECONDS = 30
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


# --- session helpers ---------------------------------------------------------------------


def csrf_token() -> str:
    """This session's form token; made on first use."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


@bp.before_request
def _check_csrf() -> None:
    if request.method not in UNSAFE_METHODS:
        return
    expected = session.get("csrf", "")
    sent = request.form.get(CSRF_FIELD, "")
    if not expected or not secrets.compare_digest(sent.encode(), str(expected).encode()):
        abort(400, gettext("error.csrf"))


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return url_for("web.home")
    # Browsers drop tabs and newlines and read "\\" as "/": "/\t/evil" is "//evil".
    if "\\" in target or not target.isprintable() or " " in target:
        return url_for("web.home")
    return target


def _here() -> str:
    """This page's address, to come back to (after a login, a language switch). A page
    shown in answer to a form's POST comes back to the form's page instead: the POST
    address answers GET with 405."""
    if request.method == "GET":
        return request.full_path.rstrip("?")
    referrer = urlsplit(request.referrer or "")
    if referrer.netloc == request.host and referrer.path.startswith("/"):
        return referrer.path + (f"?{referrer.query}" if referrer.query else "")
    return "/"


@bp.app_context_processor
def _template_helpers() -> dict[str, Any]:
    return {
        "lang": language(),
        "csrf_field": CSRF_FIELD,
        "csrf_token": csrf_token,
        "current_user": (
            {"username": session["username"], "role": session["role"]}
            if "user_id" in session
            else None
        ),
        "can": _what_the_user_can(),
        "here": _here,
    }


def _what_the_user_can() -> dict[str, bool]:
    """What the navigation offers, from the same permissions the actions check."""
    actor = session_actor()
    if actor is None:
        return {}
    return {
        "submit_jobs": user_may_submit_jobs(actor),
        "read_audit": user_may_read_audit(actor),
        "review": user_may_read_held_outputs(actor),
        "bring_datasets": user_may_bring_datasets(actor),
        "request_access": user_may_request_access(actor),
    }


@bp.app_template_global("elapsed")
def _elapsed(start: str | None, end: str | None) -> str:
    if not start or not end:
        return ""
    seconds = (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()
    return f"{seconds:.1f} s"


@bp.app_template_filter("bound")
def _bound(value: float) -> str:
    """A manifest bound as written: 1920, 0.5, 50000."""
    return f"{value:.10g}" if isinstance(value, float) else str(value)


# --- errors: pages, not JSON ---------------------------------------------------------------


@bp.errorhandler(Unauthenticated)
def _log_in_first(error: Unauthenticated) -> Response:
    return redirect(url_for("web.login", next=_here()))


@bp.errorhandler(SandboxError)
def _sandbox_error(error: SandboxError) -> tuple[str, int]:
    return render_template("error.html", status=error.status, message=error.message), error.status


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> tuple[str, int]:
    status = error.code or 500
    # Werkzeug's own description is English: the page words the status instead.
    custom = error.description != type(error).description
    message = error.description if custom and status != 404 else None
    return render_template("error.html", status=status, message=message), status


@bp.errorhandler(Exception)
def _unexpected(error: Exception) -> tuple[str, int]:
    # The detail goes to the server log only; it may hold values from the data.
    log.exception("unexpected error on %s %s", request.method, request.path)
    return render_template("error.html", status=500, message=None), 500


# --- pages ------------------------------------------------------------------------------------


@bp.get("/lang/<any(zh, en):lang>")
def switch_language(lang: str) -> Response:
    assert lang in LANGUAGES
    session["lang"] = lang
    return redirect(_safe_next(request.args.get("next")))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("login.html", next_url=next_url, username="")
    username = request.form.get("username", "").strip()
    try:
        actor = users.log_in(
            sandbox(),
            username=username,
            password=request.form.get("password", ""),
            address=client_address(),
        )
    except Unauthenticated:
        page = render_template(
            "login.html", next_url=next_url, username=username, error=gettext("login.failed")
        )
        return page, 401
    except TooManyRequests as refusal:  # locked, or this address failed too often
        seconds = refusal.details["retry_after"]
        if refusal.details.get("rule") == "auth.account_locked":
            error = gettext("login.account_locked", seconds=seconds)
        else:
            error = gettext("login.address_throttled", seconds=seconds)
        page = render_template("login.html", next_url=next_url, username=username, error=error)
        return page, refusal.status, {"Retry-After": str(seconds)}
    chosen = session.get("lang")
    session.clear()  # a fresh session (and CSRF token) for the logged-in user
    session.update({"user_id": actor.id, "role": actor.role, "username": actor.username})
    if chosen in LANGUAGES:
        session["lang"] = chosen
    return redirect(next_url, 303)


@bp.post("/logout")
def logout() -> Response:
    chosen = session.get("lang")
    session.clear()
    if chosen in LANGUAGES:
        session["lang"] = chosen
    return redirect(url_for("web.login"), 303)


# --- API tokens ----------------------------------------------------------------------------


@bp.route("/tokens", methods=["GET", "POST"])
@login_required
def tokens() -> Any:
    """The person's API tokens (an admin's: everyone's), to revoke; a POST issues one,
    shown on this answer only."""
    if request.method == "GET":
        return _tokens_page()
    form = {name: request.form.get(name, "").strip() for name in ("label", "lifetime_days")}
    try:
        issued = users.issue_api_token(
            sandbox(),
            by=g.actor,
            label=form["label"],
            lifetime_days=_lifetime_days(form["lifetime_days"]),
        )
    except InvalidRequest as error:
        return _tokens_page(form=form, error=error.message), error.status
    page = _tokens_page(issued=issued)
    # The new token is in this page: no cache keeps it.
    return page, 201, {"Cache-Control": "no-store"}


@bp.post("/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int) -> Response:
    users.revoke_token(sandbox(), by=g.actor, token_id=token_id)
    return redirect(url_for("web.tokens"), 303)


def _lifetime_days(raw: str) -> int | None:
    if not raw:
        return None
    limit = sandbox().settings.token_lifetime_days
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= limit:
        raise InvalidRequest(gettext("tokens.bad_lifetime", limit=limit), field="lifetime_days")
    return int(raw)


def _tokens_page(**extra: Any) -> str:
    everyone = user_may_list_tokens_of_others(g.actor)
    found = users.list_tokens(sandbox(), by=g.actor, user=users.ALL_USERS if everyone else None)
    now = dt.datetime.now(dt.UTC)
    for token in found:
        expired = dt.datetime.fromisoformat(token["expires_at"]) <= now
        token["state"] = "revoked" if token["revoked_at"] else "expired" if expired else "active"
    extra.setdefault("form", {"label": "", "lifetime_days": ""})
    return render_template(
        "tokens.html",
        tokens=found,
        everyone=everyone,
        max_days=sandbox().settings.token_lifetime_days,
        **extra,
    )


@bp.get("/")
@login_required
def home() -> str:
    return render_template(
        "catalog.html",
        datasets=catalog.list_datasets(sandbox()),
        budgets=grants.budgets(sandbox(), by=g.actor),
    )


@bp.get("/datasets/<name>")
@login_required
def dataset(name: str) -> str:
    return dataset_page(name)


def dataset_page(name: str, **extra: Any) -> str:
    """The schema; an analyst also finds their requests for access and the form to ask."""
    schema = catalog.dataset_schema(sandbox(), name)
    mine = []
    if user_may_request_access(g.actor):
        mine = [r for r in requests.list_requests(sandbox(), by=g.actor) if r["dataset"] == name]
    return render_template("dataset.html", schema=schema, my_requests=mine, **extra)


def _epsilon(raw: str) -> float | None:
    if not raw.strip():
        return None
    try:
        return float(raw)
    except ValueError as error:
        raise InvalidRequest(gettext("new.bad_epsilon"), field="epsilon") from error


def _rows_per_person(raw: str) -> int | None:
    if not raw.strip():
        return None
    try:
        return int(raw)
    except ValueError as error:
        raise InvalidRequest(gettext("new.bad_rows_per_person"), field="rows_per_person") from error


def _job_form(form: dict[str, str], **extra: Any) -> str:
    return render_template(
        "job_new.html",
        form=form,
        datasets=catalog.list_datasets(sandbox()),
        budgets=grants.budgets(sandbox(), by=g.actor),
        default_epsilon=planning.DEFAULT_EPSILON,
        **extra,
    )


@bp.route("/jobs/new", methods=["GET", "POST"])
@login_required
@allowed(user_may_submit_jobs)
def new_job() -> Any:
    source = request.form if request.method == "POST" else request.args
    form = {
        "dataset": source.get("dataset", "health"),
        "mode": source.get("mode", "masked"),
        "language": source.get("language", "sql"),
        "code": source.get("code", ""),
        "epsilon": source.get("epsilon", ""),
        "rows_per_person": source.get("rows_per_person", ""),
    }
    if request.method == "GET":
        return _job_form(form)
    dp = form["mode"] == "dp"
    try:
        job_request = planning.JobRequest(
            dataset=form["dataset"],
            language=form["language"],
            mode=form["mode"],
            code=form["code"],
            epsilon=_epsilon(form["epsilon"]) if dp else None,
            rows_per_person=_rows_per_person(form["rows_per_person"]) if dp else None,
        )
        job = submit.submit_job(
            sandbox(), by=g.actor, request=job_request, enqueue=current_app.extensions["enqueue"]
        )
    except PolicyRejected as rejection:
        findings = rejection.details.get("findings", [])
        return _job_form(form, error=rejection.message, findings=findings), rejection.status
    except SandboxError as error:  # no grant, a bad field: say so next to the kept form
        return _job_form(form, error=error.message), error.status
    return redirect(url_for("web.job", job_id=job.id), 303)


@bp.get("/jobs")
@login_required
@allowed(user_may_submit_jobs)
def my_jobs() -> str:
    return render_template("jobs.html", jobs=results.my_jobs(sandbox(), by=g.actor))


@bp.get("/jobs/<job_id>")
@login_required
def job(job_id: str) -> str:
    page = results.job_page(sandbox(), by=g.actor, job_id=job_id)
    status = page["job"]
    if page["final"]:
        refresh = None
    elif status["status"] == JobStatus.PENDING_REVIEW:
        refresh = REVIEW_REFRESH_SECONDS
    else:
        refresh = REFRESH_SECONDS
    return render_template(
        "job.html",
        job=status,
        result=page["result"],
        mine=page["mine"],
        code=page["code"],
        refresh_seconds=refresh,
        review=page["review"],
        charts=charts.result_charts(page["result"], request.args),
    )


@bp.get("/audit")
@login_required
@allowed(user_may_read_audit)
def audit_log() -> Any:
    """The audit log for auditors: filter, then page forward (oldest first)."""
    form = {name: request.args.get(name, "") for name in audit.AuditFilter.__dataclass_fields__}
    try:
        filters = audit.AuditFilter.from_args(request.args)
    except InvalidRequest as error:
        page = render_template("audit.html", form=form, error=error.message, entries=[])
        return page, error.status
    found, last_seq = browse_audit(sandbox(), by=g.actor, filters=filters)
    args: dict[str, Any] = filters.to_args()
    next_url = None
    if found.next_after_seq is not None:
        next_url = url_for("web.audit_log", **args, after_seq=found.next_after_seq)
    # Unfiltered, the newest page is one keyset jump away.
    latest_url = None
    if not args and last_seq > filters.limit:
        latest_url = url_for("web.audit_log", after_seq=last_seq - filters.limit)
    return render_template(
        "audit.html",
        form=form,
        entries=found.entries,
        next_url=next_url,
        first_url=url_for("web.audit_log", **args) if filters.after_seq else None,
        latest_url=latest_url,
        total=last_seq,
    )


# --- auditor review -----------------------------------------------------------------------------


@bp.get("/reviews")
@login_required
def review_queue() -> str:
    return render_template("reviews.html", reviews=reviews.queue(sandbox(), by=g.actor))


@bp.route("/reviews/<job_id>", methods=["GET", "POST"])
@login_required
def review_page(job_id: str) -> Any:
    """A held job's code, outputs, findings and history; auditors decide on it here."""
    if request.method == "GET":
        return _review_page(job_id)
    form = {name: request.form.get(name, "") for name in ("decision", "comment")}
    try:
        reviews.review_job(
            sandbox(),
            by=g.actor,
            job_id=job_id,
            decision=form["decision"],
            comment=form["comment"],
        )
    except SandboxError as error:  # nothing was recorded: say why next to the kept form
        return _review_page(job_id, form=form, error=error.message), error.status
    return redirect(url_for("web.review_page", job_id=job_id), 303)


def _review_page(job_id: str, **extra: Any) -> str:
    review = reviews.open_review(sandbox(), by=g.actor, job_id=job_id)
    extra.setdefault("form", {"decision": "", "comment": ""})
    return render_template("review.html", review=review, **extra)


@bp.post("/jobs/<job_id>/objection")
@login_required
def object_to_review(job_id: str) -> Response:
    """The analyst's objection (异议) to an auditor's withholding."""
    reviews.file_objection(
        sandbox(), by=g.actor, job_id=job_id, reason=request.form.get("reason", "")
    )
    return redirect(url_for("web.job", job_id=job_id), 303)
