"""The contest's JSON API for submissions and leaderboards (ARCHITECTURE.md, "HTTP API").

Views parse, call one action, serialize. Submissions go to the contest queue
(``app.extensions["enqueue_submission"]``), the private scorings at the close too.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from portal.auth import login_required, sandbox
from portal.json_body import json_object, text
from sandbox.contest import boards, submissions
from sandbox.errors import InvalidRequest

bp = Blueprint("api_submissions", __name__, url_prefix="/api/v1")
# An uploaded submission's largest size (the checker's length limit applies after).
MAX_UPLOAD_BYTES = 512 * 1024


@bp.post("/contests/<contest>/tracks/<track>/submissions")
@login_required
def submit(contest: str, track: str) -> Any:
    code = _code()
    queued = submissions.submit(
        sandbox(),
        by=g.actor,
        contest=contest,
        track=track,
        code=code,
        enqueue=current_app.extensions["enqueue_submission"],
    )
    return jsonify(queued), 202


@bp.get("/contests/<contest>/tracks/<track>/submissions")
@login_required
def my_submissions(contest: str, track: str) -> Any:
    return jsonify(submissions.my_submissions(sandbox(), by=g.actor, contest=contest, track=track))


@bp.get("/contests/<contest>/tracks/<track>/leaderboard")
@login_required
def leaderboard(contest: str, track: str) -> Any:
    return jsonify(boards.leaderboard(sandbox(), contest=contest, track=track))


@bp.get("/contests/<contest>/tracks/<track>/schema")
@login_required
def schema(contest: str, track: str) -> Any:
    return jsonify(submissions.track_schema(sandbox(), contest=contest, track=track))


@bp.get("/contests/<contest>/tracks/<track>/mock")
@login_required
def mock(contest: str, track: str) -> Any:
    csv = submissions.mock_part(
        sandbox(),
        contest=contest,
        track=track,
        part=request.args.get("part", "train"),
        table=request.args.get("table", ""),
    )
    return Response(csv, mimetype="text/csv")


@bp.get("/submissions/<submission_id>")
@login_required
def get_submission(submission_id: str) -> Any:
    return jsonify(submissions.get_submission(sandbox(), by=g.actor, submission_id=submission_id))


@bp.post("/submissions/<submission_id>/select")
@login_required
def select(submission_id: str) -> Any:
    chosen = json_object().get("selected", True)
    if not isinstance(chosen, bool):
        raise InvalidRequest("selected must be true or false.", field="selected")
    return jsonify(
        submissions.select_final(
            sandbox(), by=g.actor, submission_id=submission_id, selected=chosen
        )
    )


@bp.post("/submissions/<submission_id>/rerun")
@login_required
def rerun(submission_id: str) -> Any:
    return jsonify(
        submissions.rerun(
            sandbox(),
            by=g.actor,
            submission_id=submission_id,
            enqueue=current_app.extensions["enqueue_submission"],
        )
    ), 202


@bp.get("/contests/<contest>/submissions")
@login_required
def contest_queue(contest: str) -> Any:
    return jsonify(submissions=submissions.contest_queue(sandbox(), by=g.actor, contest=contest))


@bp.post("/contests/<contest>/final-scoring")
@login_required
def final_scoring(contest: str) -> Any:
    started = boards.start_final_scoring(
        sandbox(), by=g.actor, contest=contest, enqueue=current_app.extensions["enqueue_final"]
    )
    return jsonify(started), 202


@bp.post("/contests/<contest>/final-board")
@login_required
def publish_final(contest: str) -> Any:
    return jsonify(boards.publish_final(sandbox(), by=g.actor, contest=contest))


def _code() -> str:
    """The code from a JSON body ``{code}`` or from an uploaded ``file`` (multipart)."""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise InvalidRequest("Upload the submission as the form field file.", field="file")
        raw = upload.read(MAX_UPLOAD_BYTES + 1)
        if len(raw) > MAX_UPLOAD_BYTES:
            raise InvalidRequest("The uploaded file is too large.", field="file")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidRequest("The uploaded file is not UTF-8 text.", field="file") from error
    return text(json_object(), "code")
