"""The job page's chart of a released table, in Debian's Chromium against the whole product."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.live import LivePortal, log_in

pytestmark = pytest.mark.browser

DP_SQL = "SELECT department, COUNT(*) AS n, AVG(cost) AS avg_cost FROM visits GROUP BY department"
YEARLY_SQL = (
    "SELECT EXTRACT(YEAR FROM visit_date) AS visit_year, COUNT(*) AS n "
    "FROM visits GROUP BY EXTRACT(YEAR FROM visit_date)"
)
SCREENSHOT = Path("/tmp/job-chart.png")
SCREENSHOT_LINES = Path("/tmp/job-chart-lines.png")
SCREENSHOT_EN = Path("/tmp/job-chart-en.png")


def _released(live: LivePortal, body: dict[str, Any]) -> str:
    job = live.run_job("analyst", {"dataset": "health", **body})
    assert job["status"] == "released", job
    return str(job["id"])


def test_browser_dp_job_page_draws_bars_with_error_bars(page: Any, live_portal: LivePortal) -> None:
    from playwright.sync_api import expect

    job_id = _released(
        live_portal, {"language": "sql", "mode": "dp", "epsilon": 0.5, "code": DP_SQL}
    )
    log_in(page, live_portal)
    page.goto(f"{live_portal.base_url}/jobs/{job_id}")
    chart = page.locator("figure#chart-result")
    expect(chart).to_have_attribute("data-kind", "bar")
    expect(chart).to_have_attribute("data-value", "n")
    svg = chart.locator("svg")
    expect(svg).to_be_visible()
    expect(svg.locator("rect.bar")).to_have_count(10)  # every department
    expect(svg.locator("g.error-bar")).to_have_count(10)
    expect(chart.locator("#chart-result-errors")).to_contain_text("误差线")
    expect(svg.locator("text.tick", has_text="内科").first).to_be_attached()
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # Another value column, picked by a plain link (no script on the page).
    chart.get_by_role("link", name="avg_cost").click()
    chart = page.locator("figure#chart-result")
    expect(chart).to_have_attribute("data-value", "avg_cost")
    # A mean's error is known only where its noisy count is large enough: one error bar
    # for each cell whose released error95 is a number.
    status, result = live_portal.request(
        "GET", f"/api/v1/jobs/{job_id}/result", token=live_portal.token("analyst")
    )
    assert status == 200, result
    (table,) = result["tables"]
    column = table["columns"].index("avg_cost")
    known = [
        row
        for row, errors in zip(table["rows"], table["error95"], strict=True)
        if row[column] is not None and isinstance(errors[column], int | float)
    ]
    assert len(known) >= 5, table["error95"]
    expect(chart.locator("g.error-bar")).to_have_count(len(known))

    page.goto(f"{live_portal.base_url}/lang/en?next=/jobs/{job_id}")
    expect(page.locator("#chart-result-errors")).to_contain_text("Error bars")
    expect(page.locator("figure#chart-result figcaption")).to_contain_text("n by department")
    page.locator("figure#chart-result").screenshot(path=str(SCREENSHOT_EN))


def test_browser_masked_job_by_year_draws_a_line(page: Any, live_portal: LivePortal) -> None:
    from playwright.sync_api import expect

    job_id = _released(live_portal, {"language": "sql", "mode": "masked", "code": YEARLY_SQL})
    log_in(page, live_portal)
    page.goto(f"{live_portal.base_url}/jobs/{job_id}")
    chart = page.locator("figure#chart-result")
    expect(chart).to_have_attribute("data-kind", "line")
    expect(chart.locator("svg polyline.line")).to_have_count(1)
    assert chart.locator("svg circle.dot").count() >= 2
    expect(chart.locator("g.error-bar")).to_have_count(0)  # masked: exact values, no noise
    page.screenshot(path=str(SCREENSHOT_LINES), full_page=True)
