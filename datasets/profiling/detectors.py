"""Detectors of personal identifiers in a column's values.

Each detector takes a sample of a column's non-null values, as text, and counts
those that are one kind of identifier. Where an identifier carries its own check,
a pattern is not enough: a resident ID number needs its check character, a real
birth date and a known region (python-stdnum's ``cn.ric`` and its region table),
a phone number must be a valid number of the national plan of the right type
(phonenumbers), a bank card number must pass Luhn and start like a card. Names
and addresses carry no check, so they are judged by shape and vocabulary.

A :class:`Detection` holds counts only, and the evidence made from it
(:func:`evidence`) names the kind and the counts: never a value.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneNumberType
from stdnum import luhn, numdb
from stdnum.cn import ric

from datasets.profiling.evidence import Evidence, percent
from datasets.profiling.surnames import COMPOUND_SURNAMES, PINYIN_SURNAMES, SINGLE_SURNAMES

# A detection counts (a column must not be proposed as a category or a measurement
# without its evidence shown) once this share of the sample, or this many values, match.
MIN_SHARE = 0.01
MIN_MATCHED = 3
# Shorter values are not scanned for identifiers inside text.
MIN_TEXT_LENGTH = 10


@dataclass(frozen=True)
class Detection:
    """How many of ``sampled`` values one detector recognised."""

    detector: str
    share: float
    matched: int
    sampled: int
    # free_text only: the kinds of identifier found inside the text, in DETECTORS' order.
    found: tuple[str, ...] = ()

    @property
    def message_id(self) -> str:
        return f"detect.{self.detector}"

    @property
    def significant(self) -> bool:
        """Enough matches that the column must be treated as holding identifiers."""
        return self.matched > 0 and (self.share >= MIN_SHARE or self.matched >= MIN_MATCHED)


def evidence(detection: Detection) -> Evidence:
    """The detection as evidence a person can read: the kind and the counts, no value."""
    params: dict[str, str | int | float] = {
        "percent": percent(detection.share),
        "matched": detection.matched,
        "sampled": detection.sampled,
    }
    if detection.detector == "free_text":
        params["kinds_ids"] = ",".join(f"kind.{kind}" for kind in detection.found)
    return Evidence(detection.message_id, params)


# --- values, one at a time -------------------------------------------------------------


def _clean(value: str) -> str:
    # Full-width digits, letters and brackets (１３８…, （０５１９）) are common in
    # Chinese files; NFKC makes them ASCII. Most values are ASCII already.
    text = value.strip()
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


_RESIDENT_ID = re.compile(r"[0-9]{17}[0-9X]|[0-9]{15}")


def is_resident_id(value: str) -> bool:
    """An 18-digit resident ID number (check character, birth date, region), or the old
    15-digit form (birth date in 19YY and a known county code: it has no check digit)."""
    number = _clean(value).upper()
    if not _RESIDENT_ID.fullmatch(number):
        return False
    if len(number) == 18:
        if ric.calc_check_digit(number) != number[-1]:
            return False
        return _plausible_birth(number[6:14]) and _known_region(number[:6], county=False)
    return _plausible_birth("19" + number[6:12]) and _known_region(number[:6], county=True)


def _plausible_birth(yyyymmdd: str) -> bool:
    try:
        born = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return date(1900, 1, 1) <= born <= date.today()


# Residence permits of Hong Kong, Macao and Taiwan residents (港澳台居民居住证, since
# 2018) take the resident ID's form, check character included, with these area codes.
_PERMIT_AREAS = frozenset({"810000", "820000", "830000"})


@lru_cache(maxsize=8192)
def _known_region(code: str, *, county: bool) -> bool:
    # stdnum's ric.is_valid also wants the county to have existed in the birth year,
    # but people keep the code of the place that registered them, often created
    # later (武进区 dates from 2002): an 18-digit number needs only a real province,
    # its check character rules out chance; the 15-digit form has no check character.
    if code in _PERMIT_AREAS:
        return not county
    parts = numdb.get("cn/loc").info(code)
    found = {key for _, properties in parts for key in properties}
    return "county" in found if county else "province" in found


_MOBILE_SHAPE = re.compile(r"(?:(?:\+|00)?86[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2}")
_LANDLINE_SHAPE = re.compile(
    r"(?:(?:\+|00)86[ -]?(?:\(0?[0-9]{2,3}\)|0?[0-9]{2,3})|\(0[0-9]{2,3}\)|0[0-9]{2,3})"
    r"[ -]?(?:[0-9]{7,8}|[0-9]{3,4}[ -][0-9]{4})"
)
_FIXED_LINE_TYPES = frozenset({PhoneNumberType.FIXED_LINE, PhoneNumberType.FIXED_LINE_OR_MOBILE})


def _phone_type(national: str) -> int:
    # Built from the national number rather than parsed from the text: parsing costs
    # three times as much, and the shapes above already say where the number is.
    number = phonenumbers.PhoneNumber(country_code=86, national_number=int(national))
    return int(phonenumbers.number_type(number))  # UNKNOWN unless valid for its type


def is_mobile(value: str) -> bool:
    """A valid mainland mobile number, with or without +86 and separators."""
    text = _clean(value)
    if not _MOBILE_SHAPE.fullmatch(text):
        return False
    national = re.sub(r"[^0-9]", "", text)[-11:]
    return _mobile_block(national[:7])


@lru_cache(maxsize=65536)
def _mobile_block(first7: str) -> bool:
    # Mobile numbers are allocated in blocks of 10,000 (号段 and HLR code, the first
    # seven digits), and the plan's mobile patterns look at the first five at most:
    # asking phonenumbers once per block gives its answer for every number in it.
    return _phone_type(first7 + "0000") == PhoneNumberType.MOBILE


def is_landline(value: str) -> bool:
    """A valid mainland fixed-line number with its area code (``0519-86981234``,
    ``(0519)86981234``, ``051986981234``, ``+86 519 8698 1234``)."""
    text = _clean(value)
    if not _LANDLINE_SHAPE.fullmatch(text):
        return False
    digits = re.sub(r"[^0-9]", "", text)
    if text.startswith(("+", "00")):
        digits = digits.removeprefix("00").removeprefix("86")
    return _phone_type(digits.removeprefix("0")) in _FIXED_LINE_TYPES


_CARD_SHAPE = re.compile(r"[0-9]{16,19}|[0-9]{4}(?:[ -][0-9]{4}){3}(?:[ -]?[0-9]{1,3})?")
# UnionPay 62 (and 60, 65 of some Chinese banks), Visa 4, Mastercard 51-55 and
# 2221-2720, JCB 35, and the 955xx cards older Chinese banks still issue.
_CARD_PREFIXES = ("62", "60", "65", "4", "51", "52", "53", "54", "55", "35", "955")


def _card_digits(value: str) -> str | None:
    text = _clean(value)
    if not _CARD_SHAPE.fullmatch(text):
        return None
    digits = text.replace(" ", "").replace("-", "")
    if not 16 <= len(digits) <= 19:
        return None
    if digits.startswith(_CARD_PREFIXES) or 2221 <= int(digits[:4]) <= 2720:
        return digits
    return None


def is_bank_card(value: str) -> bool:
    """16-19 digits that start like a card and pass Luhn (and are not a resident ID)."""
    digits = _card_digits(value)
    return digits is not None and luhn.is_valid(digits) and not is_resident_id(digits)


_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


def is_email(value: str) -> bool:
    return bool(_EMAIL.fullmatch(_clean(value)))


_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
# A letter (never I or O), then 5 letters or digits; new-energy plates have 6, with D
# or F first (small cars) or last (large ones); 挂学警港澳 plates end in that character.
_PLATE = (
    f"[{_PROVINCES}][A-HJ-NP-Z][·. -]?"
    r"(?:[DF][A-HJ-NP-Z0-9][0-9]{4}|[0-9]{5}[DF]|[A-HJ-NP-Z0-9]{5}|[A-HJ-NP-Z0-9]{4}[挂学警港澳])"
)
_PLATE_WHOLE = re.compile(_PLATE)


def is_vehicle_plate(value: str) -> bool:
    return bool(_PLATE_WHOLE.fullmatch(_clean(value).upper()))


_HAN_NAME = re.compile(r"[\u4e00-\u9fff]{2,4}")
# Characters that end words for places, institutions and illnesses and are rare in
# given names: 内科, 钟楼区 and 高血压 start with a surname but are not names.
_NOT_IN_GIVEN_NAMES = frozenset(
    "科院区县省市镇乡村路街道号楼室栋幢病症炎痛癌瘤折疹疗药检查术诊医局站部处厅司厂店馆校队组"
    "产胎压糖脂尿肺胃肝肾脑骨梗衰竭染感血性型急慢内外妇儿第所委办机业务费州"
)
_SYLLABLE = (
    r"(?:zh|ch|sh|[bpmfdtnlgkhjqxrzcsyw])?"
    r"(?:iang|iong|uang|ang|eng|ing|ong|uai|uan|ian|iao|ai|ei|ao|ou|an|en|in|un|ia|ie|iu|ua|uo"
    r"|ui|ue|ve|er|a|o|e|i|u|v)"
)
_PINYIN_WORD = re.compile(f"(?:{_SYLLABLE}){{1,3}}")
_LATIN_NAME = re.compile(r"[A-Z][A-Za-z-]*(?: [A-Z][A-Za-z-]*){1,2}")


def is_person_name(value: str) -> bool:
    """2-4 Han characters starting with a common surname, whose other characters are not
    ones that end place, institution or illness words; or a name in pinyin
    (``Zhang Wei``, ``ZHANG Wei``, ``Wei Zhang``, ``Ouyang Xiaoming``)."""
    text = _clean(value)
    if _HAN_NAME.fullmatch(text):
        if text[:2] in COMPOUND_SURNAMES and len(text) >= 3:
            given = text[2:]
        elif text[0] in SINGLE_SURNAMES and (len(text) < 4 or text[1] in SINGLE_SURNAMES):
            # A four-character name with a single surname carries both parents' (张王丽丽).
            given = text[1:]
        else:
            return False
        return not any(c in _NOT_IN_GIVEN_NAMES for c in given)
    return _is_pinyin_name(text)


def _is_pinyin_name(text: str) -> bool:
    if not _LATIN_NAME.fullmatch(text):
        return False
    words = [word.replace("-", "").lower() for word in text.split(" ")]
    if not all(_PINYIN_WORD.fullmatch(word) for word in words):
        return False
    return words[0] in PINYIN_SURNAMES or words[-1] in PINYIN_SURNAMES


_ADDRESS_MARKERS = re.compile(r"街道|单元|小区|大道|胡同|[省市区县镇乡路街号弄室栋幢村巷组]")
_BELOW_DISTRICT = frozenset(
    {"街道", "镇", "乡", "村", "路", "街", "巷", "弄", "胡同", "小区", "大道"}
)
_NUMBERED_PLACE = re.compile(r"[0-9]+ *(?:号|弄|栋|幢|室|单元)")
_INSTITUTION = re.compile(r"(?:医院|卫生院|卫生所|卫生室|诊所|中心|学校|大学|公司|局|委员会|站)$")
_DIGIT = re.compile(r"[0-9]")
# An address is not a sentence: a note that mentions one is free text.
_SENTENCE = re.compile(r"[,;!?。]")
MAX_ADDRESS_LENGTH = 80
_HAN = re.compile(r"[\u4e00-\u9fff]")


def is_address(value: str) -> bool:
    """A Chinese address: two place markers (省 市 区 县 镇 乡 街道 路 街 号 弄 室 栋 单元
    村 …) and a number or 号, or three markers down to a street or village. A name of
    an institution (…人民医院, …卫生院) is not an address unless it has a house number."""
    text = _clean(value)
    if not 5 <= len(text) <= MAX_ADDRESS_LENGTH or not _HAN.search(text) or _SENTENCE.search(text):
        return False
    markers = set(_ADDRESS_MARKERS.findall(text))
    if len(markers) < 2:
        return False
    if _INSTITUTION.search(text) and not _NUMBERED_PLACE.search(text):
        return False
    if "号" in markers or _DIGIT.search(text):
        return True
    return len(markers) >= 3 and bool(markers & _BELOW_DISTRICT)


# --- identifiers inside text ------------------------------------------------------------

_DIGIT_RUN = re.compile(
    r"(?<![0-9])(?:(?:\+|00)?86[ -]?)?(?:\(0[0-9]{2,3}\))?[0-9](?:[0-9Xx]|[ -](?=[0-9])){6,24}"
    r"(?![0-9])"
)
_EMAIL_IN_TEXT = re.compile(r"(?<![A-Za-z0-9._%+-])" + _EMAIL.pattern)
_PLATE_IN_TEXT = re.compile(_PLATE + r"(?![A-Za-z0-9])")
_NAME_CUE = re.compile(
    r"(?:患者|病人|病患|姓名|名字|家属|联系人|就诊人|监护人|受检者|申请人)[: ]?"
    r"([\u4e00-\u9fff]{2,4})(?=[,.;:、。!?()\s]|$|男|女)"
)
_NAME_TITLE = re.compile(r"([\u4e00-\u9fff]{1,2})(?:先生|女士|小姐)")
_HAN_RUN = re.compile(r"[\u4e00-\u9fff0-9 -]{6,}")
_ROAD_LEVEL = frozenset({"路", "街", "巷", "弄", "街道", "村", "胡同", "大道", "小区"})


def identifiers_in_text(value: str) -> frozenset[str]:
    """The kinds of identifier written inside a text (a note, a remark): numbers found
    by pattern and then validated, e-mails, plates, a name after 患者/姓名/… or before
    先生/女士, and an address with a road and a house number."""
    text = _clean(value)
    found: set[str] = set()
    for run in _DIGIT_RUN.findall(text):
        for candidate in (run, *run.split(" ")):
            kind = _number_kind(candidate)
            if kind:
                found.add(kind)
    if "@" in text and _EMAIL_IN_TEXT.search(text):
        found.add("email")
    if _PLATE_IN_TEXT.search(text.upper()):
        found.add("vehicle_plate")
    if _has_name(text):
        found.add("person_name")
    if any(_is_address_in_text(run) for run in _HAN_RUN.findall(text)):
        found.add("address")
    return frozenset(found)


def _number_kind(candidate: str) -> str | None:
    for kind in ("resident_id", "mobile", "landline", "bank_card"):
        if WHOLE_VALUE[kind](candidate):
            return kind
    return None


def _has_name(text: str) -> bool:
    for match in _NAME_CUE.finditer(text):
        if is_person_name(match.group(1)):
            return True
    return any(match.group(1)[-1] in SINGLE_SURNAMES for match in _NAME_TITLE.finditer(text))


def _is_address_in_text(run: str) -> bool:
    # Notes say 3号床 (bed 3) and 市区 (downtown): inside text an address must name a
    # road or a village and a house number.
    markers = set(_ADDRESS_MARKERS.findall(run))
    return bool(markers & _ROAD_LEVEL) and len(markers) >= 2 and bool(_NUMBERED_PLACE.search(run))


# --- detectors over a sample ------------------------------------------------------------

WHOLE_VALUE: dict[str, Callable[[str], bool]] = {
    "resident_id": is_resident_id,
    "mobile": is_mobile,
    "landline": is_landline,
    "bank_card": is_bank_card,
    "email": is_email,
    "vehicle_plate": is_vehicle_plate,
    "person_name": is_person_name,
    "address": is_address,
}
# The detectors that make sense for a column of whole numbers (read as text).
NUMERIC_DETECTORS = ("resident_id", "mobile", "landline", "bank_card")


class _Sample:
    """A sample's values, cleaned and counted once: every test runs once per distinct
    value (a column of departments has a handful), however many detectors ask."""

    def __init__(self, values: Sequence[str]) -> None:
        self.size = len(values)
        self.counts = Counter(_clean(value) for value in values)
        self._hits: dict[str, dict[str, bool]] = {}

    def hits(self, kind: str) -> dict[str, bool]:
        if kind not in self._hits:
            test = WHOLE_VALUE[kind]
            self._hits[kind] = {value: test(value) for value in self.counts}
        return self._hits[kind]

    def matched(self, kind: str) -> int:
        hits = self.hits(kind)
        return sum(count for value, count in self.counts.items() if hits[value])

    def counted(self, detector: str, matched: int, found: tuple[str, ...] = ()) -> Detection:
        share = matched / self.size if self.size else 0.0
        return Detection(detector, share, matched, self.size, found)


def _whole(kind: str) -> Callable[[_Sample], Detection]:
    def run(sample: _Sample) -> Detection:
        return sample.counted(kind, sample.matched(kind))

    return run


# Among numbers that start like cards, real card numbers all pass Luhn; any other
# numbering passes it one time in ten. A column where fewer than half pass is a
# numbering (orders, invoices) that passes by chance.
_LUHN_CHANCE_SAMPLE = 20
_LUHN_MIN_SHARE = 0.5
# A column where this share of values looks like names is a column of names.
_ALL_NAMES = 0.9


def _bank_card(sample: _Sample) -> Detection:
    shaped = sum(c for value, c in sample.counts.items() if _card_digits(value) is not None)
    valid = sample.matched("bank_card")
    if shaped >= _LUHN_CHANCE_SAMPLE and valid < _LUHN_MIN_SHARE * shaped:
        valid = 0
    return sample.counted("bank_card", valid)


def _person_name(sample: _Sample) -> Detection:
    # A word of a column's vocabulary (高中 among school grades, 农民 among jobs) can
    # start with a surname and pass the character rules, while its neighbours (初中,
    # 工人) do not: in a column where not nearly every value looks like a name, a
    # value seen more than twice and in more than 1 % of the sample is such a word.
    hits = sample.hits("person_name")
    looks = sum(c for value, c in sample.counts.items() if hits[value])
    if looks >= _ALL_NAMES * sample.size:
        return sample.counted("person_name", looks)
    most = max(2, sample.size // 100)
    matched = sum(c for value, c in sample.counts.items() if hits[value] and c <= most)
    return sample.counted("person_name", matched)


def _free_text(sample: _Sample) -> Detection:
    whole = [sample.hits(kind) for kind in WHOLE_VALUE]
    matched = 0
    kinds: set[str] = set()
    for value, count in sample.counts.items():
        if len(value) < MIN_TEXT_LENGTH or any(hits[value] for hits in whole):
            continue
        inside = identifiers_in_text(value)
        if inside:
            matched += count
            kinds |= inside
    return sample.counted("free_text", matched, tuple(k for k in WHOLE_VALUE if k in kinds))


_RUNS: dict[str, Callable[[_Sample], Detection]] = {
    "resident_id": _whole("resident_id"),
    "mobile": _whole("mobile"),
    "landline": _whole("landline"),
    "bank_card": _bank_card,
    "email": _whole("email"),
    "vehicle_plate": _whole("vehicle_plate"),
    "person_name": _person_name,
    "address": _whole("address"),
    "free_text": _free_text,
}


def resident_id(values: Sequence[str]) -> Detection:
    """Valid resident ID numbers (check character, birth date, region)."""
    return _RUNS["resident_id"](_Sample(values))


def mobile(values: Sequence[str]) -> Detection:
    """Valid mainland mobile numbers."""
    return _RUNS["mobile"](_Sample(values))


def landline(values: Sequence[str]) -> Detection:
    """Valid mainland fixed-line numbers with their area code."""
    return _RUNS["landline"](_Sample(values))


def bank_card(values: Sequence[str]) -> Detection:
    """Card numbers passing Luhn; none if the column is a numbering that passes by chance."""
    return _RUNS["bank_card"](_Sample(values))


def email(values: Sequence[str]) -> Detection:
    return _RUNS["email"](_Sample(values))


def vehicle_plate(values: Sequence[str]) -> Detection:
    return _RUNS["vehicle_plate"](_Sample(values))


def person_name(values: Sequence[str]) -> Detection:
    """Values that look like names, less those repeated like the words of a vocabulary."""
    return _RUNS["person_name"](_Sample(values))


def address(values: Sequence[str]) -> Detection:
    return _RUNS["address"](_Sample(values))


def free_text(values: Sequence[str]) -> Detection:
    """Texts that are not an identifier themselves but contain one or more."""
    return _RUNS["free_text"](_Sample(values))


DETECTORS: dict[str, Callable[[Sequence[str]], Detection]] = {
    "resident_id": resident_id,
    "mobile": mobile,
    "landline": landline,
    "bank_card": bank_card,
    "email": email,
    "vehicle_plate": vehicle_plate,
    "person_name": person_name,
    "address": address,
    "free_text": free_text,
}


def detect(
    values: Sequence[str], *, detectors: Iterable[str] | None = None
) -> tuple[Detection, ...]:
    """Every detector's (or the named ones') detection that matched at least one value;
    each value is cleaned and tested once however many detectors look at it."""
    if not values:
        return ()
    names = DETECTORS if detectors is None else tuple(detectors)
    sample = _Sample(values)
    found = (_RUNS[name](sample) for name in names)
    return tuple(detection for detection in found if detection.matched)
