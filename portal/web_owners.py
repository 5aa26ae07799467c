"""The data owners' web pages (数据提供方): their datasets, the import wizard (stage →
profile → confirm → publish) and each dataset's governance; and the analysts' access
request on a dataset's page. Views parse, call one action, render (``sandbox.owners``,
``sandbox.access``); the actions check who may do what and audit it.

Files go up as the request body itself (``fetch`` with PUT, ``static/owner.js``), read
as a stream straight into the encrypted staging: no multipart parser spools them to
disk, and the app's 1 MiB request cap is raised for those requests alone.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping
from typing import Any

import yaml
from flask import (
    Blueprint,
    abort,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from policies.permissions import user_may_bring_datasets
from portal import owner_forms, web
from portal.api_owners import _filename, upload_stream
from portal.auth import allowed, login_required, sandbox
from portal.i18n import language
from sandbox import catalog
from sandbox.access import grants, requests
from sandbox.catalog import PUBLISHED
from sandbox.errors import InvalidRequest, SandboxError, Unauthenticated
from sandbox.jobs import reviews
from sandbox.models import ImportStatus
from sandbox.owners import consent_registry, datasets, imports, vocabulary

bp = Blueprint("owners", __name__)

CSRF_HEADER = "X-CSRF-Token"
CONSENT_COUNTS = "owner_consent_counts"
# The encodings and delimiters an owner may name; "" lets the importer detect them.
ENCODINGS = ("", "utf-8", "gbk", "gb18030")
DELIMITERS = {"": "", "comma": ",", "tab": "\t", "semicolon": ";", "pipe": "|"}
OPEN_IMPORTS = (ImportStatus.STAGING, ImportStatus.PROFILED, ImportStatus.CONFIRMED)
# What an error says about its place, in the order it is shown.
PLACES = ("rule", "file", "table", "column", "row", "field", "columns")
CHART = {"width": 640, "height": 220, "left": 52, "right": 16, "top": 14, "bottom": 30}
PALETTE = ("#1f5fae", "#c2410c", "#1c7a43", "#7c3aed", "#b42318", "#0e7490")

# The web pages' own error pages and sign-in redirect, for these pages too.
bp.register_error_handler(Unauthenticated, web._log_in_first)
bp.register_error_handler(SandboxError, web._sandbox_error)
bp.register_error_handler(HTTPException, web._http_error)
bp.register_error_handler(Exception, web._unexpected)


@bp.before_request
def _check_csrf() -> None:
    if request.method not in web.UNSAFE_METHODS:
        return
    expected = str(session.get("csrf", ""))
    # A streamed upload's body is the file itself: its token comes in a header.
    if request.method == "PUT":
        sent = request.headers.get(CSRF_HEADER, "")
    else:
        sent = request.form.get(web.CSRF_FIELD, "")
    if not expected or not secrets.compare_digest(sent.encode(), expected.encode()):
        abort(400, gettext("error.csrf"))


@bp.app_template_global("evidence")
def evidence_text(evidence: Mapping[str, Any]) -> str:
    """A proposal's piece of evidence in the reader's language."""
    return vocabulary.evidence_text(evidence, language())


def problem(error: SandboxError) -> dict[str, Any]:
    """An action's error for the page: its message, rule and place."""
    details = error.details
    places = [(name, details[name]) for name in PLACES if details.get(name) not in (None, "")]
    return {
        "message": error.message,
        "status": error.status,
        "rule": details.get("rule"),
        "places": places,
    }


# --- my datasets ------------------------------------------------------------------------------


@bp.get("/owner")
@login_required
@allowed(user_may_bring_datasets)
def home() -> str:
    return _home()


def _home(**extra: Any) -> str:
    mine = imports.my_imports(sandbox(), by=g.actor)
    extra.setdefault("form", {"dataset": "", "mode": "new"})
    return render_template(
        "owner_home.html",
        datasets=datasets.my_datasets(sandbox(), by=g.actor),
        imports=[i for i in mine if i["status"] in OPEN_IMPORTS],
        **extra,
    )


@bp.post("/owner/imports")
@login_required
def start_import() -> Any:
    form = {
        "dataset": request.form.get("dataset", "").strip(),
        "mode": request.form.get("mode", "new"),
    }
    try:
        started = imports.start_import(
            sandbox(), by=g.actor, dataset=form["dataset"], mode=form["mode"]
        )
    except SandboxError as error:
        return _home(form=form, error=problem(error)), error.status
    return redirect(url_for("owners.import_page", import_id=started["id"]), 303)


# --- the import wizard ------------------------------------------------------------------------


@bp.get("/owner/imports/<import_id>")
@login_required
def import_page(import_id: str) -> str:
    return _import_page(import_id)


def _import_page(import_id: str, **extra: Any) -> str:
    view = imports.read_import(sandbox(), by=g.actor, import_id=import_id)
    proposed = owner_forms.form_of_import(view) if view.get("profile") else None
    extra.setdefault("definition", proposed)
    extra.setdefault("connection", {"url": "", "table": "", "query": "", "name": ""})
    return render_template(
        "owner_import.html",
        record=view,
        open=view["status"] in OPEN_IMPORTS,
        classes=owner_forms.CLASSES,
        types=owner_forms.TYPES,
        rules=owner_forms.RULES,
        aggregates=owner_forms.AGGREGATES,
        encodings=ENCODINGS,
        delimiters=DELIMITERS,
        **extra,
    )


@bp.put("/owner/imports/<import_id>/files")
@login_required
def upload_file(import_id: str) -> Any:
    """The file is the request body; the query names it and says how to read it."""
    delimiter = request.args.get("delimiter", "")
    encoding = request.args.get("encoding", "")
    try:
        if delimiter not in DELIMITERS or encoding not in ENCODINGS:
            raise InvalidRequest(gettext("owner.upload.bad_option"), field="encoding")
        options = imports.ReadingOptions(
            encoding=encoding or None,
            delimiter=DELIMITERS[delimiter] or None,
            header=request.args.get("header", "true") != "false",
        )
        imports.stage_upload(
            sandbox(),
            by=g.actor,
            import_id=import_id,
            source=upload_stream(),
            filename=_filename(),
            table=request.args.get("table", "").strip() or None,
            options=options,
        )
    except SandboxError as error:
        return _fragment_error(error)
    flash(gettext("owner.notice.staged"), "notice")
    return jsonify(redirect=url_for("owners.import_page", import_id=import_id))


def _fragment_error(error: SandboxError) -> tuple[Response, int]:
    """An error for the page's script to show where the upload was chosen."""
    html = render_template("_owner_error.html", error=problem(error), error_id="upload-problem")
    return jsonify(error=error.to_dict(), html=html), error.status


@bp.post("/owner/imports/<import_id>/connection")
@login_required
def connect(import_id: str) -> Any:
    """A table or query of the owner's database. The password has a field of its own and
    is used for this one connection: it is put in no page, no log, no record."""
    form = {name: request.form.get(name, "").strip() for name in ("url", "table", "query", "name")}
    try:
        imports.stage_connection(
            sandbox(),
            by=g.actor,
            import_id=import_id,
            url=_with_password(form["url"], request.form.get("password", "")),
            name=form["name"],
            table=form["table"] or None,
            query=form["query"] or None,
        )
    except SandboxError as error:
        form["url"] = _without_password(form["url"])
        page = _import_page(import_id, connection=form, connect_error=problem(error))
        return page, error.status
    flash(gettext("owner.notice.staged"), "notice")
    return redirect(url_for("owners.import_page", import_id=import_id, _anchor="staged"), 303)


def _with_password(url: str, password: str) -> str:
    if not password:
        return url
    try:
        return make_url(url).set(password=password).render_as_string(hide_password=False)
    except (ArgumentError, ValueError):
        return url  # the action says what is wrong with the URL


def _without_password(url: str) -> str:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "" if "@" in url else url  # unreadable: it may hold a password
    return parsed._replace(password=None).render_as_string(hide_password=False)


@bp.post("/owner/imports/<import_id>/profile")
@login_required
def profile(import_id: str) -> Any:
    try:
        imports.profile_import(sandbox(), by=g.actor, import_id=import_id)
    except SandboxError as error:
        return _import_page(import_id, profile_error=problem(error)), error.status
    return redirect(url_for("owners.import_page", import_id=import_id, _anchor="profile"), 303)


@bp.post("/owner/imports/<import_id>/definition")
@login_required
def confirm(import_id: str) -> Any:
    """The confirm form (or a pasted definition YAML) as the import's definition."""
    pasted = request.form.get("definition_yaml", "").strip()
    dataset = request.form.get("dataset", "")
    posted = owner_forms.form_of_post(request.form, dataset=dataset)
    try:
        if pasted:
            definition: str | dict[str, Any] = pasted
        else:
            definition = owner_forms.definition_of_form(posted, dataset=dataset)
        imports.confirm_import(sandbox(), by=g.actor, import_id=import_id, definition=definition)
    except SandboxError as error:
        view = imports.read_import(sandbox(), by=g.actor, import_id=import_id)
        proposed = owner_forms.form_of_import(view) if view.get("profile") else {}
        shown = owner_forms.with_proposals(posted, proposed) if posted["tables"] else proposed
        page = _import_page(
            import_id, definition=shown, confirm_error=problem(error), pasted=pasted
        )
        return page, error.status
    flash(gettext("owner.notice.confirmed"), "notice")
    return redirect(url_for("owners.import_page", import_id=import_id, _anchor="publish"), 303)


@bp.post("/owner/imports/<import_id>/publish")
@login_required
def publish(import_id: str) -> Any:
    try:
        published = imports.publish_import(sandbox(), by=g.actor, import_id=import_id)
    except SandboxError as error:
        return _import_page(import_id, publish_error=problem(error)), error.status
    flash(gettext("owner.notice.published", number=published["number"]), "notice")
    return redirect(url_for("owners.dataset_page", name=published["dataset"]), 303)


@bp.post("/owner/imports/<import_id>/discard")
@login_required
def discard(import_id: str) -> Response:
    imports.discard_import(sandbox(), by=g.actor, import_id=import_id)
    flash(gettext("owner.notice.discarded"), "notice")
    return redirect(url_for("owners.home"), 303)


@bp.get("/owner/imports/<import_id>/definition.yaml")
@login_required
def import_definition(import_id: str) -> Response:
    """The definition as the page proposes it (or as confirmed), to edit offline."""
    view = imports.read_import(sandbox(), by=g.actor, import_id=import_id)
    if not view.get("draft"):
        abort(404)
    text = yaml.safe_dump(view["draft"], allow_unicode=True, sort_keys=False, width=100)
    return _yaml_download(text, f"{view['dataset']}-draft.yaml")


def _yaml_download(text: str, filename: str) -> Response:
    response = Response(text, content_type="application/yaml; charset=utf-8")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- a dataset's governance ---------------------------------------------------------------


@bp.get("/owner/datasets/<name>")
@login_required
def dataset_page(name: str) -> str:
    return _dataset_page(name)


def _dataset_page(name: str, **extra: Any) -> str:
    usage = datasets.dataset_usage(sandbox(), by=g.actor, dataset=name)
    found = requests.list_requests(sandbox(), by=g.actor)
    record = datasets.dataset_versions(sandbox(), by=g.actor, dataset=name)
    return render_template(
        "owner_dataset.html",
        dataset=record,
        open_columns=_open_columns(name) if record["status"] == PUBLISHED else [],
        usage=usage,
        chart=use_chart(usage["grants"]),
        access_requests=[r for r in found if r["dataset"] == name],
        consent_counts=session.pop(CONSENT_COUNTS, None),
        modes=grants.MODES,
        review_settings=reviews.review_settings(sandbox(), by=g.actor, dataset=name),
        **extra,
    )


def _open_columns(name: str) -> list[str]:
    """The columns an approval may narrow a request for "every column" to."""
    schema = catalog.dataset_schema(sandbox(), name)
    return [
        f"{t['name']}.{c['name']}"
        for t in schema["tables"]
        for c in t["columns"]
        if c["masking"] != "drop" and c["class"] != "consent"
    ]


@bp.get("/owner/datasets/<name>/definition.yaml")
@login_required
def export_definition(name: str) -> Response:
    text = datasets.export_definition(sandbox(), by=g.actor, dataset=name)
    return _yaml_download(text, f"{name}.yaml")


@bp.put("/owner/datasets/<name>/consents")
@login_required
def upload_consent(name: str) -> Any:
    try:
        counts = consent_registry.import_consent(
            sandbox(), by=g.actor, dataset=name, source=upload_stream(), filename=_filename()
        )
    except SandboxError as error:
        return _fragment_error(error)
    session[CONSENT_COUNTS] = counts  # shown once, on the page the script goes to next
    return jsonify(redirect=url_for("owners.dataset_page", name=name))


@bp.post("/owner/datasets/<name>/retire")
@login_required
def retire(name: str) -> Any:
    try:
        datasets.retire_dataset(
            sandbox(), by=g.actor, dataset=name, confirm=request.form.get("confirm", "").strip()
        )
    except SandboxError as error:
        return _dataset_page(name, retire_error=problem(error)), error.status
    flash(gettext("owner.notice.retired"), "notice")
    return redirect(url_for("owners.dataset_page", name=name), 303)


@bp.post("/owner/datasets/<name>/reviewers")
@login_required
def set_reviewers(name: str) -> Any:
    """How many distinct auditors approve the dataset's held outputs (and unverified ones)."""
    settings: dict[str, object] = {}
    for field in reviews.QUORUM_SETTINGS:
        sent = request.form.get(field, "").strip()
        if sent:
            settings[field] = int(sent) if sent.isdigit() else sent
    try:
        reviews.set_review_quorum(sandbox(), by=g.actor, dataset=name, settings=settings)
    except SandboxError as error:
        return _dataset_page(name, reviewers_error=problem(error)), error.status
    flash(gettext("owner.notice.reviewers_saved"), "notice")
    return redirect(url_for("owners.dataset_page", name=name, _anchor="reviewers"), 303)


@bp.post("/owner/grants/<grant_id>/revoke")
@login_required
def revoke(grant_id: str) -> Response:
    revoked = grants.revoke_grant(sandbox(), by=g.actor, grant_id=grant_id)
    flash(gettext("owner.notice.revoked", analyst=revoked["analyst"]), "notice")
    return redirect(url_for("owners.dataset_page", name=revoked["dataset"], _anchor="grants"), 303)


@bp.post("/owner/requests/<request_id>/approve")
@login_required
def approve(request_id: str) -> Any:
    name = request.form.get("dataset", "")
    try:
        approval = _approval(request.form)
        requests.approve_request(sandbox(), by=g.actor, request_id=request_id, approval=approval)
    except SandboxError as error:
        page = _dataset_page(name, decide_error=problem(error), decided_id=request_id)
        return page, error.status
    flash(gettext("owner.notice.approved"), "notice")
    return redirect(url_for("owners.dataset_page", name=name, _anchor="requests"), 303)


@bp.post("/owner/requests/<request_id>/deny")
@login_required
def deny(request_id: str) -> Any:
    name = request.form.get("dataset", "")
    try:
        requests.deny_request(
            sandbox(), by=g.actor, request_id=request_id, comment=request.form.get("comment", "")
        )
    except SandboxError as error:
        page = _dataset_page(name, decide_error=problem(error), decided_id=request_id)
        return page, error.status
    flash(gettext("owner.notice.denied"), "notice")
    return redirect(url_for("owners.dataset_page", name=name, _anchor="requests"), 303)


def _approval(form: Any) -> requests.Approval:
    """What the owner narrowed: a field left as requested (or empty) keeps the request's."""
    columns = form.getlist("columns")
    asked_columns = [c for c in form.get("asked_columns", "").split(",") if c]
    modes = form.getlist("modes")
    asked_modes = [m for m in form.get("asked_modes", "").split(",") if m]
    return requests.Approval(
        comment=form.get("comment", ""),
        columns=None if sorted(columns) == sorted(asked_columns) else columns,
        modes=None if sorted(modes) == sorted(asked_modes) else modes,
        epsilon=_changed(form, "epsilon", float),
        days=_changed(form, "days", int),
        k_threshold=_changed(form, "k_threshold", int),
    )


def _changed(form: Any, name: str, kind: type[int] | type[float]) -> object:
    """The field as a number if the owner changed it; as typed if it is not a number (the
    action says why); None if it is empty or as asked."""
    text = form.get(name, "").strip()
    if not text or text == form.get(f"asked_{name}", "").strip():
        return None
    try:
        return kind(text)
    except ValueError:
        return text


def use_chart(grants_used: list[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Each grant's ε spent so far, day by day, as step lines of an SVG chart (drawn by
    the template, no script): from the first day of use to the end of the last one."""
    used = [g for g in grants_used if g.get("use_over_time")]
    if not used:
        return None
    days = sorted({dt.date.fromisoformat(p["day"]) for g in used for p in g["use_over_time"]})
    start, end = days[0], days[-1] + dt.timedelta(days=1)  # the last day drawn whole
    span = (end - start).days
    totals = sorted({float(g["epsilon_total"]) for g in used})
    top = max([*totals, *(p["epsilon"] for g in used for p in g["use_over_time"])]) or 1.0
    box = CHART
    plot_w = box["width"] - box["left"] - box["right"]
    plot_h = box["height"] - box["top"] - box["bottom"]

    def x(day: dt.date) -> float:
        return round(box["left"] + (day - start).days / span * plot_w, 1)

    def y(epsilon: float) -> float:
        return round(box["top"] + plot_h * (1 - epsilon / top), 1)

    lines = []
    for number, grant in enumerate(used):
        # Steps, not slopes: ε is spent at once, on the day a job runs.
        points = [(x(start), y(0.0))]
        for point in grant["use_over_time"]:
            day = x(dt.date.fromisoformat(point["day"]))
            points += [(day, points[-1][1]), (day, y(point["epsilon"]))]
        points.append((x(end), points[-1][1]))
        lines.append(
            {
                "grant": grant["id"],
                "analyst": grant["analyst"],
                "color": PALETTE[number % len(PALETTE)],
                "points": " ".join(f"{px},{py}" for px, py in points),
                "last": points[-1],
                "spent": grant["use_over_time"][-1]["epsilon"],
            }
        )
    return {
        **box,
        "x0": box["left"],
        "x1": box["width"] - box["right"],
        "y0": y(0.0),
        "lines": lines,
        "totals": [{"value": t, "y": y(t)} for t in totals],
        "y_ticks": [{"value": round(v, 3), "y": y(v)} for v in (0.0, top / 2, top)],
        "x_ticks": [{"day": d.isoformat(), "x": x(d)} for d in sorted({days[0], days[-1]})],
    }


# --- analysts: asking for access ---------------------------------------------------------


@bp.post("/datasets/<name>/access-requests")
@login_required
def request_access(name: str) -> Any:
    texts = {
        name: request.form.get(name, "").strip()
        for name in ("purpose", "epsilon", "days", "justification")
    }
    columns, modes = request.form.getlist("columns"), request.form.getlist("modes")
    ask = requests.AccessAsk(
        dataset=name,
        purpose=texts["purpose"],
        columns=columns,
        modes=modes,
        epsilon=_number(texts["epsilon"], float, default=0.0),
        days=_number(texts["days"], int, default=90),
        justification=texts["justification"],
    )
    form = {**texts, "columns": columns, "modes": modes}
    try:
        requests.request_access(sandbox(), by=g.actor, ask=ask)
    except SandboxError as error:
        return web.dataset_page(name, ask=form, ask_error=problem(error)), error.status
    flash(gettext("access.notice.filed"), "notice")
    return redirect(url_for("web.dataset", name=name, _anchor="my-requests"), 303)


def _number(text: str, kind: type[int] | type[float], *, default: float) -> object:
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        return text  # the action refuses it and names the field
