"""The front door in a real browser: the main pages under the Content-Security-Policy report
no violation, and a person issues and revokes an API token on their tokens page."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.live import LivePortal, log_in

pytestmark = pytest.mark.browser

MASKED_SQL = (
    "SELECT p.district, COUNT(*) AS n FROM visits v "
    "JOIN patients p ON v.person_id = p.person_id GROUP BY p.district"
)
DP_SQL = "SELECT department, COUNT(*) AS n, AVG(cost) AS mean_cost FROM visits GROUP BY department"
VIOLATION = re.compile(r"Content Security Policy|Refused to", re.IGNORECASE)


def released_jobs(live: LivePortal) -> list[str]:
    """A masked and a DP job of the analyst's, released (the DP one draws the owner's chart)."""
    return live.release_sql_jobs(
        "analyst", dataset="health", jobs=[("masked", MASKED_SQL, None), ("dp", DP_SQL, 0.5)]
    )


def test_browser_main_pages_report_no_csp_violation(
    browser: Any, page: Any, live_portal: LivePortal
) -> None:
    jobs = released_jobs(live_portal)
    pages = {
        "analyst": ["/", "/datasets/health", "/jobs/new", "/jobs", *[f"/jobs/{j}" for j in jobs]],
        "owner": ["/owner", "/owner/datasets/health"],
        "auditor": ["/reviews", "/audit"],
        "admin": ["/tokens", "/contests"],
    }
    reported: list[str] = []
    for username, paths in pages.items():
        context = browser.new_context()
        context.set_default_timeout(15_000)
        tab = context.new_page()
        tab.on("console", lambda message, tab=tab: reported.append(f"{tab.url}: {message.text}"))
        tab.on("pageerror", lambda error, tab=tab: reported.append(f"{tab.url}: {error}"))
        tab.goto(live_portal.base_url + "/no-such-page")  # the error page, logged out
        tab.goto(live_portal.base_url + "/login")
        log_in(tab, live_portal, username)
        for path in paths:
            answer = tab.goto(live_portal.base_url + path)
            assert answer is not None and answer.status == 200, path
            assert "'unsafe-inline'" not in answer.headers["content-security-policy"]
            # The stylesheet applied (blocked, the page would be unstyled).
            assert tab.evaluate("getComputedStyle(document.body).margin") == "0px", path
        context.close()
    violations = [line for line in reported if VIOLATION.search(line)]
    assert violations == []
    # The check itself: an inline style put on a page is refused and reported.
    page.goto(live_portal.base_url + "/login")
    with page.expect_console_message(lambda m: bool(VIOLATION.search(m.text))):
        page.evaluate(
            "document.body.insertAdjacentHTML('beforeend', '<b style=\"color:red\">x</b>')"
        )
    page.goto("about:blank")
    assert page.url == "about:blank"  # the fixture's own page stayed unused


def test_browser_tokens_page_issue_then_revoke(page: Any, live_portal: LivePortal) -> None:
    from playwright.sync_api import expect

    log_in(page, live_portal, "analyst2")
    page.click("#nav-tokens")
    page.wait_for_url(live_portal.base_url + "/tokens")
    form = page.locator("#new-token-form")
    form.locator("input[name=label]").fill("browser-test")
    form.locator("input[name=lifetime_days]").fill("3")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        form.locator("button[type=submit]").click()
    assert answer.value.status == 201
    assert answer.value.headers["cache-control"] == "no-store"
    token = page.locator("#new-token").inner_text().strip()
    status, _ = live_portal.request("GET", "/api/v1/datasets", token=token)
    assert status == 200
    row = page.locator("#tokens tr", has_text="browser-test")
    expect(row).to_have_attribute("data-state", "active")
    row.locator(".revoke-token-form button").click()
    page.wait_for_url(live_portal.base_url + "/tokens")
    expect(page.locator("#tokens tr", has_text="browser-test")).to_have_attribute(
        "data-state", "revoked"
    )
    expect(page.locator("#new-token")).to_have_count(0)  # shown once, not again
    status, body = live_portal.request("GET", "/api/v1/datasets", token=token)
    assert status == 401 and "revoked" in body["error"]["message"]
