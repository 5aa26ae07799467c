"""The web pages' words, Chinese first with English beside it.

A key missing from the catalog shows as the key itself, so a forgotten
message is visible on the page instead of failing the request.
"""

from __future__ import annotations

from typing import Any

from flask import has_request_context, session

LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"

MESSAGES: dict[str, dict[str, str]] = {
    # layout
    "app.name": {"zh": "开放数据沙箱", "en": "Open-data sandbox"},
    "app.tagline": {"zh": "数据可用不可见", "en": "Data usable, never visible"},
    "nav.catalog": {"zh": "目录", "en": "Catalog"},
    "nav.new_job": {"zh": "提交作业", "en": "New job"},
    "nav.my_jobs": {"zh": "我的作业", "en": "My jobs"},
    "nav.audit": {"zh": "审计日志", "en": "Audit log"},
    "nav.logout": {"zh": "退出", "en": "Log out"},
    "nav.login": {"zh": "登录", "en": "Log in"},
    "nav.signed_in_as": {"zh": "当前用户:{name}({role})", "en": "Signed in as {name} ({role})"},
    "nav.language": {"zh": "语言", "en": "Language"},
    "footer.note": {
        "zh": "原始记录从不离开沙箱;只发布通过隐私保护与披露控制的聚合结果。",
        "en": "Raw records never leave the sandbox; only aggregates that pass "
        "privacy protection and disclosure control are released.",
    },
    # roles
    "role.analyst": {"zh": "分析人员", "en": "analyst"},
    "role.owner": {"zh": "数据提供方", "en": "data owner"},
    "role.auditor": {"zh": "审核员", "en": "auditor"},
    "role.admin": {"zh": "管理员", "en": "admin"},
    # login
    "login.title": {"zh": "登录", "en": "Log in"},
    "login.username": {"zh": "用户名", "en": "Username"},
    "login.password": {"zh": "密码", "en": "Password"},
    "login.submit": {"zh": "登录", "en": "Log in"},
    "login.failed": {"zh": "用户名或密码错误。", "en": "Wrong username or password."},
    "login.intro": {
        "zh": "登录后可浏览数据目录、提交分析作业并查看已发布的结果。",
        "en": "Log in to browse the catalog, submit analysis jobs and read released results.",
    },
    # catalog
    "catalog.title": {"zh": "数据目录", "en": "Dataset catalog"},
    "catalog.intro": {
        "zh": "每个数据集只公开结构与规则,从不公开记录。",
        "en": "Each dataset shows its structure and rules, never its records.",
    },
    "catalog.name": {"zh": "数据集", "en": "Dataset"},
    "catalog.title_col": {"zh": "名称", "en": "Title"},
    "catalog.privacy_unit": {"zh": "隐私单位", "en": "Privacy unit"},
    "catalog.tables": {"zh": "数据表", "en": "Tables"},
    "catalog.status": {"zh": "状态", "en": "Status"},
    "catalog.available": {"zh": "可用", "en": "available"},
    "catalog.unavailable": {"zh": "未载入", "en": "not loaded"},
    "catalog.version": {"zh": "版本", "en": "Version"},
    "catalog.rows": {"zh": "行数", "en": "Rows"},
    "catalog.schema": {"zh": "查看结构", "en": "Schema"},
    "catalog.empty": {"zh": "暂无数据集。", "en": "No datasets yet."},
    # budgets
    "budget.title": {"zh": "我的授权与隐私预算", "en": "My grants and privacy budget"},
    "budget.dataset": {"zh": "数据集", "en": "Dataset"},
    "budget.modes": {"zh": "模式", "en": "Modes"},
    "budget.remaining": {"zh": "剩余 ε", "en": "ε remaining"},
    "budget.total": {"zh": "总 ε", "en": "ε total"},
    "budget.per_job": {"zh": "单次作业上限 ε", "en": "Max ε per job"},
    "budget.k": {"zh": "最小分组人数 k", "en": "Minimum group size k"},
    "budget.expires": {"zh": "到期", "en": "Expires"},
    "budget.active": {"zh": "有效", "en": "active"},
    "budget.inactive": {"zh": "已失效", "en": "inactive"},
    "budget.none": {"zh": "您还没有任何授权。", "en": "You have no grants yet."},
    # schema
    "schema.title": {"zh": "数据结构:{name}", "en": "Schema: {name}"},
    "schema.privacy_unit": {
        "zh": "隐私单位:{unit}。差分隐私按此单位限制每人贡献。",
        "en": "Privacy unit: {unit}. Differential privacy bounds each unit's contribution.",
    },
    "schema.table": {"zh": "表 {name}", "en": "Table {name}"},
    "schema.rows_per_person": {
        "zh": "差分隐私默认每人最多 {n} 行",
        "en": "dp default: at most {n} rows per person",
    },
    "schema.column": {"zh": "列", "en": "Column"},
    "schema.view_name": {"zh": "视图中的列名", "en": "Name in view"},
    "schema.type": {"zh": "类型", "en": "Type"},
    "schema.class": {"zh": "类别", "en": "Class"},
    "schema.masking": {"zh": "处理规则", "en": "Masking rule"},
    "schema.description": {"zh": "说明", "en": "Description"},
    "schema.bounds": {"zh": "取值范围", "en": "Bounds"},
    "schema.categories": {"zh": "公开类别", "en": "Categories"},
    "schema.forbidden": {"zh": "负面清单 · 永不可用", "en": "Negative list · never available"},
    "schema.forbidden_note": {
        "zh": "标记为负面清单(直接标识符)的列从不进入视图,也不能出现在查询或结果中。",
        "en": "Columns on the negative list (direct identifiers) never enter a view and "
        "may appear in no query and no result.",
    },
    "schema.mock": {"zh": "下载模拟数据(CSV)", "en": "Download mock data (CSV)"},
    "schema.mock_note": {
        "zh": "模拟数据为合成数据,结构与真实视图一致,可用于调试查询。",
        "en": "Mock data is synthetic with the view's structure: use it to debug queries.",
    },
    # column classes and masking rules
    "class.person_key": {"zh": "个人主键", "en": "person key"},
    "class.record_key": {"zh": "记录主键", "en": "record key"},
    "class.direct_identifier": {"zh": "直接标识符", "en": "direct identifier"},
    "class.quasi_identifier": {"zh": "准标识符", "en": "quasi-identifier"},
    "class.sensitive": {"zh": "敏感值", "en": "sensitive"},
    "class.category": {"zh": "公开类别", "en": "category"},
    "class.consent": {"zh": "个人授权", "en": "consent"},
    "masking.none": {"zh": "不处理", "en": "none"},
    "masking.drop": {"zh": "删除", "en": "dropped"},
    "masking.pseudonymise": {"zh": "假名化", "en": "pseudonymised"},
    "masking.year": {"zh": "泛化为年份", "en": "generalised to year"},
    # new job
    "new.title": {"zh": "提交作业", "en": "Submit a job"},
    "new.dataset": {"zh": "数据集", "en": "Dataset"},
    "new.mode": {"zh": "模式", "en": "Mode"},
    "new.mode_dp": {"zh": "差分隐私(dp)", "en": "Differential privacy (dp)"},
    "new.mode_masked": {"zh": "脱敏聚合(masked)", "en": "Masked aggregates (masked)"},
    "new.language": {"zh": "语言", "en": "Language"},
    "new.code": {"zh": "代码", "en": "Code"},
    "new.epsilon": {"zh": "隐私预算 ε(仅 dp 模式)", "en": "Privacy budget ε (dp mode only)"},
    "new.epsilon_hint": {
        "zh": "留空则使用默认值 {default};masked 模式不消耗 ε。",
        "en": "Leave empty for the default {default}; masked mode spends no ε.",
    },
    "new.submit": {"zh": "提交", "en": "Submit"},
    "new.rejected": {
        "zh": "作业未通过策略检查,请按下列意见修改后重新提交:",
        "en": "The job did not pass the policy check. Fix these findings and submit again:",
    },
    "new.bad_epsilon": {"zh": "ε 必须是数字。", "en": "ε must be a number."},
    "new.rows_per_person": {
        "zh": "每人最多计入行数(仅 dp 模式)",
        "en": "Rows counted per person (dp mode only)",
    },
    "new.rows_per_person_hint": {
        "zh": "留空则使用数据集的默认界;界越小噪声越小,但每人超出的行不计入。不超过授权的上限。",
        "en": "Leave empty for the dataset's default bound; a smaller bound means less noise "
        "but drops each person's rows beyond it. At most your grant's cap.",
    },
    "new.bad_rows_per_person": {
        "zh": "每人行数必须是整数。",
        "en": "Rows per person must be a whole number.",
    },
    "job.rows_per_person": {"zh": "每人计入行数", "en": "Rows per person"},
    "finding.rule": {"zh": "规则", "en": "Rule"},
    "finding.location": {"zh": "位置", "en": "Location"},
    "finding.suggestion": {"zh": "建议", "en": "Suggestion"},
    # jobs
    "jobs.title": {"zh": "我的作业", "en": "My jobs"},
    "jobs.empty": {"zh": "还没有作业。", "en": "No jobs yet."},
    "jobs.id": {"zh": "作业编号", "en": "Job"},
    "job.title": {"zh": "作业 {id}", "en": "Job {id}"},
    "job.status": {"zh": "状态", "en": "Status"},
    "job.dataset": {"zh": "数据集", "en": "Dataset"},
    "job.mode": {"zh": "模式", "en": "Mode"},
    "job.language": {"zh": "语言", "en": "Language"},
    "job.epsilon": {"zh": "申请 ε", "en": "ε requested"},
    "job.submitted_at": {"zh": "提交时间", "en": "Submitted"},
    "job.started_at": {"zh": "开始时间", "en": "Started"},
    "job.finished_at": {"zh": "结束时间", "en": "Finished"},
    "job.attempts": {"zh": "运行次数", "en": "Attempts"},
    "job.runner": {"zh": "执行环境", "en": "Runner"},
    "job.code": {"zh": "提交的代码", "en": "Submitted code"},
    "job.refreshing": {
        "zh": "作业尚未结束,本页每 {seconds} 秒自动刷新。",
        "en": "The job is not finished; this page refreshes every {seconds} s.",
    },
    "job.waiting_review": {
        "zh": "结果等待审核员审核后才会发布。",
        "en": "The result is released once an auditor has reviewed it.",
    },
    "job.error": {"zh": "原因", "en": "Reason"},
    "job.findings": {"zh": "检查意见", "en": "Findings"},
    "job.result": {"zh": "发布结果", "en": "Released result"},
    "job.result_owner_only": {
        "zh": "结果仅对提交作业的分析人员可见。",
        "en": "Only the job's analyst reads its result.",
    },
    "job.privacy": {"zh": "隐私保护", "en": "Privacy protection"},
    "job.epsilon_spent": {"zh": "已消耗 ε", "en": "ε spent"},
    "job.delta": {"zh": "δ", "en": "δ"},
    "job.mechanism": {"zh": "噪声机制", "en": "Mechanism"},
    "job.error95_note": {
        "zh": "“±”为每个数值 95% 置信的噪声误差上界；分位数的误差以名次（行数）计。",
        "en": "“±” is each value's 95% error bound from the added noise; "
        "for quantiles it is in rows of rank.",
    },
    "job.rank_units": {"zh": "名次", "en": "rows of rank"},
    "job.disclosure": {
        "zh": "披露控制(k = {k}):隐藏了 {rows} 行、{cells} 个单元格。",
        "en": "Disclosure control (k = {k}): {rows} rows and {cells} cells suppressed.",
    },
    "job.no_value": {"zh": "无可发布的值", "en": "no value released"},
    "job.certificate": {"zh": "发布证书", "en": "Release certificate"},
    "job.key_id": {"zh": "签名密钥编号", "en": "Signing key id"},
    "job.outputs_hash": {"zh": "结果哈希(SHA-256)", "en": "Outputs hash (SHA-256)"},
    "job.algorithm": {"zh": "签名算法", "en": "Algorithm"},
    "job.released_at": {"zh": "发布时间", "en": "Released"},
    "job.rows_count": {"zh": "{n} 行", "en": "{n} rows"},
    "job.no_rows": {"zh": "(无可发布的行)", "en": "(no rows to release)"},
    # audit log (auditors)
    "audit.title": {"zh": "审计日志", "en": "Audit log"},
    "audit.intro": {
        "zh": "每条记录以 SHA-256 哈希链接前一条,数据库拒绝修改或删除;按条件筛选后逐页浏览。",
        "en": "Each entry is SHA-256 chained to the one before and the database refuses "
        "to change or delete it. Filter, then page through.",
    },
    "audit.actor": {"zh": "操作者", "en": "Actor"},
    "audit.action": {"zh": "事件", "en": "Action"},
    "audit.action_hint": {
        "zh": "以 * 结尾按前缀匹配,如 job.* 为全部作业事件。",
        "en": "End with * to match a prefix: job.* is every job event.",
    },
    "audit.subject": {"zh": "对象", "en": "Subject"},
    "audit.since": {"zh": "起始时间(含)", "en": "From (inclusive)"},
    "audit.until": {"zh": "截止时间(不含)", "en": "Until (exclusive)"},
    "audit.time_hint": {
        "zh": "ISO 8601,默认 UTC;只写日期时包含当天全天。",
        "en": "ISO 8601, UTC unless stated; a date alone includes that whole day.",
    },
    "audit.limit": {"zh": "每页条数", "en": "Per page"},
    "audit.filter": {"zh": "筛选", "en": "Filter"},
    "audit.reset": {"zh": "清除条件", "en": "Clear"},
    "audit.entries": {"zh": "记录", "en": "Entries"},
    "audit.total": {"zh": "日志共 {n} 条", "en": "{n} entries in the log"},
    "audit.seq": {"zh": "序号", "en": "Seq"},
    "audit.at": {"zh": "时间", "en": "Time"},
    "audit.details": {"zh": "详情", "en": "Details"},
    "audit.empty": {"zh": "没有符合条件的记录。", "en": "No entry matches."},
    "audit.paging": {"zh": "翻页", "en": "Pages"},
    "audit.first": {"zh": "第一页", "en": "First page"},
    "audit.next": {"zh": "下一页", "en": "Next page"},
    "audit.latest": {"zh": "最新记录", "en": "Newest entries"},
    # auditor review (审核) and objections (异议)
    "nav.reviews": {"zh": "结果审核", "en": "Reviews"},
    "reviews.title": {"zh": "待审核的结果", "en": "Outputs awaiting review"},
    "reviews.intro": {
        "zh": "以下作业的结果已被扣留,等待审核员批准或扣留;结果在发布前仅对审核员和管理员可见。",
        "en": "These jobs' outputs are held until auditors approve or withhold them; "
        "before release only auditors and admins see them.",
    },
    "reviews.empty": {"zh": "没有待审核的结果。", "en": "Nothing awaits review."},
    "review.title": {"zh": "审核作业 {id}", "en": "Review of job {id}"},
    "review.back": {"zh": "← 返回审核队列", "en": "← Back to the review queue"},
    "review.analyst": {"zh": "分析人员", "en": "Analyst"},
    "review.dataset_version": {"zh": "数据版本", "en": "Dataset version"},
    "review.grant": {"zh": "授权", "en": "Grant"},
    "review.grant_requires_review": {"zh": "授权要求审核", "en": "grant requires review"},
    "review.policy_version": {"zh": "策略版本", "en": "Policy version"},
    "review.approvals": {"zh": "已批准", "en": "Approvals"},
    "review.approvals_count": {"zh": "{n} / {required}", "en": "{n} of {required}"},
    "review.awaits_you": {"zh": "待您审核", "en": "awaits you"},
    "review.objected": {"zh": "异议", "en": "objection"},
    "review.objection_title": {
        "zh": "分析人员提出异议(第 {round} 轮审核)",
        "en": "The analyst objects (review round {round})",
    },
    "review.outputs": {"zh": "被扣留的结果", "en": "Held outputs"},
    "review.outputs_note": {
        "zh": "这些结果尚未发布:仅审核员和管理员可见,您的查看已记入审计日志。",
        "en": "Not released: only auditors and admins see these outputs; "
        "your viewing is in the audit log.",
    },
    "review.no_outputs": {"zh": "没有可审核的结果。", "en": "There is no output to review."},
    "review.no_findings": {"zh": "没有检查意见。", "en": "No findings."},
    "review.held_by_grant": {
        "zh": "该作业因授权要求人工审核而被扣留。",
        "en": "The job is held because its grant asks for an auditor's review.",
    },
    "review.decide": {"zh": "审核决定", "en": "Decision"},
    "review.decision": {"zh": "决定", "en": "Decision"},
    "review.approve": {"zh": "批准发布", "en": "Approve the release"},
    "review.withhold": {"zh": "扣留", "en": "Withhold"},
    "review.comment": {"zh": "审核意见", "en": "Comment"},
    "review.comment_hint": {
        "zh": "必填;分析人员会看到此意见(不显示审核员姓名)。",
        "en": "Required; the analyst reads it (without your name).",
    },
    "review.submit": {"zh": "提交审核决定", "en": "Record the decision"},
    "review.two_needed": {
        "zh": "该数据集需要 {required} 名不同的审核员批准才能发布;任何一名审核员扣留即扣留。",
        "en": "This dataset needs {required} different auditors' approval to release; "
        "any auditor's withholding withholds.",
    },
    "review.not_yours": {
        "zh": "您不能对此作业作出决定:您已批准过,或这是您自己的作业。等待其他审核员。",
        "en": "You cannot decide on this job: you approved it already, or it is your own. "
        "It waits for another auditor.",
    },
    "review.history": {"zh": "审核记录", "en": "Review history"},
    "review.no_history": {"zh": "尚无审核记录。", "en": "No review step yet."},
    "review.round": {"zh": "轮次", "en": "Round"},
    "review.step": {"zh": "步骤", "en": "Step"},
    "review.kind.approve": {"zh": "批准", "en": "approved"},
    "review.kind.withhold": {"zh": "扣留", "en": "withheld"},
    "review.kind.objection": {"zh": "异议", "en": "objection"},
    "objection.reason": {"zh": "提出异议的理由", "en": "Your objection"},
    "objection.hint": {
        "zh": "说明为何应发布该结果;作业将退回审核员重新审核。",
        "en": "Say why the output should be released; the job goes back to the auditors.",
    },
    "objection.submit": {"zh": "提出异议", "en": "Object"},
    # statuses
    "status.submitted": {"zh": "已提交", "en": "submitted"},
    "status.rejected": {"zh": "已拒绝", "en": "rejected"},
    "status.queued": {"zh": "排队中", "en": "queued"},
    "status.running": {"zh": "运行中", "en": "running"},
    "status.failed": {"zh": "失败", "en": "failed"},
    "status.checking": {"zh": "披露检查中", "en": "checking"},
    "status.withheld": {"zh": "已扣留", "en": "withheld"},
    "status.pending_review": {"zh": "待审核", "en": "pending review"},
    "status.released": {"zh": "已发布", "en": "released"},
    # errors
    "error.title": {"zh": "出错了", "en": "Something went wrong"},
    "error.csrf": {
        "zh": "表单已过期或来源不明,请刷新页面后重试。",
        "en": "The form expired or did not come from this site; reload the page and try again.",
    },
    "error.not_found": {"zh": "找不到该页面或对象。", "en": "Not found."},
    "error.internal": {
        "zh": "服务器内部错误,已记录。",
        "en": "Something went wrong; it has been logged.",
    },
    "error.back": {"zh": "返回目录", "en": "Back to the catalog"},
}


def language() -> str:
    """The language of the current request: the session's choice, else Chinese."""
    if has_request_context():
        chosen = session.get("lang")
        if chosen in LANGUAGES:
            return str(chosen)
    return DEFAULT_LANGUAGE


def t(key: str, **kw: Any) -> str:
    """The message ``key`` in the current language, with ``{name}`` fields filled in."""
    entry = MESSAGES.get(key)
    if entry is None:
        return key
    text = entry.get(language()) or entry[DEFAULT_LANGUAGE]
    return text.format(**kw) if kw else text
