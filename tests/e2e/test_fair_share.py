"""Fairness over HTTP: per-analyst limits answer 429 with the rule and when to retry."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.live import LivePortal, start_live_portal

SLOW = "import time\nimport sandbox_job\ntime.sleep(4)\n"


@pytest.fixture(scope="module")
def limited_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePortal]:
    live = start_live_portal(
        tmp_path_factory.mktemp("fair") / "instance",
        max_active_jobs=2,
        max_submissions_per_minute=4,
    )
    yield live
    live.stop()


def post_job(live: LivePortal, token: str, code: str, language: str = "python"):  # type: ignore[no-untyped-def]
    body = {"dataset": "health", "language": language, "mode": "masked", "code": code}
    request = urllib.request.Request(
        live.base_url + "/api/v1/jobs",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


def test_fair_share_limits_active_jobs_then_submissions_per_minute(
    limited_portal: LivePortal,
) -> None:
    live = limited_portal
    token = live.token("analyst")
    first = [post_job(live, token, SLOW) for _ in range(2)]
    assert [status for status, _, _ in first] == [202, 202]
    status, body, headers = post_job(live, token, SLOW)
    assert status == 429, body
    assert body["error"]["rule"] == "fair_share.active_jobs"
    assert int(headers["Retry-After"]) > 0
    # Another analyst's share is their own.
    other = live.token("analyst2") if "analyst2" in live.credentials else None
    for _, started, _ in first:
        live.wait_for(started["id"], token, timeout=120)
    # Two more fit the minute (4 in all, the refused one not counted); the next does not.
    quick = "SELECT COUNT(*) AS n FROM visits"
    more = [post_job(live, token, quick, "sql") for _ in range(2)]
    assert [status for status, _, _ in more] == [202, 202]
    for _, started, _ in more:
        live.wait_for(started["id"], token, timeout=120)
    status, body, headers = post_job(live, token, quick, "sql")
    assert status == 429 and body["error"]["rule"] == "fair_share.per_minute"
    assert 0 < int(headers["Retry-After"]) <= 60
    if other:
        assert post_job(live, other, quick, "sql")[0] == 202
