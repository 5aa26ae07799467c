"""The contest's submission API over HTTP: submitting (JSON or an uploaded file), the
refusals a team can meet (checker, quota, phase, team, someone else's submission),
and the public leaderboard once the baselines are scored."""

from __future__ import annotations

import datetime as dt
import io
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from policies.permissions import Role
from sandbox.access.users import create_user
from sandbox.contest import scoring
from sandbox.context import Sandbox
from sandbox.demo import DEMO_CONTEST, ensure_demo_contest
from sandbox.models import Submission, Track, utcnow
from tests.clients import Bearer, request_token
from tests.factories import make_app

TRACK = "length-of-stay"
SUBMISSIONS = f"/api/v1/contests/{DEMO_CONTEST}/tracks/{TRACK}/submissions"
CODE = """import numpy as np


def fit(train):
    return float(train["visits"]["length_of_stay"].mean())


def predict(model, features):
    return np.full(len(features["visits"]), model)
"""


@pytest.fixture
def app(sandbox_instance: Sandbox) -> Flask:
    """The portal over the demo contest, open; its baselines queued, not run."""
    app = make_app(sandbox_instance)
    ensure_demo_contest(sandbox_instance, enqueue=app.config["QUEUED_SUBMISSIONS"].append)
    return app


def test_submit_json_is_accepted_and_queued(
    app: Flask, client: FlaskClient, bearer: Bearer
) -> None:
    baselines = list(app.config["QUEUED_SUBMISSIONS"])
    analyst = bearer("analyst")

    answer = client.post(SUBMISSIONS, json={"code": CODE}, headers=analyst)

    assert answer.status_code == 202, answer.get_json()
    queued = answer.get_json()
    assert (queued["status"], queued["track"]) == ("queued", TRACK)
    assert app.config["QUEUED_SUBMISSIONS"] == [*baselines, queued["id"]]
    shown = client.get(f"/api/v1/submissions/{queued['id']}", headers=analyst)
    assert shown.status_code == 200 and shown.get_json()["code"] == CODE
    mine = client.get(SUBMISSIONS, headers=analyst).get_json()
    assert [s["id"] for s in mine["submissions"]] == [queued["id"]]
    assert mine["quotas"]["daily"]["used"] == 1


def test_submit_file_upload_is_accepted(app: Flask, client: FlaskClient, bearer: Bearer) -> None:
    analyst = bearer("analyst")

    answer = client.post(
        SUBMISSIONS,
        data={"file": (io.BytesIO(CODE.encode()), "submission.py")},
        content_type="multipart/form-data",
        headers=analyst,
    )

    assert answer.status_code == 202, answer.get_json()
    submission_id = answer.get_json()["id"]
    assert app.config["QUEUED_SUBMISSIONS"][-1] == submission_id
    shown = client.get(f"/api/v1/submissions/{submission_id}", headers=analyst).get_json()
    assert shown["code"] == CODE


def test_submit_without_fit_is_422_naming_missing_function(
    app: Flask, client: FlaskClient, bearer: Bearer
) -> None:
    baselines = list(app.config["QUEUED_SUBMISSIONS"])
    code = "def predict(model, features):\n    return [0.0] * len(features['visits'])\n"

    answer = client.post(SUBMISSIONS, json={"code": code}, headers=bearer("analyst"))

    assert answer.status_code == 422
    error = answer.get_json()["error"]
    assert error["code"] == "policy_violation"
    (finding,) = error["findings"]
    assert finding["rule"] == "submission.missing_function"
    assert finding["params"] == {"signature": "fit(train)"}
    assert app.config["QUEUED_SUBMISSIONS"] == baselines  # nothing stored, nothing queued
    mine = client.get(SUBMISSIONS, headers=bearer("analyst")).get_json()
    assert mine["submissions"] == []


def test_submit_past_daily_quota_is_429_with_resets_at(
    app: Flask, client: FlaskClient, bearer: Bearer, sandbox_instance: Sandbox
) -> None:
    # Two a day, and room to run them all: queued submissions count as running, and the
    # running quota (2 by default) would refuse first. How quotas are set is not tested here.
    with sandbox_instance.tx() as session:
        track = session.scalars(select(Track).where(Track.slug == TRACK)).one()
        track.daily_quota, track.max_running = 2, 10
        track_id = track.id
    analyst = bearer("analyst")
    for _ in range(2):
        assert client.post(SUBMISSIONS, json={"code": CODE}, headers=analyst).status_code == 202

    answer = client.post(SUBMISSIONS, json={"code": CODE}, headers=analyst)

    assert answer.status_code == 429
    error = answer.get_json()["error"]
    assert (error["code"], error["rule"]) == ("quota_exceeded", "quota.daily")
    resets_at = dt.datetime.fromisoformat(error["resets_at"])
    # The next midnight of the sandbox's time zone.
    zone = ZoneInfo(sandbox_instance.settings.time_zone)
    tomorrow = utcnow().astimezone(zone).date() + dt.timedelta(days=1)
    assert resets_at == dt.datetime.combine(tomorrow, dt.time(), tzinfo=zone)
    wait = int(answer.headers["Retry-After"])
    assert 0 < wait <= 24 * 3600
    assert abs((utcnow() + dt.timedelta(seconds=wait)) - resets_at) < dt.timedelta(seconds=60)
    assert error["quotas"]["daily"] == {
        "limit": 2,
        "used": 2,
        "left": 0,
        "resets_at": error["resets_at"],
    }
    with sandbox_instance.tx() as session:
        stored = session.scalars(select(Submission.id).where(Submission.track_id == track_id))
        assert len(list(stored)) == 3  # the baseline's and the team's two


def test_submit_in_final_phase_is_409_contest_closed(client: FlaskClient, bearer: Bearer) -> None:
    moved = client.post(
        f"/api/v1/contests/{DEMO_CONTEST}/phase",
        json={"phase": "final"},
        headers=bearer("organizer"),
    )
    assert moved.status_code == 200, moved.get_json()

    answer = client.post(SUBMISSIONS, json={"code": CODE}, headers=bearer("analyst"))

    assert answer.status_code == 409
    assert answer.get_json()["error"]["rule"] == "contest.closed"


def test_submit_by_user_in_no_team_is_403(client: FlaskClient, sandbox_instance: Sandbox) -> None:
    with sandbox_instance.tx() as session:
        create_user(
            session, username="loner", password="solo-team-pw-123", role=Role.ANALYST, by="setup"
        )
    loner = {"Authorization": f"Bearer {request_token(client, 'loner', 'solo-team-pw-123')}"}

    answer = client.post(SUBMISSIONS, json={"code": CODE}, headers=loner)

    assert answer.status_code == 403
    assert answer.get_json()["error"]["rule"] == "team.not_in_track"
    assert client.get(SUBMISSIONS, headers=loner).status_code == 403


def test_other_teams_submission_is_404(client: FlaskClient, bearer: Bearer) -> None:
    queued = client.post(SUBMISSIONS, json={"code": CODE}, headers=bearer("analyst")).get_json()
    path = f"/api/v1/submissions/{queued['id']}"

    answer = client.get(path, headers=bearer("analyst2"))

    assert answer.status_code == 404
    assert queued["team"] not in answer.get_data(as_text=True)
    assert client.get(path, headers=bearer("organizer")).status_code == 200
    assert client.post(f"{path}/select", json={}, headers=bearer("analyst2")).status_code == 404


def test_leaderboard_shows_baseline_after_scoring(
    app: Flask, client: FlaskClient, bearer: Bearer, sandbox_instance: Sandbox
) -> None:
    board = f"/api/v1/contests/{DEMO_CONTEST}/tracks/readmission-30d/leaderboard"
    assert client.get(board, headers=bearer("analyst")).get_json()["public"] == []
    with sandbox_instance.tx() as session:
        track_of = {
            s.id: session.get_one(Track, s.track_id).slug
            for s in session.scalars(
                select(Submission).where(Submission.id.in_(app.config["QUEUED_SUBMISSIONS"]))
            )
        }
    (baseline,) = [i for i, slug in track_of.items() if slug == "readmission-30d"]

    # What the worker does with the queued baseline, here in this process.
    assert scoring.run_submission(sandbox_instance, baseline) == "scored"

    shown = client.get(board, headers=bearer("analyst")).get_json()
    (line,) = shown["public"]
    assert (line["place"], line["baseline"], line["submissions"]) == (1, True, 1)
    assert line["team"] == "基线 Baseline"
    assert line["low"] <= line["score"] <= line["high"]
    assert (shown["metric"], shown["rule"], shown["phase"]) == ("roc_auc", "ladder", "open")
    scored = client.get(f"/api/v1/submissions/{baseline}", headers=bearer("organizer")).get_json()
    assert scored["score"]["shown"] == line["score"]
    other = f"/api/v1/contests/{DEMO_CONTEST}/tracks/{TRACK}/leaderboard"
    assert client.get(other, headers=bearer("analyst")).get_json()["public"] == []
