"""The web pages: server-rendered, Chinese first. Views parse, authorize, call, render.

Everything shown comes from ``sandbox.catalog``; a job is submitted through
``sandbox.jobs.submit`` exactly as the JSON API does. No view shows a job's log.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Any

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
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from portal.auth import requires, sandbox
from portal.i18n import LANGUAGES, language, t
from sandbox import catalog
from sandbox.access import grants, users
from sandbox.errors import InvalidRequest, PolicyRejected, SandboxError, Unauthenticated
from sandbox.integrity import audit
from sandbox.jobs import planning, results, reviews, submit
from sandbox.models import FINAL_STATES, JobStatus, Role, User

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
        abort(400, t("error.csrf"))


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return url_for("web.home")
    # Browsers drop tabs and newlines and read "\\" as "/": "/\t/evil" is "//evil".
    if "\\" in target or not target.isprintable() or " " in target:
        return url_for("web.home")
    return target


def _here() -> str:
    return request.full_path.rstrip("?")


@bp.app_context_processor
def _template_helpers() -> dict[str, Any]:
    return {
        "t": t,
        "lang": language(),
        "csrf_field": CSRF_FIELD,
        "csrf_token": csrf_token,
        "current_user": (
            {"username": session["username"], "role": session["role"]}
            if "user_id" in session
            else None
        ),
        "here": _here,
    }


@bp.app_template_filter("when")
def _when(value: str | None) -> str:
    """An ISO timestamp as 'YYYY-MM-DD HH:MM:SS UTC'."""
    if not value:
        return "—"
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + " UTC"


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


@bp.app_template_filter("cell")
def _cell(value: Any) -> str:
    """A result value for reading: whole floats without decimals, others to 2 places."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


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
    message = t("error.not_found") if status == 404 else (error.description or "")
    return render_template("error.html", status=status, message=message), status


@bp.errorhandler(Exception)
def _unexpected(error: Exception) -> tuple[str, int]:
    # The detail goes to the server log only; it may hold values from the data.
    log.exception("unexpected error on %s %s", request.method, request.path)
    return render_template("error.html", status=500, message=t("error.internal")), 500


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
    password = request.form.get("password", "")
    identity: dict[str, Any] | None = None
    with sandbox().tx() as db:
        try:
            user = users.authenticate(db, username=username, password=password)
        except Unauthenticated:
            pass  # let the transaction commit the failed attempt's audit entry, then answer
        else:
            identity = {"user_id": user.id, "role": user.role, "username": user.username}
    if identity is None:
        page = render_template(
            "login.html", next_url=next_url, username=username, error=t("login.failed")
        )
        return page, 401
    chosen = session.get("lang")
    session.clear()  # a fresh session (and CSRF token) for the logged-in user
    session.update(identity)
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


@bp.get("/")
@requires()
def home() -> str:
    with sandbox().tx() as db:
        datasets = catalog.catalog(db)
        budgets = grants.budgets(db, user_id=g.user_id) if g.role == Role.ANALYST else []
    return render_template("catalog.html", datasets=datasets, budgets=budgets)


@bp.get("/datasets/<name>")
@requires()
def dataset(name: str) -> str:
    return render_template("dataset.html", schema=catalog.dataset_schema(name))


def _epsilon(raw: str) -> float | None:
    if not raw.strip():
        return None
    try:
        return float(raw)
    except ValueError as error:
        raise InvalidRequest(t("new.bad_epsilon"), field="epsilon") from error


def _rows_per_person(raw: str) -> int | None:
    if not raw.strip():
        return None
    try:
        return int(raw)
    except ValueError as error:
        raise InvalidRequest(t("new.bad_rows_per_person"), field="rows_per_person") from error


def _job_form(form: dict[str, str], **extra: Any) -> str:
    with sandbox().tx() as db:
        datasets = catalog.catalog(db)
        budgets = grants.budgets(db, user_id=g.user_id)
    return render_template(
        "job_new.html",
        form=form,
        datasets=datasets,
        budgets=budgets,
        default_epsilon=planning.DEFAULT_EPSILON,
        **extra,
    )


@bp.route("/jobs/new", methods=["GET", "POST"])
@requires(Role.ANALYST)
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
        job = submit.submit(
            sandbox(),
            by_id=g.user_id,
            dataset=form["dataset"],
            language=form["language"],
            mode=form["mode"],
            code=form["code"],
            epsilon=_epsilon(form["epsilon"]) if dp else None,
            rows_per_person=_rows_per_person(form["rows_per_person"]) if dp else None,
            enqueue=current_app.extensions["enqueue"],
        )
    except PolicyRejected as rejection:
        findings = rejection.details.get("findings", [])
        return _job_form(form, error=rejection.message, findings=findings), rejection.status
    except SandboxError as error:  # no grant, a bad field: say so next to the kept form
        return _job_form(form, error=error.message), error.status
    return redirect(url_for("web.job", job_id=job.id), 303)


@bp.get("/jobs")
@requires(Role.ANALYST)
def my_jobs() -> str:
    with sandbox().tx() as db:
        rows = [results.job_status(j, role=g.role) for j in results.jobs_of(db, user_id=g.user_id)]
    return render_template("jobs.html", jobs=rows)


@bp.get("/jobs/<job_id>")
@requires()
def job(job_id: str) -> str:
    with sandbox().tx() as db:
        found = results.job_for(db, job_id, user_id=g.user_id, role=g.role)
        status = results.job_status(found, role=g.role)
        status.pop("log", None)  # the page never shows what a job printed
        mine = found.analyst_id == g.user_id
        result = None
        if mine and found.status == JobStatus.RELEASED:
            result = results.job_result(found, user_id=g.user_id)
            audit.append(db, actor=g.username, action="result.viewed", subject=job_id)
        code = found.code if mine else status.get("code")
        review = reviews.analyst_view(db, found) if mine else None
    if JobStatus(status["status"]) in FINAL_STATES:
        refresh = None
    elif status["status"] == JobStatus.PENDING_REVIEW:
        refresh = REVIEW_REFRESH_SECONDS
    else:
        refresh = REFRESH_SECONDS
    return render_template(
        "job.html",
        job=status,
        result=result,
        mine=mine,
        code=code,
        refresh_seconds=refresh,
        review=review,
    )


@bp.get("/audit")
@requires(Role.AUDITOR, Role.ADMIN)
def audit_log() -> Any:
    """The audit log for auditors: filter, then page forward (oldest first)."""
    form = {name: request.args.get(name, "") for name in audit.AuditFilter.__dataclass_fields__}
    try:
        filters = audit.AuditFilter.from_args(request.args)
    except InvalidRequest as error:
        page = render_template("audit.html", form=form, error=error.message, entries=[])
        return page, error.status
    with sandbox().tx() as db:
        found = audit.browse(db, filters)
        last_seq, _ = audit.head(db)
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
@requires(Role.AUDITOR, Role.ADMIN)
def review_queue() -> str:
    with sandbox().tx() as db:
        rows = reviews.queue(db, viewer=db.get_one(User, g.user_id))
    return render_template("reviews.html", reviews=rows)


@bp.route("/reviews/<job_id>", methods=["GET", "POST"])
@requires(Role.AUDITOR, Role.ADMIN)
def review_page(job_id: str) -> Any:
    """A held job's code, outputs, findings and history; auditors decide on it here."""
    if request.method == "GET":
        return _review_page(job_id)
    form = {name: request.form.get(name, "") for name in ("decision", "comment")}
    try:
        with sandbox().tx() as db:
            reviews.review_job(
                sandbox(),
                db,
                by=db.get_one(User, g.user_id),
                job_id=job_id,
                decision=form["decision"],
                comment=form["comment"],
            )
    except SandboxError as error:  # nothing was recorded: say why next to the kept form
        return _review_page(job_id, form=form, error=error.message), error.status
    return redirect(url_for("web.review_page", job_id=job_id), 303)


def _review_page(job_id: str, **extra: Any) -> str:
    with sandbox().tx() as db:
        review = reviews.open_review(db, by=db.get_one(User, g.user_id), job_id=job_id)
    extra.setdefault("form", {"decision": "", "comment": ""})
    return render_template("review.html", review=review, **extra)


@bp.post("/jobs/<job_id>/objection")
@requires(Role.ANALYST)
def object_to_review(job_id: str) -> Response:
    """The analyst's objection (异议) to an auditor's withholding."""
    with sandbox().tx() as db:
        reviews.file_objection(
            db,
            by=db.get_one(User, g.user_id),
            job_id=job_id,
            reason=request.form.get("reason", ""),
        )
    return redirect(url_for("web.job", job_id=job_id), 303)
