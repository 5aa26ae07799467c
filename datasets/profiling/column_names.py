"""What a column's name suggests it holds: Chinese, pinyin and English names.

Names are evidence, not proof (``col_3`` says nothing, ``phone`` may hold no phone
number): :mod:`datasets.profiling.proposals` weighs them against the values. A name is
lower-cased and cut into words at ``_``, spaces, punctuation, camelCase and
between Chinese and Latin letters (``就诊ID`` → ``就诊``, ``id``). A rule matches
when a Chinese fragment is part of the name, or a word pattern's words follow
each other in it (``id card``), or its words joined are one word of it
(``idcard``); a pattern written ``=xm`` must be the whole name, for abbreviations
too short to trust inside others. The first matching rule wins, so the specific
ones (``birth date``, ``patient id``) come before the general (``date``, ``id``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class NameRule:
    kind: str
    chinese: tuple[str, ...]
    words: tuple[str, ...]


RULES = (
    NameRule("consent", ("同意", "授权", "知情"), ("consent", "consented", "tongyi", "shouquan")),
    NameRule(
        "birth_date",
        ("出生", "生日"),
        ("birth", "dob", "birthday", "birthdate", "born", "chusheng", "csrq", "shengri"),
    ),
    NameRule(
        "resident_id",
        ("身份证", "身份号", "公民身份", "证件号"),
        (
            "id card",
            "id number",
            "national id",
            "citizen id",
            "identity",
            "ssn",
            "ric",
            "shenfenzheng",
            "sfz",
            "sfzh",
            "sfzhm",
            "zjhm",
        ),
    ),
    NameRule(
        "other_identifier",
        ("护照", "医保卡号", "社保卡号", "医保号", "社保号", "军官证", "微信", "qq号"),
        ("passport", "social security", "insurance no", "insurance number", "wechat", "huzhao"),
    ),
    NameRule(
        "person_key",
        (
            "患者编号",
            "人员编号",
            "病人编号",
            "患者id",
            "病人id",
            "人员id",
            "居民编号",
            "个人编号",
            "患者号",
            "病案号",
            "病历号",
            "就诊卡号",
            "档案号",
        ),
        (
            "patient id",
            "person id",
            "patient no",
            "patient number",
            "person no",
            "member id",
            "subject id",
            "participant id",
            "customer id",
            "client id",
            "user id",
            "mrn",
            "medical record",
            "hzbh",
            "rybh",
            "brbh",
            "hzid",
            "brid",
            "ryid",
            "=pid",
        ),
    ),
    NameRule(
        "bank_card",
        ("银行卡", "银行账号", "银行帐号", "卡号", "账号", "帐号"),
        (
            "bank card",
            "card no",
            "card number",
            "account no",
            "account number",
            "bank account",
            "iban",
            "yinhangka",
            "yhk",
            "yhkh",
            "kahao",
        ),
    ),
    NameRule(
        "phone",
        ("手机", "电话", "联系方式", "座机", "固话"),
        (
            "phone",
            "mobile",
            "tel",
            "telephone",
            "cellphone",
            "contact number",
            "shouji",
            "dianhua",
            "sjh",
            "sjhm",
            "lxdh",
            "lianxidianhua",
            "gddh",
        ),
    ),
    NameRule(
        "email", ("邮箱", "电子邮件", "邮件"), ("email", "e mail", "mail", "youxiang", "dzyx")
    ),
    NameRule("vehicle_plate", ("车牌",), ("plate", "chepai", "cph")),
    NameRule(
        "postcode",
        ("邮编", "邮政编码"),
        ("zip", "zipcode", "postcode", "post code", "postal code", "youbian", "yzbm"),
    ),
    NameRule(
        "address",
        ("住址", "地址", "居住地", "户籍地", "现住"),
        ("address", "addr", "street", "residence", "zhuzhi", "dizhi", "jtzz", "hjdz", "xzz"),
    ),
    NameRule(
        "person_name",
        ("姓名", "名字", "联系人"),
        (
            "=name",
            "patient name",
            "person name",
            "full name",
            "first name",
            "last name",
            "given name",
            "family name",
            "contact name",
            "surname",
            "fullname",
            "firstname",
            "lastname",
            "xingming",
            "mingzi",
            "hzxm",
            "brxm",
            "=xm",
        ),
    ),
    NameRule("sex", ("性别",), ("sex", "gender", "xingbie", "=xb")),
    NameRule("age", ("年龄", "岁"), ("age", "nianling", "=nl")),
    NameRule(
        "area",
        ("行政区", "区县", "县区", "地区", "区域", "街道", "乡镇", "辖区", "省份", "城市"),
        (
            "district",
            "area",
            "county",
            "region",
            "province",
            "city",
            "town",
            "township",
            "quxian",
            "xingzhengqu",
            "diqu",
            "quyu",
            "jiedao",
            "xiangzhen",
        ),
    ),
    NameRule(
        "event_date",
        ("日期", "时间", "时刻"),
        ("date", "time", "datetime", "timestamp", "at", "day", "riqi", "shijian", "=rq"),
    ),
    NameRule(
        "free_text",
        ("备注", "描述", "说明", "主诉", "病史", "意见", "内容", "摘要", "病程", "经过"),
        (
            "note",
            "notes",
            "remark",
            "remarks",
            "comment",
            "comments",
            "description",
            "memo",
            "text",
            "narrative",
            "complaint",
            "history",
            "summary",
            "beizhu",
            "miaoshu",
            "shuoming",
            "zhusu",
            "bingshi",
        ),
    ),
    NameRule(
        "record_key",
        ("编号", "序号", "流水号", "单号", "记录号", "就诊号", "门诊号", "住院号", "检验号"),
        (
            "id",
            "uuid",
            "guid",
            "no",
            "serial",
            "key",
            "bianhao",
            "xuhao",
            "liushuihao",
            "jiuzhenhao",
            "menzhenhao",
            "zhuyuanhao",
            "jzh",
            "zyh",
            "=bh",
        ),
    ),
)

# Kinds a name can suggest, by the class they point to.
DIRECT_IDENTIFIER_KINDS = frozenset(
    {
        "resident_id",
        "other_identifier",
        "bank_card",
        "phone",
        "email",
        "vehicle_plate",
        "address",
        "person_name",
    }
)
QUASI_IDENTIFIER_KINDS = frozenset({"birth_date", "sex", "age", "postcode", "area"})
# The detectors whose findings can confirm or contradict a name's kind.
DETECTORS_OF_KIND: dict[str, tuple[str, ...]] = {
    "resident_id": ("resident_id",),
    "bank_card": ("bank_card",),
    "phone": ("mobile", "landline"),
    "email": ("email",),
    "vehicle_plate": ("vehicle_plate",),
    "address": ("address",),
    "person_name": ("person_name",),
}

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SCRIPT_CHANGE = re.compile(
    r"(?<=[\u4e00-\u9fff])(?=[A-Za-z0-9])|(?<=[A-Za-z0-9])(?=[\u4e00-\u9fff])"
)
_SEPARATORS = re.compile(r"[^a-z0-9\u4e00-\u9fff]+")


def name_words(name: str) -> list[str]:
    """The words of a column name, lower-cased."""
    spaced = _SCRIPT_CHANGE.sub(" ", _CAMEL.sub(" ", name.strip()))
    return [word for word in _SEPARATORS.split(spaced.lower()) if word]


def kind_of_name(name: str) -> str | None:
    """The kind of value the name suggests (``phone``, ``birth_date``, …), if any."""
    words = name_words(name)
    lowered = name.strip().lower()
    whole = "".join(words)
    for rule in RULES:
        if any(fragment in lowered for fragment in rule.chinese):
            return rule.kind
        if any(_words_match(pattern, words, whole) for pattern in rule.words):
            return rule.kind
    return None


def _words_match(pattern: str, words: list[str], whole: str) -> bool:
    if pattern.startswith("="):
        return whole == pattern[1:]
    wanted = pattern.split(" ")
    if "".join(wanted) in words:
        return True
    size = len(wanted)
    return any(words[i : i + size] == wanted for i in range(len(words) - size + 1))
