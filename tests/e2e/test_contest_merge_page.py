"""Merging two teams on the contest's page, in a real browser (Debian's Chromium).

On the demo contest the captain of 常青藤队 asks to merge into 龙城数据队; asking twice
is refused with its rule; the other captain accepts, and the page shows one team with
both members. Once the contest is in its final phase a merge is refused with its rule
(409), never a 500.
"""

from __future__ import annotations

from typing import Any

import pytest

from policies.permissions import Role
from sandbox.access.users import actor_named, add_user
from sandbox.contest import contests, teams
from sandbox.demo import ensure_demo_contest
from tests.e2e.test_contest_pages import DEMO, switch_to
from tests.live import LivePortal, log_in

pytestmark = pytest.mark.browser

IVY = "常青藤队 Team Ivy"
DRAGON = "龙城数据队 Team Dragon City"
CANAL = "运河队"


def test_browser_contest_captains_merge_teams_and_a_refusal_shows_its_rule(
    page: Any, live_portal: LivePortal
) -> None:
    live = live_portal
    ensure_demo_contest(live.sandbox, enqueue=[].append)
    a_third_team_is_founded(live)
    log_in(page, live, "analyst")
    captain_asks_to_merge(page, live)
    switch_to(page, live, "analyst2")
    other_captain_accepts(page, live)
    switch_to(page, live, "analyst")
    member_sees_the_merged_team(page, live)
    switch_to(page, live, "analyst2")
    merge_is_refused_in_the_final_phase(page, live)


def a_third_team_is_founded(live: LivePortal) -> None:
    password = "pw-contest-merge-canal-1"
    add_user(live.sandbox, by="test", username="analyst3", password=password, role=Role.ANALYST)
    live.credentials["analyst3"] = password
    captain = actor_named(live.sandbox, username="analyst3")
    teams.register(live.sandbox, by=captain, contest=DEMO, real_name="王五", institution="常州大学")
    organizer = actor_named(live.sandbox, username="organizer")
    teams.decide_registration(
        live.sandbox, by=organizer, contest=DEMO, username="analyst3", approve=True
    )
    teams.create_team(live.sandbox, by=captain, contest=DEMO, name=CANAL)


def ask(page: Any, team: str) -> Any:
    """Send the merge form with ``team`` chosen; the answer to its POST."""
    form = page.locator("#merge-form")
    form.locator("select[name=into]").select_option(label=team)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        form.locator("button[type=submit]").click()
    page.wait_for_load_state()
    return answer.value


def captain_asks_to_merge(page: Any, live: LivePortal) -> None:
    from playwright.sync_api import expect

    page.goto(f"{live.base_url}/contests/{DEMO}")
    expect(page.locator("#team-name")).to_have_text(IVY)
    options = page.locator("#merge-form select[name=into] option")
    expect(options).to_have_text([CANAL, DRAGON])  # by name; not its own, not the baseline
    assert ask(page, DRAGON).status == 303
    expect(page.locator(".notice")).to_contain_text("已申请合并")
    expect(page.locator("#merge-asked")).to_have_attribute("data-team", DRAGON)
    expect(page.locator("#merge-asked")).to_contain_text("analyst2")

    assert ask(page, DRAGON).status == 409
    expect(page.locator("#problem")).to_have_attribute("data-rule", "team.merge_requested")
    expect(page.locator("#problem")).to_contain_text("已申请过合并")


def other_captain_accepts(page: Any, live: LivePortal) -> None:
    from playwright.sync_api import expect

    page.goto(f"{live.base_url}/contests/{DEMO}")
    asking = page.locator(f"#merge-requests li[data-team='{IVY}']")
    expect(asking).to_contain_text("队长 analyst")
    asking.locator("button[type=submit]").click()
    expect(page.locator(".notice")).to_contain_text(f"两队已合并为 {DRAGON}")
    expect(page.locator("#merge-requests")).to_have_count(0)
    expect(page.locator("#merge-form select[name=into] option")).to_have_text([CANAL])
    both_members_in_one_team(page)


def both_members_in_one_team(page: Any) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#team-name")).to_have_text(DRAGON)
    members = page.locator("#members tbody tr")
    expect(members).to_have_count(2)
    for user in ("analyst", "analyst2"):
        expect(page.locator(f"#members tr[data-user={user}]")).to_have_attribute(
            "data-status", "member"
        )


def member_sees_the_merged_team(page: Any, live: LivePortal) -> None:
    from playwright.sync_api import expect

    page.goto(f"{live.base_url}/contests/{DEMO}")
    both_members_in_one_team(page)
    expect(page.locator("#merge-form")).to_have_count(0)  # no longer a captain


def merge_is_refused_in_the_final_phase(page: Any, live: LivePortal) -> None:
    from playwright.sync_api import expect

    organizer = actor_named(live.sandbox, username="organizer")
    contests.set_phase(live.sandbox, by=organizer, contest=DEMO, phase="final")
    page.goto(f"{live.base_url}/contests/{DEMO}")
    assert ask(page, CANAL).status == 409
    problem = page.locator("#problem")
    expect(problem).to_have_attribute("data-rule", "team.merge_phase")
    expect(problem).to_contain_text("仅在报名或进行中阶段可以合并队伍")
    expect(page.locator("#team-name")).to_have_text(DRAGON)
    # The refusal's page answers a POST: its language switch leads back to the contest page.
    page.click("text=English")
    assert page.url.endswith(f"/contests/{DEMO}")
    expect(page.locator("#merge-form label")).to_contain_text("Merge my team into")
    assert ask(page, CANAL).status == 409
    expect(problem).to_contain_text("Teams merge only during registration")
