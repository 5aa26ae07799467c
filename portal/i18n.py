"""The web pages' words, dates and numbers: Flask-Babel, Chinese first, English beside it.

The words are in gettext catalogs, ``portal/translations/<locale>/LC_MESSAGES/
messages.po`` for ``zh_CN`` and ``en``, compiled to ``.mo`` and made with
``make translations`` (docs: CONTRIBUTING.md, "Words"). Message ids are stable
keys (``nav.catalog``), not English text, because findings are stored with
their id and shown again later from it; a key missing from a catalog shows as
the key itself, so a forgotten word is visible on the page instead of failing
the request, and ``tests/unit/portal/test_catalogs.py`` fails before it ships.

Dates and times are shown in the configured time zone (``SANDBOX_TIME_ZONE``,
Asia/Shanghai unless set) in the reader's language; numbers likewise.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from flask import Flask, has_request_context, session
from flask_babel import Babel, format_datetime, format_decimal, gettext

LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"
# The session's choice of language -> the catalog's locale.
LOCALES = {"zh": "zh_CN", "en": "en"}
DEFAULT_TIME_ZONE = "Asia/Shanghai"
# How deep a finding's phrases may nest (a reason inside "In the formula: ...").
MAX_PHRASE_DEPTH = 4
FIELD = re.compile(r"%\((\w+)\)")


def N_(key: str) -> str:
    """Marks a key for pybabel where it is looked up later (gettext_noop)."""
    return key


# Keys the templates build at run time (``_('status.' ~ job.status)``): listed so
# that pybabel extracts them; the catalog test checks they cover every value.
RUNTIME_WORDS = frozenset(
    {
        N_("status.submitted"),
        N_("status.rejected"),
        N_("status.queued"),
        N_("status.running"),
        N_("status.failed"),
        N_("status.checking"),
        N_("status.withheld"),
        N_("status.pending_review"),
        N_("status.released"),
        N_("role.analyst"),
        N_("role.owner"),
        N_("role.auditor"),
        N_("role.organizer"),
        N_("role.admin"),
        N_("tokens.state.active"),
        N_("tokens.state.revoked"),
        N_("tokens.state.expired"),
        N_("class.person_key"),
        N_("class.record_key"),
        N_("class.direct_identifier"),
        N_("class.quasi_identifier"),
        N_("class.sensitive"),
        N_("class.category"),
        N_("class.consent"),
        N_("masking.none"),
        N_("masking.drop"),
        N_("masking.pseudonymise"),
        N_("masking.year"),
        N_("review.kind.approve"),
        N_("review.kind.withhold"),
        N_("review.kind.objection"),
        N_("rule.threshold"),
        N_("rule.zero"),
        N_("rule.dominance"),
        N_("rule.p_percent"),
        N_("rule.secondary"),
        # The owners' pages (portal/web_owners.py): the rules of their actions' errors,
        # the places an error names, statuses, modes, steps, types and column rules.
        N_("owner.why.import.closed"),
        N_("owner.why.import.column_type"),
        N_("owner.why.import.definition"),
        N_("owner.why.import.delimiter"),
        N_("owner.why.import.duplicate_person"),
        N_("owner.why.import.empty"),
        N_("owner.why.import.encoding"),
        N_("owner.why.import.exists"),
        N_("owner.why.import.format"),
        N_("owner.why.import.formula"),
        N_("owner.why.import.header"),
        N_("owner.why.import.key_null"),
        N_("owner.why.import.login_refused"),
        N_("owner.why.import.malformed_row"),
        N_("owner.why.import.merged_cells"),
        N_("owner.why.import.missing_column"),
        N_("owner.why.import.missing_table"),
        N_("owner.why.import.mode"),
        N_("owner.why.import.not_seekable"),
        N_("owner.why.import.not_select"),
        N_("owner.why.import.order"),
        N_("owner.why.import.policy"),
        N_("owner.why.import.query_refused"),
        N_("owner.why.import.staging"),
        N_("owner.why.import.table_name"),
        N_("owner.why.import.table_or_query"),
        N_("owner.why.import.too_large"),
        N_("owner.why.import.type"),
        N_("owner.why.import.unconfirmed"),
        N_("owner.why.import.unreachable"),
        N_("owner.why.import.unreadable"),
        N_("owner.why.import.url"),
        N_("owner.why.consent.columns"),
        N_("owner.why.consent.date"),
        N_("owner.why.consent.duplicate"),
        N_("owner.why.consent.field"),
        N_("owner.why.consent.file"),
        N_("owner.why.consent.none"),
        N_("owner.why.consent.order"),
        N_("owner.why.consent.person_unknown"),
        N_("owner.why.consent.purpose"),
        N_("owner.why.permission.owner"),
        N_("owner.place.rule"),
        N_("owner.place.file"),
        N_("owner.place.table"),
        N_("owner.place.column"),
        N_("owner.place.row"),
        N_("owner.place.field"),
        N_("owner.place.columns"),
        N_("owner.dataset_status.published"),
        N_("owner.dataset_status.retired"),
        N_("owner.mode.new"),
        N_("owner.mode.append"),
        N_("owner.mode.replace"),
        N_("owner.mode_hint.new"),
        N_("owner.mode_hint.append"),
        N_("owner.mode_hint.replace"),
        N_("owner.import_status.staging"),
        N_("owner.import_status.profiled"),
        N_("owner.import_status.confirmed"),
        N_("owner.import_status.published"),
        N_("owner.import_status.discarded"),
        N_("owner.step.stage"),
        N_("owner.step.profile"),
        N_("owner.step.confirm"),
        N_("owner.step.policy"),
        N_("owner.step.publish"),
        N_("owner.type.integer"),
        N_("owner.type.float"),
        N_("owner.type.string"),
        N_("owner.type.date"),
        N_("owner.type.timestamp"),
        N_("owner.type.boolean"),
        N_("owner.rule.forbidden"),
        N_("owner.rule.join_key"),
        N_("owner.rule.aggregate_only"),
        N_("owner.rule.filter"),
        N_("owner.rule.dimension"),
        N_("owner.delimiter.auto"),
        N_("owner.delimiter.comma"),
        N_("owner.delimiter.tab"),
        N_("owner.delimiter.semicolon"),
        N_("owner.delimiter.pipe"),
        N_("access.mode.dp"),
        N_("access.mode.masked"),
        N_("access.status.pending"),
        N_("access.status.approved"),
        N_("access.status.denied"),
        # The contest's pages (portal/web_contest.py): phases, tasks, statuses, kinds,
        # where and why a submission failed, and the rules of the contest actions' refusals.
        N_("contest.phase.registration"),
        N_("contest.phase.open"),
        N_("contest.phase.final"),
        N_("contest.phase.closed"),
        N_("contest.phase_hint.registration"),
        N_("contest.phase_hint.open"),
        N_("contest.phase_hint.final"),
        N_("contest.phase_hint.closed"),
        N_("contest.task.binary"),
        N_("contest.task.multiclass"),
        N_("contest.task.regression"),
        N_("contest.task.survival"),
        N_("contest.submission_status.queued"),
        N_("contest.submission_status.running"),
        N_("contest.submission_status.scored"),
        N_("contest.submission_status.failed"),
        N_("contest.registration_status.pending"),
        N_("contest.registration_status.approved"),
        N_("contest.registration_status.rejected"),
        N_("contest.member_status.member"),
        N_("contest.member_status.invited"),
        N_("contest.dispute_status.open"),
        N_("contest.dispute_status.upheld"),
        N_("contest.dispute_status.rejected"),
        N_("contest.dispute_kind.score"),
        N_("contest.dispute_kind.disqualification"),
        N_("contest.failed_in.smoke"),
        N_("contest.failed_in.hidden"),
        N_("contest.failure.error"),
        N_("contest.failure.timeout"),
        N_("contest.failure.memory"),
        N_("contest.failure.output_too_large"),
        N_("contest.failure.malformed_output"),
        N_("contest.failure.model_too_large"),
        N_("contest.failure.malformed_predictions"),
        N_("contest.schema.part.train"),
        N_("contest.schema.part.features"),
        N_("contest.organize.move_hint.open"),
        N_("contest.organize.move_hint.final"),
        N_("contest.organize.approve"),
        N_("contest.organize.reject"),
        N_("contest.why.contest.closed"),
        N_("contest.why.contest.not_open"),
        N_("contest.why.contest.final_pending"),
        N_("contest.why.contest.not_approved"),
        N_("contest.why.contest.not_final"),
        N_("contest.why.contest.picks_closed"),
        N_("contest.why.contest.registered"),
        N_("contest.why.dispute.decided"),
        N_("contest.why.dispute.not_disqualified"),
        N_("contest.why.dispute.own_submission"),
        N_("contest.why.dispute.team_member"),
        N_("contest.why.permission.organizer"),
        N_("contest.why.quota.daily"),
        N_("contest.why.quota.running"),
        N_("contest.why.quota.total"),
        N_("contest.why.submission.not_failed"),
        N_("contest.why.submission.not_scored"),
        N_("contest.why.submission.picks"),
        N_("contest.why.team.captain"),
        N_("contest.why.team.disqualified"),
        N_("contest.why.team.full"),
        N_("contest.why.team.merged"),
        N_("contest.why.team.merge_baseline"),
        N_("contest.why.team.merge_contest"),
        N_("contest.why.team.merge_disqualified"),
        N_("contest.why.team.merge_not_requested"),
        N_("contest.why.team.merge_phase"),
        N_("contest.why.team.merge_quota"),
        N_("contest.why.team.merge_requested"),
        N_("contest.why.team.merge_size"),
        N_("contest.why.team.name_taken"),
        N_("contest.why.team.not_in_track"),
        N_("contest.why.team.one_per_person"),
        N_("contest.why.track.no_grant"),
    }
)


# The lead sentence of an error page, by HTTP status; the page adds the detail, if any.
STATUS_WORDS = {
    400: N_("error.bad_request"),
    403: N_("error.forbidden"),
    404: N_("error.not_found"),
    405: N_("error.method_not_allowed"),
    409: N_("error.conflict"),
    413: N_("error.too_large"),
    422: N_("error.rejected"),
    429: N_("error.rate_limited"),
    500: N_("error.internal"),
}


def init_app(app: Flask, *, time_zone: str = DEFAULT_TIME_ZONE) -> None:
    """Flask-Babel for the app: the session's language, the configured time zone."""
    app.config.setdefault("BABEL_DEFAULT_LOCALE", LOCALES[DEFAULT_LANGUAGE])
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", time_zone)
    Babel(app, locale_selector=locale)
    app.add_template_filter(when)
    app.add_template_filter(cell)
    app.add_template_global(finding_message)
    app.add_template_global(status_word)


def language() -> str:
    """The language of the current request: the session's choice, else Chinese."""
    if has_request_context():
        chosen = session.get("lang")
        if chosen in LANGUAGES:
            return str(chosen)
    return DEFAULT_LANGUAGE


def locale() -> str:
    """Flask-Babel's locale selector."""
    return LOCALES[language()]


def status_word(status: int) -> str:
    """What an HTTP status means for the reader, in their language."""
    return gettext(STATUS_WORDS.get(status, "error.title"))


def when(value: str | dt.datetime | None) -> str:
    """A moment in the reader's language and the configured time zone, with its offset."""
    if not value:
        return "—"
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)  # the database keeps UTC
    return f"{format_datetime(moment, 'medium')} {format_datetime(moment, 'ZZZZ')}"


def cell(value: Any) -> str:
    """A result value for reading: whole floats without decimals, others to 2 places."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return str(format_decimal(value, "#,##0" if value.is_integer() else "#,##0.00"))
    if isinstance(value, int):
        return str(format_decimal(value, "#,##0"))
    return str(value)


class _Unworded(Exception):
    """The catalog cannot word this finding: show its English message."""


def finding_message(finding: Mapping[str, Any]) -> str:
    """A finding (``Finding.to_dict()``) in the reader's language, from its id and params.

    A finding stored before it had an id, or whose id or phrases the catalog does
    not know, or whose params do not fill the template, reads in English.
    """
    english = str(finding.get("message", ""))
    message_id = finding.get("message_id")
    params = finding.get("params")
    if not isinstance(message_id, str) or not isinstance(params, Mapping):
        return english
    try:
        return _worded(message_id, params, depth=0)
    except _Unworded:
        return english


def _worded(message_id: str, params: Mapping[str, Any], *, depth: int) -> str:
    template = gettext(message_id)
    if template == message_id or depth > MAX_PHRASE_DEPTH:
        raise _Unworded(message_id)
    values: dict[str, Any] = dict(params)
    for name in FIELD.findall(template):
        phrase = params.get(f"{name}_id")
        if name not in params and isinstance(phrase, str):
            values[name] = _worded(phrase, params, depth=depth + 1)
    try:
        return template % values
    except (KeyError, ValueError, TypeError) as error:
        raise _Unworded(message_id) from error
