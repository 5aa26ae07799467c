from __future__ import annotations

import re
from datetime import date

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import luhn

from datasets.idcard import check_digit
from datasets.profiling import detectors
from datasets.profiling.detectors import (
    Detection,
    detect,
    evidence,
    identifiers_in_text,
    is_address,
    is_bank_card,
    is_email,
    is_landline,
    is_mobile,
    is_person_name,
    is_resident_id,
    is_vehicle_plate,
)
from datasets.profiling.evidence import CHINESE, ENGLISH, Evidence, percent

# Real area codes (行政区划代码): Changzhou's districts, Beijing 东城区, Shanghai 黄浦区,
# Guangzhou 越秀区, Lanzhou 城关区 (a province code starting 62, like UnionPay cards).
AREAS = (320402, 320404, 320411, 320412, 320413, 320481, 110101, 310101, 440104, 620102)


def resident_id(area: int, born: date, sequence: int) -> str:
    body = f"{area}{born:%Y%m%d}{sequence:03d}"
    return body + check_digit(body)


def with_luhn(body: str) -> str:
    return body + luhn.calc_check_digit(body)


# --- resident ID numbers --------------------------------------------------------------


def test_resident_id_valid_number_detected() -> None:
    assert is_resident_id(resident_id(320404, date(1985, 3, 12), 123))


def test_resident_id_check_character_x_detected_in_either_case() -> None:
    assert is_resident_id("11010519491231002X")
    assert is_resident_id("11010519491231002x")


def test_resident_id_wrong_check_digit_rejected() -> None:
    number = resident_id(320404, date(1985, 3, 12), 123)
    wrong = "0" if number[-1] != "0" else "1"
    assert not is_resident_id(number[:-1] + wrong)


def test_resident_id_impossible_birth_date_rejected() -> None:
    body = "32040419851312123"  # month 13
    assert not is_resident_id(body + check_digit(body))


def test_resident_id_unknown_province_rejected() -> None:
    body = "99040419850312123"
    assert not is_resident_id(body + check_digit(body))


def test_resident_id_area_created_after_the_birth_detected() -> None:
    # 武进区 (320412) dates from 2002; people born before keep the code they were given.
    assert is_resident_id(resident_id(320412, date(1950, 1, 1), 123))


def test_resident_id_old_fifteen_digit_form_detected() -> None:
    assert is_resident_id("320404850312123")
    assert not is_resident_id("320404851312123")  # month 13


def test_resident_id_random_eighteen_digits_rejected() -> None:
    assert not is_resident_id("123456789012345678")


@settings(max_examples=300, deadline=None)
@given(
    area=st.sampled_from(AREAS),
    born=st.dates(min_value=date(1900, 1, 1), max_value=date.today()),
    sequence=st.integers(0, 999),
)
def test_resident_id_every_valid_number_detected(area: int, born: date, sequence: int) -> None:
    number = resident_id(area, born, sequence)
    assert is_resident_id(number)
    assert resident_id_detection([number]).matched == 1


def resident_id_detection(values: list[str]) -> Detection:
    return detectors.resident_id(values)


# --- phone numbers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    ["13812345678", "+8613812345678", "+86 138 1234 5678", "138-1234-5678", "008613812345678"],
)
def test_mobile_forms_detected(number: str) -> None:
    assert is_mobile(number)
    assert not is_landline(number)


def test_mobile_full_width_digits_detected() -> None:
    assert is_mobile("１３８１２３４５６７８")


@pytest.mark.parametrize("number", ["12345678901", "1381234567", "138123456789", "0519-86981234"])
def test_mobile_rejects_non_mobiles(number: str) -> None:
    assert not is_mobile(number)


@pytest.mark.parametrize(
    "number",
    ["0519-86981234", "(0519)86981234", "051986981234", "+86 519 8698 1234", "010-12345678"],
)
def test_landline_forms_detected(number: str) -> None:
    assert is_landline(number)
    assert not is_mobile(number)


@pytest.mark.parametrize("number", ["86981234", "0000-12345678", "13812345678", "2024-01-05"])
def test_landline_rejects_numbers_without_a_valid_area_code(number: str) -> None:
    assert not is_landline(number)


@settings(max_examples=300, deadline=None)
@given(prefix=st.integers(13, 19), rest=st.integers(0, 10**9 - 1))
def test_mobile_block_cache_agrees_with_phonenumbers(prefix: int, rest: int) -> None:
    number = f"{prefix}{rest:09d}"
    parsed = phonenumbers.parse(number, "CN")
    expected = (
        phonenumbers.is_valid_number(parsed)
        and phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.MOBILE
    )
    assert is_mobile(number) == expected


# --- bank cards ------------------------------------------------------------------------


def test_bank_card_unionpay_number_detected() -> None:
    card = with_luhn("622202123456789012")
    assert is_bank_card(card)
    assert is_bank_card(" ".join(card[i : i + 4] for i in range(0, 16, 4)) + " " + card[16:])


def test_bank_card_wrong_check_digit_rejected() -> None:
    card = with_luhn("622202123456789012")
    wrong = str((int(card[-1]) + 1) % 10)
    assert not is_bank_card(card[:-1] + wrong)


def test_bank_card_order_number_passing_luhn_without_card_prefix_rejected() -> None:
    order = with_luhn("202401051234567")  # 16 digits, passes Luhn, starts like no card
    assert luhn.is_valid(order)
    assert not is_bank_card(order)


def test_bank_card_resident_id_passing_luhn_not_counted() -> None:
    # A Gansu number (62…) can pass Luhn by chance: it is a resident ID, not a card.
    for sequence in range(1000):
        number = resident_id(620102, date(1980, 1, 1), sequence)
        if luhn.is_valid(number):
            assert not is_bank_card(number)
            return
    pytest.fail("no resident ID in the range passes Luhn")


def test_bank_card_numbering_passing_luhn_by_chance_not_detected() -> None:
    # Order numbers that start like Visa cards: one in ten passes Luhn by chance.
    orders = [f"4{n:015d}" for n in range(1_000_000, 1_000_200)]
    assert sum(map(luhn.is_valid, orders)) >= 10
    assert detectors.bank_card(orders).matched == 0


def test_bank_card_column_of_cards_detected() -> None:
    cards = [with_luhn(f"62220212{n:010d}") for n in range(100)]
    detection = detectors.bank_card(cards)
    assert detection.matched == 100
    assert detection.share == 1.0


# --- e-mails and plates ----------------------------------------------------------------


def test_email_detected() -> None:
    assert is_email("zhang.wei@example.com.cn")
    assert not is_email("zhang.wei@")
    assert not is_email("内科")


@pytest.mark.parametrize("plate", ["苏D12345", "苏DF12345", "苏D·12345", "京F-35925", "粤B12345D"])
def test_vehicle_plate_detected(plate: str) -> None:
    assert is_vehicle_plate(plate)


@pytest.mark.parametrize("plate", ["苏I12345", "苏D1234", "AB12345", "苏D1234567"])
def test_vehicle_plate_rejects_non_plates(plate: str) -> None:
    assert not is_vehicle_plate(plate)


# --- names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["张伟", "王心怡", "欧阳娜娜", "司马懿", "诸葛亮", "张王丽丽", "Zhang Wei", "ZHANG Wei"]
)
def test_person_name_detected(name: str) -> None:
    assert is_person_name(name)


@pytest.mark.parametrize(
    "word",
    [
        "内科",
        "心内科",
        "钟楼区",
        "武进区",
        "高血压",
        "单胎顺产",
        "第一人民医院",
        "常州市第一人民医院",
        "China Mobile",
        "I10",
    ],
)
def test_person_name_rejects_departments_places_and_illnesses(word: str) -> None:
    assert not is_person_name(word)


def test_person_name_repeated_vocabulary_not_counted() -> None:
    # 高中 and 农民 start with a surname (高, 农) but repeat like the words they are.
    values = ["高中", "农民", "初中", "大学"] * 250
    assert detectors.person_name(values).matched == 0


def test_person_name_column_of_names_detected() -> None:
    values = ["张伟", "李娜", "王芳", "刘洋", "陈静", "欧阳娜娜"] * 2
    assert detectors.person_name(values).matched == len(values)


# --- addresses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "place",
    ["江苏省常州市钟楼区南大街12号3幢2单元301室", "北京市东城区东四十条5号", "溧阳市社渚镇周城村"],
)
def test_address_detected(place: str) -> None:
    assert is_address(place)


@pytest.mark.parametrize(
    "place",
    [
        "常州市第一人民医院",
        "常州市武进区人民医院",
        "常州市武进区湖塘镇卫生院",
        "江苏省常州市钟楼区",
        "钟楼区",
    ],
)
def test_address_rejects_hospitals_and_districts(place: str) -> None:
    assert not is_address(place)


# --- free text -------------------------------------------------------------------------


def test_free_text_note_with_name_phone_and_address() -> None:
    note = "患者张伟，电话13812345678，住常州市钟楼区南大街12号"
    assert identifiers_in_text(note) == {"person_name", "mobile", "address"}
    detection = detectors.free_text([note] * 5)
    assert detection.matched == 5
    assert detection.found == ("mobile", "person_name", "address")


def test_free_text_embedded_id_card_and_email() -> None:
    number = resident_id(320404, date(1985, 3, 12), 123)
    note = f"复诊。身份证{number}，邮箱 zw@example.com"
    assert identifiers_in_text(note) == {"resident_id", "email"}


def test_free_text_clinical_note_without_identifiers() -> None:
    note = "患者于3天前出现头痛，伴发热，3号床，收治于市区医院"
    assert identifiers_in_text(note) == frozenset()
    assert detectors.free_text([note]).matched == 0


def test_free_text_whole_identifiers_counted_by_their_own_detector() -> None:
    detection = detectors.free_text(["13812345678", "江苏省常州市钟楼区南大街12号"])
    assert detection.matched == 0


# --- detections and their evidence -----------------------------------------------------


def test_detection_significant_by_share_or_count() -> None:
    assert Detection("mobile", 0.01, 100, 10_000).significant
    assert Detection("mobile", 0.0003, 3, 10_000).significant
    assert not Detection("mobile", 0.0002, 2, 10_000).significant
    assert not Detection("mobile", 0.0, 0, 10).significant


def test_detect_reports_only_detectors_that_matched() -> None:
    values = ["13812345678"] * 98 + ["内科", "外科"]
    found = detect(values)
    assert [d.detector for d in found] == ["mobile"]
    assert found[0].matched == 98
    assert found[0].share == pytest.approx(0.98)


def test_evidence_words_counts_in_both_languages_and_never_a_value() -> None:
    numbers = [resident_id(320404, date(1985, 3, 12), n) for n in range(98)]
    detection = detectors.resident_id([*numbers, "x", "y"])
    words = evidence(detection)
    assert words.message_id == "detect.resident_id"
    assert words.english == ("98 % of sampled values are valid resident ID numbers (98 of 100).")
    assert words.chinese == "抽样值中 98 % 是有效的居民身份证号(100 个中 98 个)。"
    assert not any(number in words.english + words.chinese for number in numbers)


def test_evidence_free_text_names_the_kinds_found() -> None:
    detection = detectors.free_text(["患者张伟，电话13812345678，请回电"])
    words = evidence(detection)
    assert "mobile phone numbers" in words.english
    assert "手机号码" in words.chinese
    assert "13812345678" not in words.english + words.chinese


def test_evidence_wordings_complete_in_both_languages() -> None:
    fields = re.compile(r"%\((\w+)\)s")
    assert ENGLISH.keys() == CHINESE.keys()
    for message_id, english in ENGLISH.items():
        assert set(fields.findall(english)) == set(fields.findall(CHINESE[message_id])), message_id


def test_evidence_worded_parts_follow_the_language() -> None:
    words = Evidence("name.suggests", {"kind_id": "kind.resident_id"})
    assert words.english == "The column's name suggests resident ID numbers."
    assert words.chinese == "列名表明是居民身份证号。"


@pytest.mark.parametrize(
    ("share", "shown"),
    [(0.0, 0), (0.0004, 0.1), (0.0123, 1.2), (0.456, 46), (0.9996, 99.9), (1.0, 100)],
)
def test_percent_never_rounds_to_all_or_nothing(share: float, shown: float) -> None:
    assert percent(share) == shown
