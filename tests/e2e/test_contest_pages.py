"""The contest's pages in a real browser (Debian's Chromium) against the running product.

An organizer sets a contest and a track up in the browser; an analyst registers under
their real name, the organizer approves, the analyst founds a team and invites a
colleague, who accepts; the team reads the track's schema, downloads mock data and
submits by paste and by file upload, and sees its submissions queued and its quotas
count down. Past the daily quota the page says so with the reset time (429), a refused
code shows its findings (422), never a 500; the organizer sees the queue.

On the demo contest a submission scored in the test process (the development runner)
shows on the team's page and on the public board with its 95 % interval beside the
baseline; a dispute is raised and decided; after the private scoring the final board
is published and says it is signed. Chinese and English both render.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from policies.permissions import Role
from sandbox.access.users import actor_named, add_user
from sandbox.contest import scoring, submissions, teams
from sandbox.demo import ensure_demo_contest
from tests.live import LivePortal, log_in

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
BASELINE = (ROOT / "sandbox" / "contest" / "baselines" / "readmission.py").read_text("utf-8")
# The submission check refuses it: os is no module a submission imports.
REFUSED = (
    "import os\n\ndef fit(train):\n    return os.getcwd()\n\ndef predict(model, f):\n    pass\n"
)
CONTEST = "pages-2026"
DEMO = "health-2026"
DEMO_TRACK = "readmission-30d"
INTERVAL = re.compile(r"\d\.\d{4} \[\d\.\d{4}, \d\.\d{4}\]")


def switch_to(page: Any, live: LivePortal, username: str) -> None:
    """Log out whoever is logged in, and log ``username`` in."""
    page.click("header form.inline button[type=submit]")
    page.wait_for_url(re.compile(re.escape(live.base_url + "/login")))
    log_in(page, live, username)


def submit_code(page: Any, *, code: str = "", upload: bytes | None = None) -> Any:
    """Send the track page's submit form; the answer to its POST."""
    form = page.locator("#submit-form")
    form.locator("textarea[name=code]").fill(code)
    if upload is not None:
        form.locator("input[type=file]").set_input_files(
            files=[{"name": "model.py", "mimeType": "text/x-python", "buffer": upload}]
        )
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        form.locator("button[type=submit]").click()
    page.wait_for_load_state()
    return answer.value


def test_browser_contest_team_registers_forms_and_submits(
    page: Any, live_portal: LivePortal
) -> None:
    live = live_portal
    log_in(page, live, "organizer")
    organizer_sets_the_contest_up(page, live)
    switch_to(page, live, "analyst")
    analyst_registers(page, live)
    switch_to(page, live, "organizer")
    organizer_approves_and_opens(page, live)
    a_colleague_is_approved(live)
    switch_to(page, live, "analyst")
    analyst_founds_a_team_and_invites(page, live)
    switch_to(page, live, "analyst3")
    colleague_accepts(page, live)
    switch_to(page, live, "analyst")
    team_reads_the_track_and_submits(page, live)
    team_is_refused_past_its_quota_and_for_its_code(page, live)
    switch_to(page, live, "organizer")
    organizer_sees_the_queue(page, live)


def organizer_sets_the_contest_up(page: Any, live: LivePortal) -> None:
    from playwright.sync_api import expect

    page.click("nav.main-nav >> text=赛事")
    page.wait_for_url(live.base_url + "/contests")
    expect(page.locator("h1")).to_have_text("赛事")
    form = page.locator("#new-contest-form")
    form.locator("input[name=slug]").fill(CONTEST)
    form.locator("input[name=title]").fill("页面测试大赛")
    form.locator("input[name=title_en]").fill("Pages contest")
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(re.escape(f"{live.base_url}/contests/{CONTEST}/organize")))
    expect(page.locator(".notice")).to_contain_text("赛事已创建")
    expect(page.locator("#contest-phase")).to_have_attribute("data-phase", "registration")

    form = page.locator("#track-form")
    for name, value in {
        "slug": "readmission",
        "title": "30天再入院预测",
        "title_en": "30-day readmission",
        "target": "visits.readmitted_30d",
        "daily_quota": "2",
        "total_quota": "10",
        "max_running": "3",
    }.items():
        form.locator(f"[name={name}]").fill(value)
    form.locator("select[name=dataset]").select_option("health")
    form.locator("select[name=task]").select_option("binary")
    form.locator("select[name=metric]").select_option("roc_auc")
    form.locator("button[type=submit]").click()
    expect(page.locator(".notice")).to_contain_text("已添加赛道 readmission")
    row = page.locator("#track-list tr[data-track=readmission]")
    expect(row).to_contain_text("30天再入院预测")
    expect(row).to_contain_text("二分类")
    expect(row).to_contain_text("每日 2 次,共 10 次,同时运行 3 个")


def analyst_registers(page: Any, live: LivePortal) -> None:
    from playwright.sync_api import expect

    page.goto(f"{live.base_url}/contests")
    page.click(f"tr[data-contest={CONTEST}] >> text=页面测试大赛")
    page.wait_for_url(f"{live.base_url}/contests/{CONTEST}")
    expect(page.locator("#track-list")).to_contain_text("30天再入院预测")
    expect(page.locator("#team")).to_contain_text("报名获批后才能组队")
    form = page.locator("#registration-form")
    form.locator("input[name=real_name]").fill("张三")
    form.locator("input[name=institution]").fill("常州市第一人民医院")
    form.locator("button[type=submit]").click()
    expect(page.locator(".notice")).to_contain_text("等待组织方审核")
    expect(page.locator("#registration-status")).to_have_attribute("data-status", "pending")


def organizer_approves_and_opens(page: Any, live: LivePortal) -> None:
    from playwright.sync_api import expect

    page.goto(f"{live.base_url}/contests/{CONTEST}/organize")
    row = page.locator("#registrations tr[data-user=analyst]")
    expect(row).to_contain_text("张三")
    expect(row).to_contain_text("常州市第一人民医院")
    row.locator("button[data-decision=approve]").click()
    expect(page.locator(".notice")).to_contain_text("已批准")
    expect(page.locator("#registrations tr[data-user=analyst]")).to_have_attribute(
        "data-status", "approved"
    )
    page.click("#phase-form button[type=submit]")
    expect(page.locator("#contest-phase")).to_have_attribute("data-phase", "open")
    expect(page.locator(".notice")).to_contain_text("进行中")


def a_colleague_is_approved(live: LivePortal) -> None:
    password = "pw-contest-colleague-1"
    add_user(live.sandbox, by="test", username="analyst3", password=password, role=Role.ANALYST)
    live.credentials["analyst3"] = password
    colleague = actor_named(live.sandbox, username="analyst3")
    teams.register(
        live.sandbox, by=colleague, contest=CONTEST, real_name="王五", institution="常州大学"
    )
    organizer = actor_named(live.sandbox, username="organizer")
    teams.decide_registration(
        live.sandbox, by=organizer, contest=CONTEST, username="analyst3", approve=True
    )


def analyst_founds_a_team_and_invites(page: Any, live: LivePortal) -> None:
    from playwright.sync_api import expect

    page.goto(f"{live.base_url}/contests/{CONTEST}")
    expect(page.locator("#registration-status")).to_have_attribute("data-status", "approved")
    page.fill("#team-form input[name=name]", "龙城队")
    page.click("#team-form button[type=submit]")
    expect(page.locator("#team-name")).to_have_text("龙城队")
    expect(page.locator("#members tr[data-user=analyst]")).to_contain_text("队长")
    page.fill("#invite-form input[name=username]", "analyst3")
    page.click("#invite-form button[type=submit]")
    expect(page.locator(".notice")).to_contain_text("已邀请 analyst3")
    invited = page.locator("#members tr[data-user=analyst3]")
    expect(invited).to_have_attribute("data-status", "invited")


def colleague_accepts(page: Any, live: LivePortal) -> None:
    from playwright.sync_api import expect

    page.goto(f"{live.base_url}/contests/{CONTEST}")
    invitation = page.locator("#invitations li[data-team=龙城队]")
    expect(invitation).to_contain_text("队长 analyst")
    invitation.locator("button[type=submit]").click()
    expect(page.locator(".notice")).to_contain_text("已加入 龙城队")
    expect(page.locator("#members tr[data-user=analyst3]")).to_have_attribute(
        "data-status", "member"
    )


def team_reads_the_track_and_submits(page: Any, live: LivePortal) -> None:
    from playwright.sync_api import expect

    page.goto(f"{live.base_url}/contests/{CONTEST}")
    page.click("#track-list tr[data-track=readmission] >> text=赛道页")
    page.wait_for_url(f"{live.base_url}/contests/{CONTEST}/tracks/readmission")
    expect(page.locator("#predict-rows")).to_contain_text("visits")
    target = page.locator(".schema-table[data-table=visits] tr[data-column=readmitted_30d]")
    expect(target).to_contain_text("目标")
    expect(target).to_contain_text("不可见")
    expect(page.locator(".schema-table tr[data-column=id_card]")).to_have_count(0)
    visits = page.locator(".schema-table[data-table=visits]")
    with page.expect_download() as download:
        visits.locator("a.mock-link[data-part=train]").click()
    header = Path(download.value.path()).read_text("utf-8").splitlines()[0]
    assert "person_id" in header and "readmitted_30d" in header, header
    with page.expect_download() as download:
        visits.locator("a.mock-link[data-part=features]").click()
    header = Path(download.value.path()).read_text("utf-8").splitlines()[0]
    assert "person_id" in header and "readmitted_30d" not in header, header

    quotas = page.locator("#quotas")
    expect(quotas.locator("[data-quota=daily]")).to_have_attribute("data-left", "2")
    expect(quotas.locator("[data-quota=daily]")).to_contain_text("GMT+08:00")
    assert submit_code(page, code=BASELINE).status == 303
    expect(page.locator(".notice")).to_contain_text("已排队")
    submitted = page.locator("#submissions tbody.submission")
    expect(submitted).to_have_count(1)
    expect(submitted.first).to_have_attribute("data-status", "queued")
    expect(submitted.first).to_contain_text("排队中")
    expect(quotas.locator("[data-quota=daily]")).to_have_attribute("data-left", "1")

    submit_code(page, upload=BASELINE.encode("utf-8"))
    expect(page.locator(".notice")).to_contain_text("已排队")
    expect(submitted).to_have_count(2)
    expect(quotas.locator("[data-quota=daily]")).to_have_attribute("data-left", "0")
    expect(quotas.locator("[data-quota=total]")).to_have_attribute("data-left", "8")
    expect(quotas.locator("[data-quota=running]")).to_contain_text("排队或运行中 2 / 3")
    codes = [
        submissions.get_submission(
            live.sandbox,
            by=actor_named(live.sandbox, username="analyst"),
            submission_id=str(row.get_attribute("data-submission")),
        )["code"]
        for row in submitted.all()
    ]
    assert codes == [BASELINE, BASELINE]


def team_is_refused_past_its_quota_and_for_its_code(page: Any, live: LivePortal) -> None:
    from playwright.sync_api import expect

    answer = submit_code(page, code=BASELINE)
    assert answer.status == 429
    problem = page.locator("#problem")
    expect(problem).to_have_attribute("data-rule", "quota.daily")
    expect(problem).to_contain_text("今日配额已用完")
    expect(problem.locator(".resets-at")).to_contain_text("GMT+08:00")
    expect(page.locator("#submit-form textarea[name=code]")).to_have_value(BASELINE)
    expect(page.locator("#submissions tbody.submission")).to_have_count(2)

    answer = submit_code(page, code=REFUSED)
    assert answer.status == 422
    expect(page.locator("#problem li.finding").first).to_be_visible()
    expect(page.locator("#problem")).to_contain_text("import")

    answer = submit_code(page, code=BASELINE, upload=BASELINE.encode("utf-8"))
    assert answer.status == 400
    expect(page.locator("#problem")).to_contain_text("不要同时使用两者")


def organizer_sees_the_queue(page: Any, live: LivePortal) -> None:
    from playwright.sync_api import expect

    page.goto(f"{live.base_url}/contests/{CONTEST}/organize")
    page.click("a.button >> text=提交队列")
    page.wait_for_url(f"{live.base_url}/contests/{CONTEST}/queue")
    rows = page.locator("#queue tr[data-team=龙城队]")
    expect(rows).to_have_count(2)
    expect(rows.first).to_have_attribute("data-status", "queued")
    expect(page.locator("h1")).to_have_text("提交队列: 页面测试大赛")
    page.click("text=English")
    expect(page.locator("h1")).to_have_text("Submission queue: Pages contest")
    expect(rows.first).to_contain_text("Queued")


@pytest.mark.slow  # six fit and predict runs in the development runner
def test_browser_leaderboard_shows_intervals_and_the_signed_final_board(
    page: Any, live_portal: LivePortal
) -> None:
    live = live_portal
    ensure_demo_contest(live.sandbox, enqueue=[].append)
    run_the_baseline(live)
    log_in(page, live, "analyst")
    team_sees_its_scored_submission_and_picks_it(page, live)
    team_disputes_the_score(page)
    board_shows_intervals_and_the_baseline(page, live)
    switch_to(page, live, "organizer")
    organizer_decides_the_dispute(page, live)
    organizer_scores_the_picks_and_publishes(page, live)
    page.click("header form.inline button[type=submit]")
    final_board_is_public_and_signed(page, live)
    log_in(page, live, "analyst")
    page.goto(f"{live.base_url}/contests/{DEMO}/tracks/{DEMO_TRACK}")
    expect_text(page.locator("#disputes li.dispute"), "样本量决定其宽度")


def expect_text(locator: Any, text: str) -> None:
    from playwright.sync_api import expect

    expect(locator).to_contain_text(text)


def run_the_baseline(live: LivePortal) -> None:
    """Score the demo track's baseline in the test process, so the board has its line."""
    organizer = actor_named(live.sandbox, username="organizer")
    queued = submissions.contest_queue(live.sandbox, by=organizer, contest=DEMO)
    (baseline,) = [s for s in queued if s["track"] == DEMO_TRACK]
    assert scoring.run_submission(live.sandbox, baseline["id"]) == "scored"


def team_sees_its_scored_submission_and_picks_it(page: Any, live: LivePortal) -> None:
    from playwright.sync_api import expect

    page.goto(f"{live.base_url}/contests/{DEMO}/tracks/{DEMO_TRACK}")
    expect(page.locator("h1")).to_contain_text("30天再入院预测")
    submit_code(page, code=BASELINE)
    mine = page.locator("#submissions tbody.submission").first
    assert scoring.run_submission(live.sandbox, str(mine.get_attribute("data-submission"))) == (
        "scored"
    )
    page.reload()
    expect(mine).to_have_attribute("data-status", "scored")
    expect(mine.locator(".shown-score")).to_have_text(INTERVAL)
    expect(mine.locator(".improved")).to_contain_text("已提升")
    mine.locator("details.smoke-log summary").click()
    expect(mine.locator("details.smoke-log pre")).to_be_visible()
    mine.locator(".pick-form button").click()
    expect(page.locator(".notice")).to_contain_text("已选为最终提交")
    expect(page.locator("#picks")).to_contain_text("已选定 1 / 2")


def team_disputes_the_score(page: Any) -> None:
    from playwright.sync_api import expect

    mine = page.locator("#submissions tbody.submission").first
    mine.locator("details.dispute summary").click()
    mine.locator("details.dispute textarea[name=text]").fill("得分区间似乎过宽。")
    mine.locator("details.dispute button[type=submit]").click()
    expect(page.locator(".notice")).to_contain_text("异议已提交")
    expect(page.locator("#disputes li.dispute")).to_have_attribute("data-status", "open")


def board_shows_intervals_and_the_baseline(page: Any, live: LivePortal) -> None:
    from playwright.sync_api import expect

    page.click("#to-leaderboard")
    page.wait_for_url(f"{live.base_url}/contests/{DEMO}/tracks/{DEMO_TRACK}/leaderboard")
    expect(page.locator("h1")).to_contain_text("30天再入院预测 排行榜")
    ivy = page.locator("#public-board tr[data-team='常青藤队 Team Ivy']")
    expect(ivy.locator(".score")).to_have_text(INTERVAL)
    baseline = page.locator("#public-board tr.baseline")
    expect(baseline.locator(".baseline-marker")).to_have_text("基线")
    expect(baseline.locator(".score")).to_have_text(INTERVAL)
    page.click("text=English")
    expect(page.locator("h1")).to_contain_text("30-day readmission leaderboard")
    expect(page.locator("#public-board")).to_contain_text("Public leaderboard")
    page.click("text=中文")
    expect(page.locator("h1")).to_contain_text("排行榜")


def organizer_decides_the_dispute(page: Any, live: LivePortal) -> None:
    from playwright.sync_api import expect

    page.goto(f"{live.base_url}/contests/{DEMO}/organize")
    dispute = page.locator("#disputes article.dispute[data-status=open]")
    expect(dispute).to_contain_text("得分区间似乎过宽")
    dispute.locator("input[value=reject]").check()
    dispute.locator("textarea[name=comment]").fill("区间由自助法给出,样本量决定其宽度。")
    dispute.locator("button[type=submit]").click()
    expect(page.locator(".notice")).to_contain_text("异议已处理")
    expect(page.locator("#disputes article.dispute")).to_have_attribute("data-status", "rejected")


def organizer_scores_the_picks_and_publishes(page: Any, live: LivePortal) -> None:
    from playwright.sync_api import expect

    organizer = actor_named(live.sandbox, username="organizer")
    page.click("#phase-form button[type=submit]")
    expect(page.locator("#contest-phase")).to_have_attribute("data-phase", "final")
    page.click("#final-scoring-form button[type=submit]")
    expect(page.locator(".notice")).to_contain_text("私有集评分已开始:2 个提交")
    for queued in submissions.contest_queue(live.sandbox, by=organizer, contest=DEMO):
        if queued["final"] and queued["final"]["status"] == "queued":
            assert scoring.score_final(live.sandbox, queued["id"]) == "scored"
    page.click("#publish-form button[type=submit]")
    expect(page.locator(".notice")).to_contain_text("最终排行榜已签名发布")
    expect(page.locator("#contest-phase")).to_have_attribute("data-phase", "closed")


def final_board_is_public_and_signed(page: Any, live: LivePortal) -> None:
    """Logged out: the board needs no login."""
    from playwright.sync_api import expect

    page.wait_for_url(re.compile(re.escape(live.base_url + "/login")))
    page.goto(f"{live.base_url}/contests/{DEMO}/tracks/{DEMO_TRACK}/leaderboard")
    expect(page.locator("nav.main-nav")).to_have_count(0)
    expect(page.locator("#signed-note")).to_contain_text("签名")
    final = page.locator("#final-board tr[data-team='常青藤队 Team Ivy']")
    expect(final.locator(".score")).to_have_text(INTERVAL)
