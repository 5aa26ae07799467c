"""Auditor review in a real browser (Debian's Chromium) against the whole running product:
an auditor approves a held output on its review page; an analyst objects to a withholding."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
from sqlalchemy import update

from sandbox.models import Grant
from tests.live import LivePortal, log_in

pytestmark = pytest.mark.browser

MASKED_SQL = (
    "SELECT p.district, COUNT(*) AS n FROM visits v "
    "JOIN patients p ON v.person_id = p.person_id GROUP BY p.district"
)


def held_job(live: LivePortal, code: str = MASKED_SQL) -> str:
    """A job of the analyst's, held for review because the grant asks for it."""
    with live.sandbox.tx() as session:
        session.execute(update(Grant).values(requires_review=True))
    job = live.run_job(
        "analyst", {"dataset": "health", "language": "sql", "mode": "masked", "code": code}
    )
    assert job["status"] == "pending_review", job
    return str(job["id"])


def test_browser_auditor_approves_held_output(page: Any, live_portal: LivePortal) -> None:
    from playwright.sync_api import expect

    job_id = held_job(live_portal)
    log_in(page, live_portal, "auditor")
    page.click("nav.main-nav >> text=结果审核")
    page.wait_for_url(live_portal.base_url + "/reviews")
    row = page.locator(f"#review-queue tr[data-job='{job_id}']")
    expect(row).to_contain_text("analyst")
    expect(row).to_contain_text("0 / 1")
    row.get_by_role("link", name=job_id).click()
    page.wait_for_url(f"{live_portal.base_url}/reviews/{job_id}")

    expect(page.locator("#review-status")).to_have_attribute("data-status", "pending_review")
    expect(page.locator("#review-analyst")).to_have_text("analyst")
    expect(page.locator("#review-code")).to_contain_text("GROUP BY p.district")
    held = page.locator("#held-outputs table.result")
    expect(held.locator("thead th")).to_have_text(["district", "n"])
    expect(held.locator("tbody tr").first).to_be_visible()

    page.check("#review-form input[name=decision][value=approve]")
    page.fill("#review-form textarea[name=comment]", "只有区县级汇总,可以发布。")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click("#review-form button[type=submit]")
    assert answer.value.status == 303
    page.wait_for_url(f"{live_portal.base_url}/reviews/{job_id}")
    expect(page.locator("#review-status")).to_have_attribute("data-status", "released")
    expect(page.locator("#review-form")).to_have_count(0)
    event = page.locator("#review-history tr.review-event[data-kind=approve]")
    expect(event).to_contain_text("auditor")
    expect(event).to_contain_text("只有区县级汇总,可以发布。")

    token = live_portal.token("analyst")
    status, result = live_portal.request("GET", f"/api/v1/jobs/{job_id}/result", token=token)
    assert status == 200, result
    assert result["certificate"]["document"]["reviewers"] == ["auditor"]
    page.click("nav.main-nav >> text=结果审核")
    expect(page.locator(f"#review-queue tr[data-job='{job_id}']")).to_have_count(0)


def test_browser_analyst_objects_to_withholding(page: Any, live_portal: LivePortal) -> None:
    from playwright.sync_api import expect

    job_id = held_job(live_portal, MASKED_SQL + " ORDER BY p.district")
    auditor = live_portal.token("auditor")
    decision = {"decision": "withhold", "comment": "分组过细"}
    status, body = live_portal.request("POST", f"/api/v1/reviews/{job_id}", decision, auditor)
    assert status == 200 and body["status"] == "withheld", body

    log_in(page, live_portal, "analyst")
    page.goto(f"{live_portal.base_url}/jobs/{job_id}")
    expect(page.locator("#job-status")).to_have_attribute("data-status", "withheld")
    expect(page.locator("#job-review")).to_contain_text("分组过细")
    expect(page.locator("#result")).to_have_count(0)  # the held output is never shown
    page.fill("#objection-form textarea[name=reason]", "每个区县都超过 10 人。")
    page.click("#objection-form button[type=submit]")
    page.wait_for_url(re.compile(re.escape(f"{live_portal.base_url}/jobs/{job_id}") + "$"))
    expect(page.locator("#job-status")).to_have_attribute("data-status", "pending_review")
    expect(page.locator("#objection-form")).to_have_count(0)
    expect(page.locator("#job-review li.review-event[data-kind=objection]")).to_contain_text(
        "每个区县都超过 10 人。"
    )

    _, queue = live_portal.request("GET", "/api/v1/reviews", token=auditor)
    (queued,) = [r for r in queue["reviews"] if r["id"] == job_id]
    assert queued["round"] == 2 and queued["objection"]["comment"] == "每个区县都超过 10 人。"


def test_browser_auditor_sees_every_rule_a_blank_cell_failed(
    page: Any, live_portal: LivePortal
) -> None:
    from playwright.sync_api import expect

    job_id = held_job(
        live_portal,
        "SELECT icd10, COUNT(*) AS n, SUM(CAST(readmitted_30d AS INTEGER)) AS readmitted "
        "FROM visits GROUP BY icd10",
    )
    log_in(page, live_portal, "auditor")
    page.goto(f"{live_portal.base_url}/reviews/{job_id}")
    expect(page.locator("#suppressed-by")).to_contain_text("贡献者少于 k 人")
    blank = page.locator("#held-outputs td[data-rules]").first
    expect(blank).to_contain_text("贡献者少于 k 人")
    assert "threshold" in (blank.get_attribute("data-rules") or "").split()
    # The analyst's own page says how many cells were suppressed, never why.
    token = live_portal.token("analyst")
    status, job = live_portal.request("GET", f"/api/v1/jobs/{job_id}", token=token)
    assert status == 200 and "suppressions" not in job


UNVERIFIED_PYTHON = (
    "import sandbox_job\nv = sandbox_job.table('visits')\n"
    "sandbox_job.frequency_table('costly', v[v.cost > 1000], by=['department'])\n"
)


def test_browser_review_page_leads_with_risk_signals_in_zh_and_en(
    page: Any, live_portal: LivePortal, tmp_path: Any
) -> None:
    from playwright.sync_api import expect

    job = live_portal.run_job(
        "analyst",
        {"dataset": "health", "language": "python", "mode": "masked", "code": UNVERIFIED_PYTHON},
    )
    assert job["status"] == "pending_review", job
    job_id = str(job["id"])

    log_in(page, live_portal, "auditor")
    page.goto(f"{live_portal.base_url}/reviews/{job_id}")
    signals = page.locator("#risk-signals")
    expect(signals.locator("h2")).to_have_text("风险信号")
    quorum = page.locator("#review-quorum")
    expect(quorum).to_have_attribute("data-because", "unverified_output")
    expect(quorum).to_contain_text("已批准 0 / 需要 2")
    expect(quorum).to_contain_text("costly")
    first = signals.locator("li.signal").first
    expect(first).to_have_attribute("data-severity", "high")
    expect(first).to_have_attribute("data-kind", "verification")
    expect(first.locator(".severity")).to_have_text("高")
    expect(first).to_contain_text("沙箱无法自行重新计算输出 costly")
    expect(signals.locator("li.signal[data-kind=persons]")).to_contain_text("最小的组")
    expect(signals.locator("li.signal[data-kind=differencing]")).to_have_count(1)
    # Before the held table, and its severities worst first.
    above = signals.bounding_box()
    table = page.locator("#held-outputs table.result").bounding_box()
    assert above is not None and table is not None and above["y"] + above["height"] <= table["y"]
    order = ["high", "unknown", "medium", "low"]
    shown = signals.locator("li.signal").evaluate_all("(els) => els.map(e => e.dataset.severity)")
    assert shown == sorted(shown, key=order.index), shown
    page.screenshot(path=str(tmp_path / "review-zh.png"), full_page=True)

    page.goto(f"{live_portal.base_url}/lang/en?next=/reviews/{job_id}")
    page.wait_for_url(f"{live_portal.base_url}/reviews/{job_id}")
    expect(signals.locator("h2")).to_have_text("Risk signals")
    expect(quorum).to_contain_text("0 of 2 approvals given")
    expect(quorum).to_contain_text("the sandbox could not verify output costly")
    expect(signals.locator("li.signal").first.locator(".severity")).to_have_text("High")
    expect(signals.locator("li.signal[data-kind=persons]")).to_contain_text("Smallest group")
    page.screenshot(path=str(tmp_path / "review-en.png"), full_page=True)
    shots = os.environ.get("SANDBOX_SCREENSHOTS")
    if shots:  # where a person looks at them
        for name in ("review-zh.png", "review-en.png"):
            (tmp_path / name).replace(f"{shots}/{name}")


def test_browser_owner_lowers_unverified_reviewers(page: Any, live_portal: LivePortal) -> None:
    from playwright.sync_api import expect

    log_in(page, live_portal, "owner")
    page.goto(f"{live_portal.base_url}/owner/datasets/health")
    section = page.locator("#reviewers")
    expect(section.locator("h2")).to_have_text("审核人数")
    expect(page.locator("#unverified-reviewers-required")).to_have_text("2")
    page.select_option("#reviewers-form select[name=unverified_reviewers_required]", "1")
    page.click("#reviewers-form button[type=submit]")
    page.wait_for_url(re.compile(re.escape(f"{live_portal.base_url}/owner/datasets/health")))
    expect(page.locator("#unverified-reviewers-required")).to_have_text("1")
    expect(page.locator("p.notice")).to_contain_text("审核人数设置已保存")
    shots = os.environ.get("SANDBOX_SCREENSHOTS")
    if shots:
        section.screenshot(path=f"{shots}/owner-reviewers.png")
    token = live_portal.token("auditor")
    status, entries = live_portal.request(
        "GET", "/api/v1/audit?action=dataset.unverified_reviewers_required", token=token
    )
    assert status == 200, entries
    (change,) = entries["entries"]
    assert (change["actor"], change["details"]) == ("owner", {"from": 2, "to": 1})
