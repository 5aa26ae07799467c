"""The data owners' pages in a real browser (Debian's Chromium) against the whole running
product: an owner imports a GBK-encoded CSV in the browser, confirms the proposals and
publishes it; an analyst asks for access, the owner approves, and the analyst's jobs on
the new dataset are released. Bad files and an early publish show their rule; a second
owner sees nothing of the first owner's."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from datasets.idcard import build_id_cards, is_valid
from policies.permissions import Role
from sandbox.access.users import add_user
from tests.live import LivePortal, log_in

pytestmark = pytest.mark.browser

PERSONS = 300
DEPARTMENTS = ("内科", "外科", "儿科", "妇产科")
MASKED_SQL = "SELECT department, COUNT(*) AS n FROM visits GROUP BY department"
DP_SQL = "SELECT department, COUNT(*) AS n, AVG(cost) AS mean_cost FROM visits GROUP BY department"


def clinic_csv(persons: int = PERSONS, seed: int = 13) -> bytes:
    """A clinic's visits as an owner exports them: GBK, Chinese headers, and resident ID
    numbers in a column whose header is blank (so it is named ``col_3``)."""
    rng = np.random.default_rng(seed)
    areas = rng.choice([110101, 310104, 320402, 440106], persons)
    births = np.datetime64("1950-01-01") + rng.integers(0, 20_000, persons)
    ids = build_id_cards(areas, births, rng.random(persons) < 0.5, rng)
    assert all(is_valid(i) and len(i) == 18 for i in ids)
    lines = ["患者编号,科室,,费用,同意科研"]
    for person in range(persons):
        department = DEPARTMENTS[person % len(DEPARTMENTS)]
        cost = rng.uniform(50, 4_900)
        consent = "否" if person % 10 == 0 else "是"
        lines.append(f"P{person:05d},{department},{ids[person]},{cost:.2f},{consent}")
    return ("\r\n".join(lines) + "\r\n").encode("gbk")


def start_import(page: Any, live: LivePortal, dataset: str) -> str:
    page.goto(live.base_url + "/owner")
    page.fill("#new-import-form input[name=dataset]", dataset)
    page.check("#new-import-form input[name=mode][value=new]")
    page.click("#new-import-form button[type=submit]")
    page.wait_for_url(re.compile(re.escape(live.base_url) + r"/owner/imports/[0-9a-f]+$"))
    return str(page.url.rsplit("/", 1)[1])


def upload(page: Any, name: str, data: bytes, *, encoding: str = "", table: str = "") -> None:
    """Choose a file and send it; the page's script streams it as the request body."""
    form = page.locator("#upload-form")
    form.locator("input[type=file]").set_input_files(
        files=[{"name": name, "mimeType": "text/csv", "buffer": data}]
    )
    form.locator("select[name=encoding]").select_option(encoding)
    form.locator("input[name=table]").fill(table)
    with page.expect_response(lambda r: r.request.method == "PUT") as answer:
        form.locator("button[type=submit]").click()
    assert answer.value.request.headers.get("content-type") == "application/octet-stream"


def switch_to(page: Any, live: LivePortal, username: str) -> None:
    """Log out whoever is logged in, and log ``username`` in."""
    page.click("header form.inline button[type=submit]")
    page.wait_for_url(re.compile(re.escape(live.base_url + "/login")))
    log_in(page, live, username)


def test_browser_owner_imports_publishes_and_approves_an_analyst(
    page: Any, live_portal: LivePortal
) -> None:
    log_in(page, live_portal, "owner")
    owner_publishes_clinic(page, live_portal)
    switch_to(page, live_portal, "analyst")
    analyst_asks_for_clinic(page, live_portal)
    switch_to(page, live_portal, "owner")
    owner_approves_the_analyst(page, live_portal)
    jobs = analysts_jobs_are_released(live_portal)
    owner_sees_the_use(page, live_portal, jobs)


def owner_publishes_clinic(page: Any, live: LivePortal) -> None:
    from playwright.sync_api import expect

    page.click("nav.main-nav >> text=我的数据")
    page.wait_for_url(live.base_url + "/owner")
    expect(page.locator("#my-datasets tr[data-dataset=health]")).to_be_visible()
    import_id = start_import(page, live, "clinic")
    here = re.compile(re.escape(f"{live.base_url}/owner/imports/{import_id}"))

    # 1. Upload in the browser: streamed as the PUT body, GBK named by the owner.
    with page.expect_navigation():
        upload(page, "门诊记录.csv", clinic_csv(), encoding="gbk", table="visits")
    staged = page.locator("#staged tr[data-table=visits]")
    expect(staged).to_contain_text("300")
    expect(staged).to_contain_text("患者编号")
    expect(staged).to_contain_text("col_3")
    expect(page.locator("#import-status")).to_have_attribute("data-status", "staging")

    # 2. Profile: the resident ID column is a direct identifier, and says why.
    page.click("#profile-form button[type=submit]")
    page.wait_for_url(here)
    expect(page.locator("#import-status")).to_have_attribute("data-status", "profiled")
    id_card = page.locator("table.profile tr[data-column=col_3]")
    expect(id_card).to_have_attribute("data-proposed", "direct_identifier")
    expect(id_card.locator(".proposed-class")).to_contain_text("直接标识符")
    expect(id_card.locator(".evidence")).to_contain_text("居民身份证号")
    expect(id_card.locator(".evidence")).to_contain_text("100 %")
    cost = page.locator("table.profile tr[data-column=费用]")
    expect(cost.locator(".derived").first).to_be_visible()
    department = page.locator("table.profile tr[data-column=科室]")
    expect(department).to_have_attribute("data-proposed", "category")

    # 3 and 4. Confirm the columns and the policy in the form.
    form = page.locator("#confirm-form")
    names = ("person_id", "department", "id_card", "cost", "consent_research")
    for number, name in enumerate(names):
        form.locator(f"input[name=t0-c{number}-name]").fill(name)
    expect(form.locator("select[name=t0-c2-class]")).to_have_value("direct_identifier")
    expect(form.locator("input[name=t0-c3-low]")).to_have_value("0")
    form.locator("input[name=t0-c3-high]").fill("5000")
    form.locator("select[name=privacy_unit]").select_option("t0-c0")
    form.locator("select[name=consent]").select_option("t0-c4")
    form.locator("input[name=title]").fill("社区门诊")
    form.locator("input[name=title_en]").fill("Community clinic")
    form.locator("button[type=submit]").last.click()
    page.wait_for_url(here)
    expect(page.locator("#import-status")).to_have_attribute("data-status", "confirmed")
    expect(page.locator("#confirm-problem")).to_have_count(0)

    # 5. Publish, then the dataset is the owner's with version 1.
    page.click("#publish-form button[type=submit]")
    page.wait_for_url(live.base_url + "/owner/datasets/clinic")
    expect(page.locator("#dataset-status")).to_have_attribute("data-status", "published")
    expect(page.locator("#versions tr[data-number='1']")).to_contain_text("visits")
    page.goto(live.base_url + "/owner")
    clinic = page.locator("#my-datasets tr[data-dataset=clinic]")
    expect(clinic.locator(".current-version")).to_have_text("1")
    expect(clinic).to_contain_text("社区门诊")
    expect(page.locator(f"#my-imports tr[data-import='{import_id}']")).to_have_count(0)


def analyst_asks_for_clinic(page: Any, live: LivePortal) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#catalog tr[data-dataset=clinic]")).to_contain_text("社区门诊")
    page.locator("#catalog tr[data-dataset=clinic]").get_by_role("link").click()
    page.wait_for_url(live.base_url + "/datasets/clinic")
    expect(page.locator("tr[data-column='visits.id_card']")).to_contain_text("负面清单")
    ask = page.locator("#access-form")
    expect(ask.locator("input[value='visits.id_card']")).to_have_count(0)
    ask.locator("input[name=purpose]").fill("research")
    ask.locator("input[name=modes][value=dp]").check()
    ask.locator("input[name=epsilon]").fill("3")
    ask.locator("input[name=days]").fill("30")
    ask.locator("textarea[name=justification]").fill("各科室门诊费用的统计分析。")
    ask.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(re.escape(live.base_url + "/datasets/clinic")))
    expect(page.locator("#my-requests tr[data-status=pending]")).to_contain_text("research")


def owner_approves_the_analyst(page: Any, live: LivePortal) -> None:
    from playwright.sync_api import expect

    page.goto(live.base_url + "/owner/datasets/clinic")
    request = page.locator("#requests article.request[data-analyst=analyst]")
    expect(request).to_contain_text("各科室门诊费用的统计分析。")
    request.locator(".approve-form input[name=epsilon]").fill("2")  # narrowed from 3
    request.locator(".approve-form button[type=submit]").click()
    page.wait_for_url(re.compile(re.escape(live.base_url + "/owner/datasets/clinic")))
    expect(page.locator("#grants tr[data-analyst=analyst] .epsilon-left")).to_have_text("2")
    expect(page.locator("#requests tr[data-status=approved]")).to_contain_text("analyst")


def analysts_jobs_are_released(live: LivePortal) -> list[str]:
    token = live.token("analyst")
    jobs = live.release_sql_jobs(
        "analyst", dataset="clinic", jobs=[("masked", MASKED_SQL, None), ("dp", DP_SQL, 1.0)]
    )
    status, result = live.request("GET", f"/api/v1/jobs/{jobs[0]}/result", token=token)
    assert status == 200, result
    (table,) = result["tables"]
    assert table["rows"] and {row[0] for row in table["rows"]} <= set(DEPARTMENTS), table
    return jobs


def owner_sees_the_use(page: Any, live: LivePortal, jobs: list[str]) -> None:
    from playwright.sync_api import expect

    page.goto(live.base_url + "/owner/datasets/clinic")
    expect(page.locator("#grants tr[data-analyst=analyst] .epsilon-left")).to_have_text("1")
    expect(page.locator("#use-chart polyline.use")).to_have_count(1)
    expect(page.locator("#jobs-by-status [data-status=released]")).to_contain_text("2")
    for job_id in jobs:
        expect(page.locator(f"#usage-jobs tr[data-job='{job_id}']")).to_contain_text("已发布")
    expect(page.locator("#usage-audit")).to_contain_text("job.released")

    # The consent registry, streamed like the data: one withdrawal, one new consent.
    registry = (
        b"person_id,purpose,given_at,withdrawn_at\r\n"
        b"P00001,research,2026-01-01,2026-02-01\r\n"
        b"P00000,research,2026-01-05,\r\n"
    )
    consent = page.locator("#consent-form")
    consent.locator("input[type=file]").set_input_files(
        files=[{"name": "授权登记.csv", "mimeType": "text/csv", "buffer": registry}]
    )
    with page.expect_navigation():
        consent.locator("button[type=submit]").click()
    expect(page.locator("#consent-counts")).to_contain_text("已导入 2 行:新增同意 1,撤回 1")


def test_browser_owner_sees_the_rule_of_bad_files_and_an_early_publish(
    page: Any, live_portal: LivePortal
) -> None:
    from playwright.sync_api import expect

    log_in(page, live_portal, "owner")
    start_import(page, live_portal, "clinic_draft")
    problem = page.locator("#upload-problem .problem")

    upload(page, "empty.csv", b"")
    expect(problem).to_have_attribute("data-rule", "import.empty")
    expect(problem).to_contain_text("没有数据")
    expect(problem.locator("[data-place=file]")).to_contain_text("empty.csv")

    # Neither UTF-8 nor GB18030: 0xFF starts no character of either.
    undecodable = "患者编号,科室\r\nP00001,".encode() + b"\xff\xfe\r\n"
    upload(page, "visits.csv", undecodable, table="visits")
    expect(problem).to_have_attribute("data-rule", "import.encoding")
    expect(problem).to_contain_text("无法按此编码读取文件")
    expect(page.locator("#staged")).to_have_count(0)  # nothing was staged

    # A database that does not answer: the error is shown, the password is not.
    connect = page.locator("#connect-form")
    connect.locator("input[name=url]").fill("postgresql://reader:typed-in-url@127.0.0.1:9/clinic")
    connect.locator("input[name=password]").fill("pw-never-shown")
    connect.locator("input[name=table]").fill("visits")
    connect.locator("input[name=name]").fill("visits")
    connect.locator("button[type=submit]").click()
    refused = page.locator("#connect-problem")
    expect(refused).to_have_attribute("data-rule", "import.unreachable")
    expect(connect.locator("input[name=password]")).to_have_value("")
    expect(connect.locator("input[name=url]")).to_have_value(
        "postgresql://reader@127.0.0.1:9/clinic"
    )
    assert "pw-never-shown" not in page.content() and "typed-in-url" not in page.content()

    with page.expect_navigation():
        upload(page, "visits.csv", clinic_csv(40), table="visits")
    page.click("#profile-form button[type=submit]")
    expect(page.locator("#import-status")).to_have_attribute("data-status", "profiled")
    page.click("#publish-form button[type=submit]")
    early = page.locator("#publish-problem")
    expect(early).to_have_attribute("data-rule", "import.unconfirmed")
    expect(early).to_contain_text("还有未确认的列")

    # A confirmation the definition refuses names its place; the form keeps what was typed.
    page.locator("#confirm-form input[name=t0-c3-low]").fill("9000")
    page.locator("#confirm-form input[name=t0-c3-high]").fill("10")
    page.locator("#confirm-form button[type=submit]").last.click()
    refused = page.locator("#confirm-problem")
    expect(refused).to_have_attribute("data-rule", "import.definition")
    expect(refused).to_contain_text("bounds")
    expect(page.locator("#confirm-form input[name=t0-c3-low]")).to_have_value("9000")
    expect(page.locator("#import-status")).to_have_attribute("data-status", "profiled")


def test_browser_second_owner_cannot_open_anothers_import_or_dataset(
    page: Any, live_portal: LivePortal
) -> None:
    from playwright.sync_api import expect

    live = live_portal
    status, started = live.request(
        "POST", "/api/v1/imports", {"dataset": "clinic_private"}, live.token("owner")
    )
    assert status == 201, started
    password = "pw-second-owner-1"
    add_user(live.sandbox, by="test", username="owner_b", password=password, role=Role.OWNER)
    live.credentials["owner_b"] = password

    log_in(page, live, "owner_b")
    answer = page.goto(f"{live.base_url}/owner/imports/{started['id']}")
    assert answer is not None and answer.status == 404
    expect(page.locator("main")).not_to_contain_text("clinic_private")
    answer = page.goto(f"{live.base_url}/owner/datasets/health")
    assert answer is not None and answer.status == 403
    expect(page.locator("main")).not_to_contain_text("analyst")
    answer = page.goto(f"{live.base_url}/owner/datasets/health/definition.yaml")
    assert answer is not None and answer.status == 403
    page.goto(live.base_url + "/owner")
    expect(page.locator("#my-datasets tr")).to_have_count(0)
    expect(page.locator("#my-imports tr")).to_have_count(0)

    switch_to(page, live, "analyst")
    answer = page.goto(live.base_url + "/owner")
    assert answer is not None and answer.status == 403
    expect(page.locator("nav.main-nav")).not_to_contain_text("我的数据")
