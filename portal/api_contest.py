"""The contest's JSON API so far: contests and tracks (organizers), real-name registration,
teams and invitations, disqualification and merging, disputes (ARCHITECTURE.md, "HTTP API").
Views parse, call one action, serialize.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify

from portal.auth import login_required, sandbox
from portal.json_body import json_object, optional_text, text
from sandbox.contest import contests, disputes, teams
from sandbox.errors import InvalidRequest

bp = Blueprint("api_contest", __name__, url_prefix="/api/v1")


@bp.get("/contests")
@login_required
def list_contests() -> Any:
    return jsonify(contests=contests.list_contests(sandbox()))


@bp.post("/contests")
@login_required
def create_contest() -> Any:
    body = json_object()
    created = contests.create_contest(
        sandbox(),
        by=g.actor,
        slug=text(body, "slug"),
        title=text(body, "title"),
        title_en=str(body.get("title_en") or ""),
    )
    return jsonify(created), 201


@bp.post("/contests/<contest>/tracks")
@login_required
def add_track(contest: str) -> Any:
    body = json_object()
    features = _names(body, "features", "a list of table names")
    withheld = _names(body, "withheld", "a list of table.column names")
    defaults = contests.TrackTerms("", "", "", "", "", "")
    terms = contests.TrackTerms(
        slug=text(body, "slug"),
        title=text(body, "title"),
        dataset=text(body, "dataset"),
        task=text(body, "task"),
        target=text(body, "target"),
        metric=text(body, "metric"),
        features=tuple(features),
        title_en=str(body.get("title_en") or ""),
        daily_quota=body.get("daily_quota", defaults.daily_quota),
        total_quota=body.get("total_quota", defaults.total_quota),
        max_running=body.get("max_running", defaults.max_running),
        withheld=tuple(withheld),
        event=optional_text(body, "event") or "",
        baseline=optional_text(body, "baseline") or "",
    )
    return jsonify(contests.add_track(sandbox(), by=g.actor, contest=contest, terms=terms)), 201


def _names(body: dict[str, Any], name: str, what: str) -> list[str]:
    value = body.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"{name} must be {what}.", field=name)
    return value


@bp.post("/contests/<contest>/phase")
@login_required
def set_phase(contest: str) -> Any:
    phase = text(json_object(), "phase")
    moved = contests.set_phase(
        sandbox(),
        by=g.actor,
        contest=contest,
        phase=phase,
        enqueue=current_app.extensions["enqueue_submission"],
    )
    return jsonify(moved)


@bp.post("/contests/<contest>/registrations")
@login_required
def register(contest: str) -> Any:
    body = json_object()
    registered = teams.register(
        sandbox(),
        by=g.actor,
        contest=contest,
        real_name=text(body, "real_name"),
        institution=text(body, "institution"),
    )
    return jsonify(registered), 201


@bp.post("/contests/<contest>/registrations/<username>/<any(approve, reject):decision>")
@login_required
def decide_registration(contest: str, username: str, decision: str) -> Any:
    decided = teams.decide_registration(
        sandbox(), by=g.actor, contest=contest, username=username, approve=decision == "approve"
    )
    return jsonify(decided)


@bp.post("/contests/<contest>/teams")
@login_required
def create_team(contest: str) -> Any:
    name = text(json_object(), "name")
    return jsonify(teams.create_team(sandbox(), by=g.actor, contest=contest, name=name)), 201


@bp.get("/contests/<contest>/team")
@login_required
def my_team(contest: str) -> Any:
    return jsonify(team=teams.my_team(sandbox(), by=g.actor, contest=contest))


@bp.post("/teams/<team_id>/invitations")
@login_required
def invite(team_id: str) -> Any:
    username = text(json_object(), "username")
    return jsonify(teams.invite(sandbox(), by=g.actor, team_id=team_id, username=username))


@bp.post("/teams/<team_id>/accept")
@login_required
def accept(team_id: str) -> Any:
    return jsonify(teams.accept_invitation(sandbox(), by=g.actor, team_id=team_id))


@bp.post("/teams/<team_id>/disqualify")
@login_required
def disqualify(team_id: str) -> Any:
    reason = text(json_object(), "reason")
    return jsonify(teams.disqualify(sandbox(), by=g.actor, team_id=team_id, reason=reason))


@bp.post("/teams/<team_id>/merge")
@login_required
def merge(team_id: str) -> Any:
    """Both captains post the same pair: the first asks, the second's post merges."""
    into = text(json_object(), "into")
    merged = teams.merge_teams(sandbox(), by=g.actor, team_id=team_id, into_team_id=into)
    return jsonify(merged)


@bp.post("/contests/<contest>/disputes")
@login_required
def raise_dispute(contest: str) -> Any:
    body = json_object()
    raised = disputes.raise_dispute(
        sandbox(),
        by=g.actor,
        contest=contest,
        kind=text(body, "kind"),
        text=text(body, "text"),
        submission_id=optional_text(body, "submission"),
    )
    return jsonify(raised), 201


@bp.get("/contests/<contest>/disputes")
@login_required
def list_disputes(contest: str) -> Any:
    return jsonify(disputes=disputes.list_disputes(sandbox(), by=g.actor, contest=contest))


@bp.post("/disputes/<int:dispute_id>/decision")
@login_required
def decide_dispute(dispute_id: int) -> Any:
    body = json_object()
    decision = body.get("decision")
    if decision not in ("uphold", "reject"):
        raise InvalidRequest("decision must be uphold or reject.", field="decision")
    decided = disputes.decide_dispute(
        sandbox(),
        by=g.actor,
        dispute_id=dispute_id,
        uphold=decision == "uphold",
        comment=text(body, "comment"),
    )
    return jsonify(decided)
