"""The web pages in a real browser (Debian's Chromium) against the whole running product."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from datasets.health_manifest import DISTRICTS
from tests.live import LivePortal, log_in

pytestmark = pytest.mark.browser

MASKED_SQL = (
    "SELECT p.district, COUNT(*) AS n FROM visits v "
    "JOIN patients p ON v.person_id = p.person_id GROUP BY p.district"
)
FORBIDDEN_SQL = "SELECT name, COUNT(*) AS n FROM patients GROUP BY name"
FINAL = re.compile(r"^(released|rejected|failed|withheld)$")
SCREENSHOT = Path("/tmp/job-page.png")


def submit_job(page: Any, live: LivePortal, code: str) -> None:
    page.goto(live.base_url + "/jobs/new")
    page.select_option("select[name=dataset]", "health")
    page.check("input[name=mode][value=masked]")
    page.select_option("select[name=language]", "sql")
    page.fill("textarea[name=code]", code)
    page.click("form.job-form button[type=submit]")


def test_browser_catalog_and_schema_mark_negative_list(page: Any, live_portal: LivePortal) -> None:
    from playwright.sync_api import expect

    log_in(page, live_portal)
    health = page.locator("#catalog tr[data-dataset=health]")
    expect(health).to_contain_text("health")
    expect(health).to_contain_text("可用")
    health.get_by_role("link", name="查看结构").click()
    page.wait_for_url(live_portal.base_url + "/datasets/health")
    id_card = page.locator("tr[data-column='patients.id_card']")
    expect(id_card).to_contain_text("身份证号")
    expect(id_card).to_contain_text("负面清单")
    expect(id_card).to_have_class(re.compile(r"\bforbidden\b"))
    expect(page.locator("tr[data-column='patients.district']")).not_to_contain_text("负面清单")


def test_browser_masked_job_released_with_district_rows(page: Any, live_portal: LivePortal) -> None:
    from playwright.sync_api import expect

    log_in(page, live_portal)
    submit_job(page, live_portal, MASKED_SQL)
    page.wait_for_url(re.compile(re.escape(live_portal.base_url) + r"/jobs/[^/]+$"))
    status = page.locator("#job-status")
    # No manual reloads: the page's own meta refresh must bring the final state.
    expect(status).to_have_attribute("data-status", FINAL, timeout=120_000)
    expect(status).to_have_attribute("data-status", "released")
    expect(page.locator("#refreshing")).to_have_count(0)
    expect(page.locator("meta[http-equiv=refresh]")).to_have_count(0)

    table = page.locator("#result table.result")
    expect(table.locator("thead th")).to_have_text(["district", "n"])
    districts = table.locator("tbody tr td:first-child").all_inner_texts()
    assert districts and {d.strip() for d in districts} <= set(DISTRICTS), districts
    expect(page.locator("#disclosure")).to_contain_text("k = 10")
    expect(page.locator("#epsilon-spent")).to_have_text("0")
    expect(page.locator("#key-id")).to_have_text(re.compile(r"^[0-9a-f]{16}$"))
    expect(page.locator("#outputs-hash")).to_have_text(re.compile(r"^[0-9a-f]{64}$"))
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.click("nav.main-nav >> text=我的作业")
    expect(page.locator("#jobs tbody tr").first).to_contain_text("已发布")


def test_browser_forbidden_column_shows_finding_and_keeps_code(
    page: Any, live_portal: LivePortal
) -> None:
    from playwright.sync_api import expect

    log_in(page, live_portal)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        submit_job(page, live_portal, FORBIDDEN_SQL)
    assert answer.value.status == 422
    findings = page.locator("#findings")
    expect(findings).to_contain_text("column.forbidden")
    expect(findings.locator("li.finding").first).to_contain_text("位置")
    expect(page.locator("textarea[name=code]")).to_have_value(FORBIDDEN_SQL)


def test_browser_english_switch_shows_english_labels(page: Any, live_portal: LivePortal) -> None:
    from playwright.sync_api import expect

    log_in(page, live_portal)
    expect(page.locator("nav.main-nav")).to_contain_text("目录")
    page.click("text=English")
    nav = page.locator("nav.main-nav")
    expect(nav).to_contain_text("Catalog")
    expect(nav).to_contain_text("New job")
    expect(nav).to_contain_text("My jobs")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("h1")).to_have_text("Dataset catalog")
    page.goto(live_portal.base_url + "/datasets/health")
    expect(page.locator("tr[data-column='patients.id_card']")).to_contain_text("Negative list")
    page.click("text=中文")
    expect(page.locator("nav.main-nav")).to_contain_text("目录")


def test_browser_wrong_password_shows_error(page: Any, live_portal: LivePortal) -> None:
    from playwright.sync_api import expect

    page.goto(live_portal.base_url + "/")
    page.wait_for_url(re.compile(r"/login"))
    page.fill("input[name=username]", "analyst")
    page.fill("input[name=password]", "not-the-password")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click("form button[type=submit]")
    assert answer.value.status == 401
    expect(page.locator(".alert-error")).to_have_text("用户名或密码错误。")
    expect(page.locator("input[name=username]")).to_have_value("analyst")
    expect(page.locator("input[name=password]")).to_have_value("")
