"""The contest's web pages (赛事): the contests and their tracks, the public leaderboards,
a team's pages (registration, the team, a track's schema, mock data, submissions and
quotas, final picks, disputes) and the organizer's (contests, tracks, phases,
registrations, teams, the queue, the final board, disputes).

Views parse, call one action, render (``sandbox.contest``); the actions check who may do
what and audit it. A refused form comes back with the action's message, its rule worded
for the reader, and what was typed; a done one redirects with a notice. Submissions go
to the contest queue (``app.extensions["enqueue_submission"]``) exactly as the JSON API
sends them (``portal/api_submissions.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from policies.permissions import user_may_compete, user_may_organize_contests
from portal import web
from portal.api_submissions import MAX_UPLOAD_BYTES
from portal.auth import allowed, login_required, sandbox
from portal.i18n import language
from sandbox import catalog
from sandbox.contest import boards, contests, disputes, rosters, submissions, teams
from sandbox.contest.metrics import registered_metrics
from sandbox.errors import Forbidden, InvalidRequest, NotFound, SandboxError, Unauthenticated
from sandbox.models import ContestPhase

bp = Blueprint("contest", __name__)

PARTS = ("train", "features")
# The phase an organizer moves a contest on to; it closes when its final board is published.
NEXT_PHASE = {
    ContestPhase.REGISTRATION.value: ContestPhase.OPEN.value,
    ContestPhase.OPEN.value: ContestPhase.FINAL.value,
}
TRACK_FIELDS = ("slug", "title", "title_en", "dataset", "task", "target", "metric")
TRACK_LISTS = ("features", "withheld")
QUOTA_FIELDS = ("daily_quota", "total_quota", "max_running")

# The web pages' own error pages and sign-in redirect, for these pages too.
bp.register_error_handler(Unauthenticated, web._log_in_first)
bp.register_error_handler(SandboxError, web._sandbox_error)
bp.register_error_handler(HTTPException, web._http_error)
bp.register_error_handler(Exception, web._unexpected)
bp.before_request(web._check_csrf)


@bp.app_template_global("titled")
def titled(record: Mapping[str, Any]) -> str:
    """A contest's or track's title in the reader's language (Chinese when no English)."""
    english = record.get("title_en")
    return str(english if language() == "en" and english else record.get("title", ""))


@bp.app_template_global("score_text")
def score_text(score: float | None, low: float | None = None, high: float | None = None) -> str:
    """A score with its 95 % interval, as the board shows it: 0.7276 [0.6373, 0.8202]."""
    if score is None:
        return "—"
    if low is None or high is None:
        return f"{score:.4f}"
    return f"{score:.4f} [{low:.4f}, {high:.4f}]"


def problem(error: SandboxError) -> dict[str, Any]:
    """An action's refusal for the page: its message, rule, field, findings, reset time."""
    details = error.details
    return {
        "message": error.message,
        "status": error.status,
        "rule": details.get("rule"),
        "field": details.get("field"),
        "resets_at": details.get("resets_at"),
        "findings": details.get("findings") or [],
    }


def _contest(slug: str) -> dict[str, Any]:
    for found in contests.list_contests(sandbox()):
        if found["slug"] == slug:
            return found
    raise NotFound(gettext("contest.not_found"))


def _track(contest: Mapping[str, Any], slug: str) -> dict[str, Any]:
    for track in contest["tracks"]:
        if track["slug"] == slug:
            return dict(track)
    raise NotFound(gettext("contest.track_not_found"))


def _done(message: str, endpoint: str, **where: Any) -> Response:
    flash(message, "notice")
    return redirect(url_for(endpoint, **where), 303)


# --- everyone: contests, tracks, leaderboards --------------------------------------------


@bp.get("/contests")
@login_required
def contests_page() -> str:
    return _contests_page()


def _contests_page(**extra: Any) -> str:
    extra.setdefault("form", {"slug": "", "title": "", "title_en": ""})
    return render_template(
        "contest/contests.html",
        contests=contests.list_contests(sandbox()),
        may_organize=user_may_organize_contests(g.actor),
        **extra,
    )


@bp.get("/contests/<contest>/tracks/<track>/leaderboard")
def leaderboard(contest: str, track: str) -> str:
    """The public board: anyone may read it, logged in or not (as the API says)."""
    board = boards.leaderboard(sandbox(), contest=contest, track=track)
    found = _contest(contest)
    return render_template(
        "contest/leaderboard.html", contest=found, track=_track(found, track), board=board
    )


# --- a team: registration, the team, disputes ----------------------------------------------


@bp.get("/contests/<contest>")
@login_required
def contest_page(contest: str) -> str:
    return _contest_page(contest)


def _contest_page(contest: str, **extra: Any) -> str:
    found = _contest(contest)
    standing = rosters.my_standing(sandbox(), by=g.actor, contest=contest)
    raised = []
    if standing["team"] is not None:
        raised = disputes.list_disputes(sandbox(), by=g.actor, contest=contest)
    extra.setdefault("form", {})
    return render_template(
        "contest/contest.html",
        contest=found,
        standing=standing,
        disputes=raised,
        may_compete=user_may_compete(g.actor),
        **extra,
    )


@bp.post("/contests/<contest>/registration")
@login_required
def register(contest: str) -> Any:
    form = {name: request.form.get(name, "").strip() for name in ("real_name", "institution")}
    try:
        teams.register(sandbox(), by=g.actor, contest=contest, **form)
    except SandboxError as error:
        return _contest_page(contest, form=form, error=problem(error)), error.status
    return _done(gettext("contest.notice.registered"), "contest.contest_page", contest=contest)


@bp.post("/contests/<contest>/teams")
@login_required
def create_team(contest: str) -> Any:
    form = {"name": request.form.get("name", "").strip()}
    try:
        teams.create_team(sandbox(), by=g.actor, contest=contest, name=form["name"])
    except SandboxError as error:
        return _contest_page(contest, form=form, error=problem(error)), error.status
    return _done(gettext("contest.notice.team_created"), "contest.contest_page", contest=contest)


@bp.post("/contests/<contest>/teams/<team_id>/invitations")
@login_required
def invite(contest: str, team_id: str) -> Any:
    form = {"username": request.form.get("username", "").strip()}
    try:
        teams.invite(sandbox(), by=g.actor, team_id=team_id, username=form["username"])
    except SandboxError as error:
        return _contest_page(contest, form=form, error=problem(error)), error.status
    notice = gettext("contest.notice.invited", user=form["username"])
    return _done(notice, "contest.contest_page", contest=contest)


@bp.post("/contests/<contest>/teams/<team_id>/accept")
@login_required
def accept(contest: str, team_id: str) -> Any:
    try:
        joined = teams.accept_invitation(sandbox(), by=g.actor, team_id=team_id)
    except SandboxError as error:
        return _contest_page(contest, error=problem(error)), error.status
    notice = gettext("contest.notice.joined", team=joined["name"])
    return _done(notice, "contest.contest_page", contest=contest)


@bp.post("/contests/<contest>/teams/<team_id>/merge")
@login_required
def merge(contest: str, team_id: str) -> Any:
    """Both captains post the same pair (``team_id`` merging ``into``): the merging
    team's captain asks, the other's post accepts and the teams merge."""
    into = request.form.get("into", "")
    try:
        done = teams.merge_teams(sandbox(), by=g.actor, team_id=team_id, into_team_id=into)
    except SandboxError as error:
        return _contest_page(contest, error=problem(error)), error.status
    if done["merge"] == "merged":
        notice = gettext("contest.notice.merged", team=done["team"]["name"])
    else:
        notice = gettext("contest.notice.merge_requested")
    return _done(notice, "contest.contest_page", contest=contest, _anchor="team")


@bp.post("/contests/<contest>/disputes")
@login_required
def raise_dispute(contest: str) -> Any:
    """A dispute against a submission's score (from its track's page) or against the
    team's disqualification (from the contest's page); the page it came from again."""
    track = request.form.get("track", "")
    form = {"text": request.form.get("text", "").strip()}
    try:
        disputes.raise_dispute(
            sandbox(),
            by=g.actor,
            contest=contest,
            kind=request.form.get("kind", ""),
            text=form["text"],
            submission_id=request.form.get("submission") or None,
        )
    except SandboxError as error:
        if track:
            page = _track_page(contest, track, dispute_form=form, error=problem(error))
        else:
            page = _contest_page(contest, form=form, error=problem(error))
        return page, error.status
    if track:
        where = {"endpoint": "contest.track_page", "track": track, "_anchor": "disputes"}
    else:
        where = {"endpoint": "contest.contest_page", "_anchor": "disputes"}
    return _done(gettext("contest.notice.dispute_raised"), contest=contest, **where)


# --- a team on a track: schema, mock data, submissions, picks ---------------------------


@bp.get("/contests/<contest>/tracks/<track>")
@login_required
def track_page(contest: str, track: str) -> str:
    return _track_page(contest, track)


def _track_page(contest: str, track: str, **extra: Any) -> str:
    """The track for a team: what its code sees, mock data to write it against, the
    submit form, and the team's submissions with its quotas. Someone in no team (or
    a disqualified one) sees the schema and why they cannot submit."""
    found = _contest(contest)
    schema = submissions.track_schema(sandbox(), contest=contest, track=track)
    mine, blocked, raised = None, None, []
    try:
        mine = submissions.my_submissions(sandbox(), by=g.actor, contest=contest, track=track)
    except Forbidden as refusal:
        blocked = problem(refusal)
    if mine is not None:
        raised = disputes.list_disputes(sandbox(), by=g.actor, contest=contest)
    extra.setdefault("code", "")
    extra.setdefault("dispute_form", {"text": ""})
    return render_template(
        "contest/track.html",
        contest=found,
        track=_track(found, track),
        schema=schema,
        mine=mine,
        blocked=blocked,
        disputes=raised,
        parts=PARTS,
        max_picks=submissions.MAX_PICKS,
        max_upload_kib=MAX_UPLOAD_BYTES // 1024,
        **extra,
    )


@bp.get("/contests/<contest>/tracks/<track>/mock/<any(train, features):part>/<table>.csv")
@login_required
def mock(contest: str, track: str, part: str, table: str) -> Response:
    """Mock rows of one table as ``fit`` (train) or ``predict`` (features) reads them."""
    text = submissions.mock_part(sandbox(), contest=contest, track=track, part=part, table=table)
    response = Response(text, content_type="text/csv; charset=utf-8")
    filename = f"{contest}-{track}-{part}-{table}.csv"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@bp.post("/contests/<contest>/tracks/<track>/submissions")
@login_required
def submit(contest: str, track: str) -> Any:
    """The code pasted in the form or the file chosen beside it (one of the two)."""
    pasted = request.form.get("code", "")
    try:
        queued = submissions.submit(
            sandbox(),
            by=g.actor,
            contest=contest,
            track=track,
            code=_submitted_code(pasted),
            enqueue=current_app.extensions["enqueue_submission"],
        )
    except SandboxError as error:  # a quota (429), the code check (422): next to the kept code
        return _track_page(contest, track, code=pasted, error=problem(error)), error.status
    notice = gettext("contest.notice.submitted", id=queued["id"][:12])
    where = {"contest": contest, "track": track, "_anchor": "submissions"}
    return _done(notice, "contest.track_page", **where)


def _submitted_code(pasted: str) -> str:
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        # Browsers send a textarea's lines ending in CRLF (the HTML form encoding): the
        # code is kept as typed, so the same code pasted or uploaded has the same hash.
        return pasted.replace("\r\n", "\n")
    if pasted.strip():
        raise InvalidRequest(gettext("contest.submit.both"), field="file")
    raw = upload.read(MAX_UPLOAD_BYTES + 1)
    if len(raw) > MAX_UPLOAD_BYTES:
        raise InvalidRequest(
            gettext("contest.submit.too_large", kib=MAX_UPLOAD_BYTES // 1024), field="file"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidRequest(gettext("contest.submit.not_utf8"), field="file") from error


@bp.post("/contests/<contest>/tracks/<track>/submissions/<submission_id>/pick")
@login_required
def pick(contest: str, track: str, submission_id: str) -> Any:
    selected = request.form.get("selected") == "1"
    try:
        submissions.select_final(
            sandbox(), by=g.actor, submission_id=submission_id, selected=selected
        )
    except SandboxError as error:
        return _track_page(contest, track, error=problem(error)), error.status
    if selected:
        notice = gettext("contest.notice.picked", max=submissions.MAX_PICKS)
    else:
        notice = gettext("contest.notice.unpicked")
    where = {"contest": contest, "track": track, "_anchor": "submissions"}
    return _done(notice, "contest.track_page", **where)


# --- organizers -------------------------------------------------------------------------------


@bp.post("/contests")
@login_required
@allowed(user_may_organize_contests)
def create_contest() -> Any:
    form = {name: request.form.get(name, "").strip() for name in ("slug", "title", "title_en")}
    try:
        created = contests.create_contest(sandbox(), by=g.actor, **form)
    except SandboxError as error:
        return _contests_page(form=form, error=problem(error)), error.status
    notice = gettext("contest.notice.created")
    return _done(notice, "contest.organize", contest=created["slug"], _anchor="add-track")


@bp.get("/contests/<contest>/organize")
@login_required
def organize(contest: str) -> str:
    return _organize_page(contest)


def _organize_page(contest: str, **extra: Any) -> str:
    found = _contest(contest)
    extra.setdefault("track_form", _track_form({}))
    extra.setdefault("decision_form", {})
    return render_template(
        "contest/organize.html",
        contest=found,
        registrations=rosters.registrations(sandbox(), by=g.actor, contest=contest),
        teams=rosters.contest_teams(sandbox(), by=g.actor, contest=contest),
        disputes=disputes.list_disputes(sandbox(), by=g.actor, contest=contest),
        next_phase=NEXT_PHASE.get(found["phase"]),
        datasets=catalog.list_datasets(sandbox()),
        tasks=contests.TASKS,
        metrics=sorted(
            (name, sorted(t.value for t in metric.tasks))
            for name, metric in registered_metrics().items()
        ),
        **extra,
    )


def _track_form(source: Mapping[str, str]) -> dict[str, str]:
    """The add-track form's fields as typed (or TrackTerms' defaults for a new form)."""
    defaults = contests.TrackTerms("", "", "", "", "", "")
    form = {name: source.get(name, "").strip() for name in (*TRACK_FIELDS, *TRACK_LISTS)}
    form.update(event=source.get("event", "").strip(), baseline=source.get("baseline", ""))
    for name in QUOTA_FIELDS:
        form[name] = source.get(name, str(getattr(defaults, name))).strip()
    return form


def _track_terms(form: Mapping[str, str]) -> contests.TrackTerms:
    quotas = {}
    for name in QUOTA_FIELDS:
        try:
            quotas[name] = int(form[name])
        except ValueError as error:
            raise InvalidRequest(gettext("contest.track.bad_quota"), field=name) from error
    return contests.TrackTerms(
        slug=form["slug"],
        title=form["title"],
        title_en=form["title_en"],
        dataset=form["dataset"],
        task=form["task"],
        target=form["target"],
        metric=form["metric"],
        features=_names(form["features"]),
        withheld=_names(form["withheld"]),
        event=form["event"],
        baseline=form["baseline"],
        daily_quota=quotas["daily_quota"],
        total_quota=quotas["total_quota"],
        max_running=quotas["max_running"],
    )


def _names(text: str) -> tuple[str, ...]:
    """Names typed one after another, with commas or spaces (or Chinese commas) between."""
    return tuple(text.replace(",", " ").replace("，", " ").replace("、", " ").split())


@bp.post("/contests/<contest>/tracks")
@login_required
def add_track(contest: str) -> Any:
    form = _track_form(request.form)
    try:
        contests.add_track(sandbox(), by=g.actor, contest=contest, terms=_track_terms(form))
    except SandboxError as error:
        return _organize_page(contest, track_form=form, error=problem(error)), error.status
    notice = gettext("contest.notice.track_added", track=form["slug"])
    return _done(notice, "contest.organize", contest=contest, _anchor="tracks")


@bp.post("/contests/<contest>/phase")
@login_required
def set_phase(contest: str) -> Any:
    phase = request.form.get("phase", "")
    try:
        contests.set_phase(
            sandbox(),
            by=g.actor,
            contest=contest,
            phase=phase,
            enqueue=current_app.extensions["enqueue_submission"],
        )
    except SandboxError as error:
        return _organize_page(contest, error=problem(error)), error.status
    word = "contest.phase." + phase  # listed in portal.i18n.RUNTIME_WORDS
    notice = gettext("contest.notice.phase", phase=gettext(word))
    return _done(notice, "contest.organize", contest=contest)


@bp.post("/contests/<contest>/registrations/<username>/<any(approve, reject):decision>")
@login_required
def decide_registration(contest: str, username: str, decision: str) -> Any:
    approve = decision == "approve"
    try:
        teams.decide_registration(
            sandbox(), by=g.actor, contest=contest, username=username, approve=approve
        )
    except SandboxError as error:
        return _organize_page(contest, error=problem(error)), error.status
    if approve:
        notice = gettext("contest.notice.approved", user=username)
    else:
        notice = gettext("contest.notice.rejected", user=username)
    return _done(notice, "contest.organize", contest=contest, _anchor="registrations")


@bp.post("/contests/<contest>/teams/<team_id>/disqualify")
@login_required
def disqualify(contest: str, team_id: str) -> Any:
    reason = request.form.get("reason", "").strip()
    try:
        done = teams.disqualify(sandbox(), by=g.actor, team_id=team_id, reason=reason)
    except SandboxError as error:
        return _organize_page(contest, error=problem(error)), error.status
    notice = gettext("contest.notice.disqualified", team=done["name"])
    return _done(notice, "contest.organize", contest=contest, _anchor="teams")


@bp.post("/contests/<contest>/disputes/<int:dispute_id>/decision")
@login_required
def decide_dispute(contest: str, dispute_id: int) -> Any:
    comment = request.form.get("comment", "").strip()
    form = {"comment": comment, "dispute": dispute_id}
    try:
        disputes.decide_dispute(
            sandbox(),
            by=g.actor,
            dispute_id=dispute_id,
            uphold=request.form.get("decision") == "uphold",
            comment=comment,
        )
    except SandboxError as error:
        return _organize_page(contest, decision_form=form, error=problem(error)), error.status
    notice = gettext("contest.notice.dispute_decided")
    return _done(notice, "contest.organize", contest=contest, _anchor="disputes")


@bp.post("/contests/<contest>/final-scoring")
@login_required
def final_scoring(contest: str) -> Any:
    try:
        started = boards.start_final_scoring(
            sandbox(), by=g.actor, contest=contest, enqueue=current_app.extensions["enqueue_final"]
        )
    except SandboxError as error:
        return _organize_page(contest, error=problem(error)), error.status
    notice = gettext("contest.notice.final_scoring", n=started["queued"])
    return _done(notice, "contest.organize", contest=contest, _anchor="final")


@bp.post("/contests/<contest>/final-board")
@login_required
def publish_final(contest: str) -> Any:
    try:
        boards.publish_final(sandbox(), by=g.actor, contest=contest)
    except SandboxError as error:
        return _organize_page(contest, error=problem(error)), error.status
    return _done(gettext("contest.notice.published"), "contest.organize", contest=contest)


@bp.get("/contests/<contest>/queue")
@login_required
def queue(contest: str) -> str:
    return _queue_page(contest)


def _queue_page(contest: str, **extra: Any) -> str:
    found = _contest(contest)
    rows = submissions.contest_queue(sandbox(), by=g.actor, contest=contest)
    return render_template("contest/queue.html", contest=found, submissions=rows, **extra)


@bp.post("/contests/<contest>/submissions/<submission_id>/rerun")
@login_required
def rerun(contest: str, submission_id: str) -> Any:
    try:
        submissions.rerun(
            sandbox(),
            by=g.actor,
            submission_id=submission_id,
            enqueue=current_app.extensions["enqueue_submission"],
        )
    except SandboxError as error:
        return _queue_page(contest, error=problem(error)), error.status
    notice = gettext("contest.notice.rerun", id=submission_id[:12])
    return _done(notice, "contest.queue", contest=contest)
