"""Evidence for a proposed column class, worded in English and Chinese.

A piece of evidence is a stable message id with plain params (counts, shares,
column names: never a value from the data), like the portal's findings (ADR 6),
so it can be stored and shown later in the reader's language. This package
imports nothing of ours, so the two wordings of every id are kept here, in
:data:`ENGLISH` and :data:`CHINESE`, with the same ``%(name)s`` fields.

A param named ``<name>_id`` holds the id of a worded part (``kind_id:
kind.mobile``) that is worded first and fills ``%(name)s``; ``<name>_ids`` holds
several, comma-separated, worded and joined.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

Param = str | int | float

ENGLISH: dict[str, str] = {
    # What a value is, filling %(kind)s.
    "kind.resident_id": "resident ID numbers",
    "kind.mobile": "mobile phone numbers",
    "kind.landline": "landline phone numbers",
    "kind.phone": "phone numbers",
    "kind.bank_card": "bank card numbers",
    "kind.email": "e-mail addresses",
    "kind.vehicle_plate": "vehicle plates",
    "kind.person_name": "personal names",
    "kind.address": "addresses",
    "kind.other_identifier": "identity document or account numbers",
    "kind.birth_date": "birth dates",
    "kind.sex": "sexes",
    "kind.age": "ages",
    "kind.postcode": "postcodes",
    "kind.area": "districts or areas",
    "kind.person_key": "a person's id",
    "kind.record_key": "a record's id",
    "kind.free_text": "free text",
    "kind.consent": "a consent flag",
    "kind.event_date": "dates of events",
    # What the detectors found in a sample of the values.
    "detect.resident_id": "%(percent)s %% of sampled values are valid resident ID numbers "
    "(%(matched)s of %(sampled)s).",
    "detect.mobile": "%(percent)s %% of sampled values are valid mobile phone numbers "
    "(%(matched)s of %(sampled)s).",
    "detect.landline": "%(percent)s %% of sampled values are valid landline phone numbers "
    "(%(matched)s of %(sampled)s).",
    "detect.bank_card": "%(percent)s %% of sampled values are bank card numbers with a valid "
    "check digit (%(matched)s of %(sampled)s).",
    "detect.email": "%(percent)s %% of sampled values are e-mail addresses "
    "(%(matched)s of %(sampled)s).",
    "detect.vehicle_plate": "%(percent)s %% of sampled values are vehicle plates "
    "(%(matched)s of %(sampled)s).",
    "detect.person_name": "%(percent)s %% of sampled values look like personal names "
    "(%(matched)s of %(sampled)s).",
    "detect.address": "%(percent)s %% of sampled values look like street addresses "
    "(%(matched)s of %(sampled)s).",
    "detect.free_text": "%(percent)s %% of sampled values are text that contains "
    "%(kinds)s (%(matched)s of %(sampled)s).",
    # What the column's name says.
    "name.suggests": "The column's name suggests %(kind)s.",
    "name.contradicted": "The column's name suggests %(kind)s, but only %(percent)s %% of "
    "%(sampled)s sampled values are: the values decide.",
    "name.unchecked": "The column's name suggests %(kind)s; there are too few values to "
    "check it, so the name decides.",
    # What the owner said.
    "owner.person_key": "You named this column the person key (the privacy unit).",
    # What the values say.
    "key.one_row_per_person": "Each value appears once: one row per person.",
    "key.rows_per_person": "Values repeat: several rows per person.",
    "values.unique": "Every value is different and none is missing: a key of this table.",
    "values.unique_estimated": "Every value seems to be different (counted approximately) "
    "and none is missing: a key of this table.",
    "values.many_codes": "Many different short codes: treated as a key, pseudonymised in "
    "every view.",
    "values.numbers": "The values are numbers: a measurement that queries may only aggregate.",
    "values.booleans": "The values are yes or no: a measurement that queries may only aggregate.",
    "values.event_dates": "The values are dates or times of events: queries may count and "
    "filter on them.",
    "values.birth_dates": "The dates span many decades, as birth dates do.",
    "values.sexes": "The values are sexes.",
    "values.categories": "%(distinct)s different values and no identifier among them: a category.",
    "values.rare_categories": "Some values occur in fewer than %(min_rows)s rows, so no "
    "category list is proposed: list the public categories yourself.",
    "values.free_text": "Text with no identifier found in %(sampled)s sampled values: "
    "queries may only count it.",
    "values.empty": "The column holds no value.",
    "values.unreadable": "The values are of a kind that cannot be read as text or numbers "
    "(binary data, lists): nothing is known of them.",
    "values.consent": "Yes or no values under a consent name: the per-person consent flag.",
    # Problems of a declared key.
    "key.nulls": "%(count)s rows have no %(key)s; the first is data row %(row)s.",
    "key.duplicates": "%(count)s rows repeat a %(key)s already seen in a table of one row "
    "per person; the first is data row %(row)s.",
}

CHINESE: dict[str, str] = {
    "kind.resident_id": "居民身份证号",
    "kind.mobile": "手机号码",
    "kind.landline": "固定电话号码",
    "kind.phone": "电话号码",
    "kind.bank_card": "银行卡号",
    "kind.email": "电子邮箱地址",
    "kind.vehicle_plate": "车牌号",
    "kind.person_name": "人名",
    "kind.address": "地址",
    "kind.other_identifier": "证件号或账号",
    "kind.birth_date": "出生日期",
    "kind.sex": "性别",
    "kind.age": "年龄",
    "kind.postcode": "邮政编码",
    "kind.area": "行政区或地区",
    "kind.person_key": "人员编号",
    "kind.record_key": "记录编号",
    "kind.free_text": "自由文本",
    "kind.consent": "授权标志",
    "kind.event_date": "事件日期",
    "detect.resident_id": "抽样值中 %(percent)s %% 是有效的居民身份证号"
    "(%(sampled)s 个中 %(matched)s 个)。",
    "detect.mobile": "抽样值中 %(percent)s %% 是有效的手机号码(%(sampled)s 个中 %(matched)s 个)。",
    "detect.landline": "抽样值中 %(percent)s %% 是有效的固定电话号码"
    "(%(sampled)s 个中 %(matched)s 个)。",
    "detect.bank_card": "抽样值中 %(percent)s %% 是校验位正确的银行卡号"
    "(%(sampled)s 个中 %(matched)s 个)。",
    "detect.email": "抽样值中 %(percent)s %% 是电子邮箱地址(%(sampled)s 个中 %(matched)s 个)。",
    "detect.vehicle_plate": "抽样值中 %(percent)s %% 是车牌号(%(sampled)s 个中 %(matched)s 个)。",
    "detect.person_name": "抽样值中 %(percent)s %% 像是人名(%(sampled)s 个中 %(matched)s 个)。",
    "detect.address": "抽样值中 %(percent)s %% 像是详细地址(%(sampled)s 个中 %(matched)s 个)。",
    "detect.free_text": "抽样值中 %(percent)s %% 是含有%(kinds)s的文本"
    "(%(sampled)s 个中 %(matched)s 个)。",
    "name.suggests": "列名表明是%(kind)s。",
    "name.contradicted": "列名表明是%(kind)s,但抽样的 %(sampled)s 个值中只有 %(percent)s %% "
    "是:以值为准。",
    "name.unchecked": "列名表明是%(kind)s;值太少,无法核对,以列名为准。",
    "owner.person_key": "您指定此列为人员键(隐私单元)。",
    "key.one_row_per_person": "每个值只出现一次:每人一行。",
    "key.rows_per_person": "值有重复:每人多行。",
    "values.unique": "所有值各不相同且没有空值:是本表的键。",
    "values.unique_estimated": "所有值看来各不相同(近似计数)且没有空值:是本表的键。",
    "values.many_codes": "大量不同的短编码:作为键处理,在每个视图中假名化。",
    "values.numbers": "值是数字:是度量,查询只能汇总。",
    "values.booleans": "值是是或否:是度量,查询只能汇总。",
    "values.event_dates": "值是事件的日期或时间:查询可以计数和筛选。",
    "values.birth_dates": "日期跨越数十年,与出生日期相符。",
    "values.sexes": "值是性别。",
    "values.categories": "共 %(distinct)s 个不同的值,其中没有标识符:是分类。",
    "values.rare_categories": "有些值出现的行数少于 %(min_rows)s,因此不建议分类列表:"
    "请自行列出公开的分类。",
    "values.free_text": "抽样的 %(sampled)s 个值中未发现标识符的文本:查询只能计数。",
    "values.empty": "此列没有值。",
    "values.unreadable": "值的类型无法作为文本或数字读取(二进制数据、列表):对其一无所知。",
    "values.consent": "授权类列名下的是或否值:是个人授权标志。",
    "key.nulls": "%(count)s 行没有%(key)s;第一处是第 %(row)s 个数据行。",
    "key.duplicates": "在每人一行的表中,%(count)s 行重复了已出现过的%(key)s;"
    "第一处是第 %(row)s 个数据行。",
}


@dataclass(frozen=True)
class Evidence:
    """One reason for a proposal, or one problem: a message id and its plain params."""

    message_id: str
    params: Mapping[str, Param] = field(default_factory=dict)

    def text(self, language: str = "en") -> str:
        """The evidence worded in ``language`` (``en``, or ``zh``/``zh_CN``/``zh_Hans_CN``)."""
        words = CHINESE if language.lower().startswith("zh") else ENGLISH
        return _worded(words, self.message_id, self.params, language)

    @property
    def english(self) -> str:
        return self.text("en")

    @property
    def chinese(self) -> str:
        return self.text("zh")

    def to_dict(self) -> dict[str, object]:
        return {
            "message_id": self.message_id,
            "params": dict(self.params),
            "text": self.english,
            "text_zh": self.chinese,
        }


def _worded(
    words: Mapping[str, str], message_id: str, params: Mapping[str, Param], language: str
) -> str:
    template = words.get(message_id, message_id)
    separator = "、" if words is CHINESE else ", "
    fields: dict[str, Param] = {}
    for name, value in params.items():
        if name.endswith("_ids"):
            fields[name.removesuffix("_ids")] = separator.join(
                words.get(part, part) for part in str(value).split(",") if part
            )
        elif name.endswith("_id"):
            fields[name.removesuffix("_id")] = words.get(str(value), str(value))
        else:
            fields[name] = value
    try:
        return template % fields
    except (KeyError, TypeError, ValueError):
        # A stored id whose params no longer fit its template: show the template
        # rather than fail the page that lists it.
        return template


def percent(share: float) -> float | int:
    """A share as a percentage for people: whole numbers, one decimal below 10 % and above
    99 %, and never 100 when something is missing nor 0 when something is there."""
    value = share * 100
    if value <= 0 or value >= 100:
        return 0 if value <= 0 else 100
    rounded: float = round(value, 1) if value < 10 or value > 99 else round(value)
    rounded = min(max(rounded, 0.1), 99.9)
    return int(rounded) if rounded == int(rounded) else rounded
