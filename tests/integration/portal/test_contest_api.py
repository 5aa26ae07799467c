"""The contest over HTTP so far: an organizer sets a contest and a track up, researchers
register under their real names, the organizer approves, a team forms."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.clients import Bearer


def test_a_contest_is_set_up_and_a_team_forms_over_http(
    client: FlaskClient, bearer: Bearer
) -> None:
    organizer, analyst, analyst2 = bearer("organizer"), bearer("analyst"), bearer("analyst2")
    created = client.post(
        "/api/v1/contests",
        json={"slug": "health-2026", "title": "健康医疗大数据创新应用大赛"},
        headers=organizer,
    )
    assert created.status_code == 201, created.get_json()
    track = client.post(
        "/api/v1/contests/health-2026/tracks",
        json={
            "slug": "readmission",
            "title": "30天再入院预测",
            "dataset": "health",
            "task": "binary",
            "target": "visits.readmitted_30d",
            "metric": "roc_auc",
            "daily_quota": 3,
        },
        headers=organizer,
    )
    assert track.status_code == 201, track.get_json()
    assert track.get_json()["quotas"]["daily"] == 3
    # Only organizers set contests up; a bad term names its field.
    assert (
        client.post(
            "/api/v1/contests", json={"slug": "x", "title": "x"}, headers=analyst
        ).status_code
        == 403
    )
    bad = client.post(
        "/api/v1/contests/health-2026/tracks",
        json={**track.get_json(), "slug": "other", "metric": "rmse", "dataset": "health"},
        headers=organizer,
    )
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "metric"
    for who in (analyst, analyst2):
        answer = client.post(
            "/api/v1/contests/health-2026/registrations",
            json={"real_name": "张伟", "institution": "常州大学"},
            headers=who,
        )
        assert answer.status_code == 201, answer.get_json()
    for name in ("analyst", "analyst2"):
        decided = client.post(
            f"/api/v1/contests/health-2026/registrations/{name}/approve", headers=organizer
        )
        assert decided.get_json()["status"] == "approved"
    team = client.post("/api/v1/contests/health-2026/teams", json={"name": "龙城"}, headers=analyst)
    assert team.status_code == 201, team.get_json()
    team_id = team.get_json()["id"]
    assert (
        client.post(
            f"/api/v1/teams/{team_id}/invitations", json={"username": "analyst2"}, headers=analyst
        ).status_code
        == 200
    )
    assert client.post(f"/api/v1/teams/{team_id}/accept", headers=analyst2).status_code == 200
    mine = client.get("/api/v1/contests/health-2026/team", headers=analyst2).get_json()["team"]
    assert sorted(m["user"] for m in mine["members"]) == ["analyst", "analyst2"]
    listed = client.get("/api/v1/contests", headers=analyst).get_json()["contests"]
    assert [c["slug"] for c in listed] == ["health-2026"]
    assert "split_key" not in str(listed)
