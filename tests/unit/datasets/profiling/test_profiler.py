from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import luhn

from datasets.idcard import check_digit
from datasets.manifest import ColumnClass, ColumnType
from datasets.profiling.column_names import kind_of_name
from datasets.profiling.distinct import DistinctCounter
from datasets.profiling.profiler import (
    ProfilingError,
    TableProfile,
    key_problems,
    profile_table,
    propose_columns,
)
from datasets.profiling.proposals import rounded_outward

Rows = Mapping[str, Sequence[object]]


def text_batches(columns: Rows, *, size: int = 1000) -> tuple[list[pa.RecordBatch], pa.Schema]:
    """Columns as a CSV importer hands them over: text, empty cells as nulls."""
    schema = pa.schema([(name, pa.string()) for name in columns])
    table = pa.table(
        {
            name: pa.array([_text(v) for v in values], pa.string())
            for name, values in columns.items()
        },
        schema=schema,
    )
    return table.to_batches(max_chunksize=size), schema


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def profiled(columns: Rows, *, size: int = 1000, **options: int) -> TableProfile:
    batches, schema = text_batches(columns, size=size)
    return profile_table(batches, schema=schema, **options)


def resident_ids(count: int, *, area: int = 320404) -> list[str]:
    bodies = [f"{area}{1950 + n % 60}0{1 + n % 9}1{n % 10}{n % 1000:03d}" for n in range(count)]
    return [body + check_digit(body) for body in bodies]


def types_of(profile: TableProfile) -> dict[str, ColumnType]:
    return {c.name: c.inferred_type for c in profile.columns}


def proposal_of(profile: TableProfile, column: str, **options: str) -> object:
    proposals = propose_columns(profile, table="t", **options)
    return next(p for p in proposals if p.column == column)


# --- type inference --------------------------------------------------------------------


def test_profile_infers_types_of_text_columns() -> None:
    profile = profiled(
        {
            "count": ["1", "20", "-3", "400"],
            "amount": ["1.5", "2", "3.25", "1e3"],
            "day": ["2024-01-05", "2024-02-29", "2023-12-31", "2024-01-01"],
            "slash_day": ["2024/1/5", "2024/02/29", "2023/12/31", "2024/1/1"],
            "chinese_day": ["2024年1月5日", "2024年2月29日", "2023年12月31日", "2024年1月1日"],
            "at": ["2024-01-05 08:30:00", "2024-01-05T09:00:00", "2024-01-06", "2024-01-07 10:00"],
            "word": ["内科", "外科", "儿科", "内科"],
        }
    )
    assert types_of(profile) == {
        "count": ColumnType.INTEGER,
        "amount": ColumnType.FLOAT,
        "day": ColumnType.DATE,
        "slash_day": ColumnType.DATE,
        "chinese_day": ColumnType.DATE,
        "at": ColumnType.TIMESTAMP,
        "word": ColumnType.STRING,
    }


def test_profile_leading_zeros_and_long_digit_runs_stay_text() -> None:
    profile = profiled(
        {
            "code": ["007", "012", "123", "999"],
            "negative_code": ["-01", "5", "6", "7"],
            "ids": resident_ids(4),
            "digits_only_ids": ["3204041985031212", "3204041985031213", "1", "2"],
            "decimal": ["0.5", "0", "10.25", "3"],
        }
    )
    assert types_of(profile) == {
        "code": ColumnType.STRING,
        "negative_code": ColumnType.STRING,
        "ids": ColumnType.STRING,
        "digits_only_ids": ColumnType.STRING,
        "decimal": ColumnType.FLOAT,
    }


def test_profile_booleans_only_when_exactly_two_yes_no_values() -> None:
    profile = profiled(
        {
            "yes_no": ["是", "否", "是", "是"],
            "true_false": ["TRUE", "false", "True", "false"],
            "zero_one": ["0", "1", "1", "0"],
            "zero_one_two": ["0", "1", "2", "0"],
            "only_one": ["1", "1", "1", "1"],
        }
    )
    assert types_of(profile) == {
        "yes_no": ColumnType.BOOLEAN,
        "true_false": ColumnType.BOOLEAN,
        "zero_one": ColumnType.BOOLEAN,
        "zero_one_two": ColumnType.INTEGER,
        "only_one": ColumnType.INTEGER,
    }


def test_profile_widens_integers_to_floats_across_batches() -> None:
    profile = profiled({"value": ["1", "2", "3", "4.5"]}, size=2)
    column = profile.columns[0]
    assert column.inferred_type is ColumnType.FLOAT
    assert (column.derived.minimum, column.derived.maximum) == (1.0, 4.5)


def test_profile_widens_to_text_when_a_later_batch_is_not_a_date() -> None:
    profile = profiled({"day": ["2024-01-05", "2024-01-06", "unknown", "2024-01-07"]}, size=2)
    column = profile.columns[0]
    assert column.inferred_type is ColumnType.STRING
    assert column.derived.minimum is None


def test_profile_compact_dates_and_eight_digit_numbers() -> None:
    profile = profiled(
        {
            "day": ["20240105", "19991231", "20000229", "20231001"],
            "number": ["20240105", "12345678", "20000229", "20231001"],
        },
        size=2,
    )
    assert types_of(profile) == {"day": ColumnType.DATE, "number": ColumnType.INTEGER}
    number = profile.columns[1]
    assert (number.derived.minimum, number.derived.maximum) == (12345678, 20240105)


def test_profile_native_types_kept() -> None:
    batch = pa.record_batch(
        {
            "n": pa.array([3, 1, 2], pa.int32()),
            "x": pa.array([1.5, None, 0.5]),
            "d": pa.array([date(2024, 1, 2), date(2023, 5, 6), None]),
            "t": pa.array([datetime(2024, 1, 2, 3, 4), None, None], pa.timestamp("us")),
            "b": pa.array([True, False, True]),
            "c": pa.array(["内科", "外科", "内科"]).dictionary_encode(),
        }
    )
    profile = profile_table([batch], schema=batch.schema)
    assert types_of(profile) == {
        "n": ColumnType.INTEGER,
        "x": ColumnType.FLOAT,
        "d": ColumnType.DATE,
        "t": ColumnType.TIMESTAMP,
        "b": ColumnType.BOOLEAN,
        "c": ColumnType.STRING,
    }
    d = profile.column("d")
    assert d is not None
    assert (d.derived.minimum, d.derived.maximum) == (date(2023, 5, 6), date(2024, 1, 2))
    assert d.null_share == pytest.approx(1 / 3)


# --- counts, sample, bounded distinct counting -----------------------------------------


def test_profile_counts_nulls_lengths_and_marks_derived_values() -> None:
    profile = profiled({"cost": ["10", "", "30", ""], "word": ["ab", "abcd", None, None]})
    cost, word = profile.columns
    assert (cost.rows, cost.nulls, cost.null_share) == (4, 2, 0.5)
    assert (cost.derived.minimum, cost.derived.maximum) == (10, 30)
    assert cost.derived.derived_from_data
    assert word.mean_length == 3.0
    assert word.sampled == 2


def test_profile_top_categories_of_low_cardinality_text() -> None:
    profile = profiled({"department": ["内科"] * 30 + ["外科"] * 20 + ["儿科"] * 10})
    column = profile.columns[0]
    assert [(c.value, c.rows) for c in column.derived.top_categories] == [
        ("内科", 30),
        ("外科", 20),
        ("儿科", 10),
    ]
    assert column.all_categories_known


def test_distinct_counter_exact_under_the_cap() -> None:
    counter = DistinctCounter(cap=100)
    counter.add(pa.array(["a", "b", "a"]))
    counter.add(pa.array(["b", "c"]))
    assert counter.exact
    assert counter.count() == 3
    assert counter.most_common(2) == [("a", 2), ("b", 2)]


def test_distinct_counter_estimates_beyond_the_cap() -> None:
    counter = DistinctCounter(cap=1000)
    for start in range(0, 50_000, 5000):
        counter.add(pa.array([f"v{n}" for n in range(start, start + 5000)]))
        counter.add(pa.array([f"v{n}" for n in range(start, start + 100)]))  # repeats
    assert not counter.exact
    assert counter.count() == pytest.approx(50_000, rel=0.05)
    assert counter.most_common(5) == []


def test_distinct_counter_estimates_numbers_and_dates() -> None:
    numbers, days = DistinctCounter(cap=10), DistinctCounter(cap=10)
    numbers.add(pa.array(range(20_000)))
    days.add(pa.array([date(2000, 1, 1) + timedelta(days=n) for n in range(5000)]))
    assert numbers.count() == pytest.approx(20_000, rel=0.05)
    assert days.count() == pytest.approx(5000, rel=0.05)


def test_profile_candidate_keys_exact_and_estimated() -> None:
    rows = 3000
    profile = profiled(
        {
            "visit_id": [str(n) for n in range(1, rows + 1)],  # increasing: exact
            "code": [f"C{(n * 7919) % rows:05d}" for n in range(rows)],  # unique, estimated
            "person_id": [str(n % 100) for n in range(rows)],
            "maybe": [str(n) if n % 50 else "" for n in range(rows)],  # unique but nulls
        },
        distinct_cap=500,
    )
    visit_id, code, _, _ = profile.columns
    assert visit_id.distinct_exact and visit_id.distinct == rows
    assert not code.distinct_exact
    assert profile.candidate_keys == ("visit_id", "code")


def test_profile_reads_a_record_batch_reader_once() -> None:
    batches, schema = text_batches({"n": [str(n) for n in range(100)]}, size=10)
    reader = pa.RecordBatchReader.from_batches(schema, iter(batches))
    assert profile_table(reader, schema=schema).rows == 100


def test_profile_refuses_batches_of_other_columns() -> None:
    batches, schema = text_batches({"a": ["1"]})
    other = pa.schema([("b", pa.string())])
    with pytest.raises(ProfilingError):
        profile_table(batches, schema=other)


MIXED: Rows = {
    "n": [str(n) if n % 7 else "" for n in range(400)],
    "x": [str(n) if n < 300 else f"{n}.5" for n in range(400)],
    "day": [f"2024-01-{1 + n % 28:02d}" for n in range(400)],
    "word": [("内科", "外科", "儿科")[n % 3] for n in range(400)],
    "phone": [f"138{n * 7919 % 1009:08d}" for n in range(400)],  # not increasing
    "name": [("张伟", "李娜", "王芳", "欧阳娜娜")[n % 4] + str(n % 2) for n in range(400)],
}


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(1, 399), max_size=8, unique=True))
def test_profile_independent_of_batch_boundaries(cuts: list[int]) -> None:
    batches, schema = text_batches(MIXED, size=400)
    whole = pa.Table.from_batches(batches)
    edges = [0, *sorted(cuts), 400]
    pieces = [whole.slice(a, b - a).to_batches()[0] for a, b in zip(edges, edges[1:], strict=False)]
    # A small sample and a small exact cap: the reservoir and the sketch both work.
    options = {"sample_size": 100, "distinct_cap": 50}
    cut = profile_table(pieces, schema=schema, **options)
    assert cut == profile_table(batches, schema=schema, **options)
    assert not cut.columns[4].distinct_exact  # phone: estimated


# --- proposals -------------------------------------------------------------------------


def test_propose_meaningless_header_holding_resident_ids_is_direct_identifier() -> None:
    profile = profiled({"col_3": resident_ids(200), "col_4": ["内科", "外科"] * 100})
    proposals = propose_columns(profile, table="t")
    ids, departments = proposals
    assert ids.cls is ColumnClass.DIRECT_IDENTIFIER
    assert ids.rules == ("forbidden",)
    assert ids.type is ColumnType.STRING
    assert ids.evidence[0].message_id == "detect.resident_id"
    assert ids.evidence[0].params["percent"] == 100
    assert departments.cls is ColumnClass.CATEGORY
    assert departments.derived.categories == ("内科", "外科")
    assert departments.rules == ("dimension",)


def test_propose_health_patients(small_health_tables: dict[str, pd.DataFrame]) -> None:
    classes = proposed_classes(small_health_tables["patients"], "patients")
    assert classes == {
        "person_id": ColumnClass.PERSON_KEY,
        "name": ColumnClass.DIRECT_IDENTIFIER,
        "id_card": ColumnClass.DIRECT_IDENTIFIER,
        "phone": ColumnClass.DIRECT_IDENTIFIER,
        "sex": ColumnClass.QUASI_IDENTIFIER,
        "birth_date": ColumnClass.QUASI_IDENTIFIER,
        "district": ColumnClass.QUASI_IDENTIFIER,
        "address": ColumnClass.DIRECT_IDENTIFIER,
        "consent_research": ColumnClass.CONSENT,
    }


def test_propose_health_visits(small_health_tables: dict[str, pd.DataFrame]) -> None:
    classes = proposed_classes(small_health_tables["visits"], "visits")
    assert classes == {
        "visit_id": ColumnClass.RECORD_KEY,
        "person_id": ColumnClass.PERSON_KEY,
        "hospital": ColumnClass.CATEGORY,
        "department": ColumnClass.CATEGORY,
        "visit_date": ColumnClass.SENSITIVE,
        "icd10": ColumnClass.CATEGORY,
        "diagnosis": ColumnClass.CATEGORY,
        "cost": ColumnClass.SENSITIVE,
        "length_of_stay": ColumnClass.SENSITIVE,
        "readmitted_30d": ColumnClass.SENSITIVE,
    }


def proposed_classes(frame: pd.DataFrame, table: str) -> dict[str, ColumnClass]:
    columns = {name: [_text(v) for v in frame[name].tolist()] for name in frame.columns}
    profile = profiled(columns, size=500)
    return {p.column: p.cls for p in propose_columns(profile, table=table)}


def test_propose_phone_named_column_without_phone_numbers_follows_the_values() -> None:
    profile = profiled({"phone": [str(n % 90 + 10) for n in range(200)]})
    proposal = propose_columns(profile, table="t")[0]
    assert proposal.cls is ColumnClass.SENSITIVE
    assert proposal.evidence[0].message_id == "name.contradicted"
    assert proposal.evidence[0].params["percent"] == 0


def test_propose_identifier_name_with_too_few_values_decides_by_name() -> None:
    profile = profiled({"姓名": ["x1", "x2"], "手机号": [None, None]})
    name, phone = propose_columns(profile, table="t")
    assert name.cls is ColumnClass.DIRECT_IDENTIFIER
    assert name.evidence[0].message_id == "name.unchecked"
    assert phone.cls is ColumnClass.DIRECT_IDENTIFIER
    assert [e.message_id for e in phone.evidence] == ["name.suggests", "values.empty"]


def test_propose_pinyin_and_chinese_headers() -> None:
    profile = profiled(
        {
            "xingming": ["张伟", "李娜", "王芳", "刘洋"] * 10,
            "shouji": ["13812345678", "13912345678"] * 20,
            "性别": ["男", "女"] * 20,
            "nianling": [str(20 + n) for n in range(40)],
        }
    )
    classes = {p.column: p.cls for p in propose_columns(profile, table="t")}
    assert classes == {
        "xingming": ColumnClass.DIRECT_IDENTIFIER,
        "shouji": ColumnClass.DIRECT_IDENTIFIER,
        "性别": ColumnClass.QUASI_IDENTIFIER,
        "nianling": ColumnClass.QUASI_IDENTIFIER,
    }


def test_propose_free_text_with_identifiers_is_direct_identifier() -> None:
    notes = [f"患者复诊，联系电话1381234{n:04d}，血压平稳" for n in range(30)]
    notes += ["血压平稳，继续服药，两周后复查。"] * 470
    proposal = propose_columns(profiled({"备注": notes}), table="t")[0]
    assert proposal.cls is ColumnClass.DIRECT_IDENTIFIER
    assert proposal.evidence[0].message_id == "detect.free_text"
    assert "mobile phone numbers" in proposal.evidence[0].english


def test_propose_free_text_without_identifiers_is_only_counted() -> None:
    notes = [f"血压平稳，继续服药，{n}周后复查，注意饮食。" for n in range(300)]
    proposal = propose_columns(profiled({"notes": notes}), table="t")[0]
    assert proposal.cls is ColumnClass.SENSITIVE
    assert proposal.rules == ("aggregate_only", "filter")
    assert proposal.aggregates == ("COUNT",)


def test_propose_measurement_bounds_rounded_outward() -> None:
    profile = profiled({"cost": ["12.3", "48765.2", "300"] * 10})
    proposal = propose_columns(profile, table="visits")[0]
    assert proposal.cls is ColumnClass.SENSITIVE
    assert proposal.aggregates == ("COUNT", "SUM", "AVG", "STDDEV", "VARIANCE")
    assert proposal.derived.bounds == (0.0, 50000.0)
    assert proposal.derived.derived_from_data
    assert proposal.rule_key == "visits.cost"


@pytest.mark.parametrize(
    ("low", "high", "bounds"),
    [
        (12.3, 48765.0, (0.0, 50000.0)),
        (0.0, 58.0, (0.0, 60.0)),
        (35.5, 41.2, (35.0, 42.0)),
        (0.312, 0.388, (0.31, 0.39)),
        (-7.0, 7.0, (-10.0, 10.0)),
        (5.0, 5.0, (5.0, 5.0)),
    ],
)
def test_rounded_outward(low: float, high: float, bounds: tuple[float, float]) -> None:
    assert rounded_outward(low, high) == bounds


def test_propose_no_category_list_when_a_category_is_rare() -> None:
    profile = profiled({"department": ["内科"] * 50 + ["外科"] * 50 + ["眼科"] * 3})
    proposal = propose_columns(profile, table="t")[0]
    assert proposal.cls is ColumnClass.CATEGORY
    assert proposal.derived.categories is None
    assert [e.message_id for e in proposal.evidence] == [
        "values.categories",
        "values.rare_categories",
    ]


def test_propose_dates_birth_dates_and_events() -> None:
    profile = profiled(
        {
            "col_1": [f"{1930 + n}-03-01" for n in range(60)],
            "visit_date": [f"2024-01-{1 + n % 28:02d}" for n in range(60)],
        }
    )
    births, visits = propose_columns(profile, table="t")
    assert births.cls is ColumnClass.QUASI_IDENTIFIER
    assert births.evidence[0].message_id == "values.birth_dates"
    assert births.derived.bounds == (1930.0, 1989.0)
    assert visits.cls is ColumnClass.SENSITIVE
    assert visits.aggregates == ("COUNT",)


def test_propose_owner_named_person_key() -> None:
    profile = profiled(
        {"pid": [str(n % 10) for n in range(100)], "visit": [str(n) for n in range(100)]}
    )
    person, visit = propose_columns(profile, table="t", person_key="pid")
    assert person.cls is ColumnClass.PERSON_KEY
    assert person.confidence == 1.0
    assert [e.message_id for e in person.evidence] == ["owner.person_key", "key.rows_per_person"]
    assert visit.cls is ColumnClass.RECORD_KEY


def test_propose_unknown_person_key_refused() -> None:
    with pytest.raises(ProfilingError):
        propose_columns(profiled({"a": ["1"]}), table="t", person_key="b")


def test_propose_evidence_never_holds_a_value() -> None:
    cards = [f"62220212{n:09d}" for n in range(50)]
    columns: Rows = {
        "col_1": resident_ids(50),
        "col_2": [f"1391234{n:04d}" for n in range(50)],
        "col_3": [c + luhn.calc_check_digit(c) for c in cards],
        "col_4": [f"患者张伟，电话1381234{n:04d}" for n in range(50)],
        "col_5": ["江苏省常州市钟楼区南大街12号"] * 50,
    }
    proposals = propose_columns(profiled(columns), table="t")
    texts = " ".join(e.english + e.chinese for p in proposals for e in p.evidence)
    assert all(p.cls is ColumnClass.DIRECT_IDENTIFIER for p in proposals)
    for values in columns.values():
        assert not any(str(value) in texts for value in values)
    assert "张伟" not in texts


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("身份证号", "resident_id"),
        ("shenfenzheng", "resident_id"),
        ("IDCard", "resident_id"),
        ("姓名", "person_name"),
        ("xingming", "person_name"),
        ("patientName", "person_name"),
        ("department_name", None),
        ("科室名称", None),
        ("手机号", "phone"),
        ("dianhua", "phone"),
        ("mobile", "phone"),
        ("联系人电话", "phone"),
        ("住址", "address"),
        ("zhuzhi", "address"),
        ("银行卡号", "bank_card"),
        ("就诊卡号", "person_key"),
        ("出生日期", "birth_date"),
        ("dob", "birth_date"),
        ("性别", "sex"),
        ("gender", "sex"),
        ("年龄", "age"),
        ("邮编", "postcode"),
        ("zip", "postcode"),
        ("district", "area"),
        ("患者编号", "person_key"),
        ("patient_id", "person_key"),
        ("visit_id", "record_key"),
        ("就诊ID", "record_key"),
        ("taken_at", "event_date"),
        ("备注", "free_text"),
        ("consent_research", "consent"),
        ("col_3", None),
        ("hotel", None),
    ],
)
def test_kind_of_name(name: str, kind: str | None) -> None:
    assert kind_of_name(name) == kind


def test_propose_contradicted_name_worded_in_chinese() -> None:
    profile = profiled({"手机号": ["内科", "外科"] * 50})
    proposal = propose_columns(profile, table="t")[0]
    assert proposal.cls is ColumnClass.CATEGORY
    assert (
        proposal.evidence[0].chinese
        == "列名表明是电话号码,但抽样的 100 个值中只有 0 % 是:以值为准。"
    )


# --- key problems ----------------------------------------------------------------------


def test_key_problems_nulls_and_duplicates_with_first_rows() -> None:
    keys = ["a", "b", None, "c", "b", "d", None, "a"]
    batches, _ = text_batches({"patient_id": keys}, size=3)
    problems = key_problems(batches, key="patient_id", one_row_per_person=True)
    assert [(p.problem, p.rows, p.first_row) for p in problems] == [
        ("nulls", 2, 3),
        ("duplicates", 2, 5),
    ]
    words = problems[1].evidence
    assert words.message_id == "key.duplicates"
    assert words.english == (
        "2 rows repeat a patient_id already seen in a table of one row per person; "
        "the first is data row 5."
    )
    assert "b" not in words.chinese.replace("patient_id", "")


def test_key_problems_integer_keys_exact() -> None:
    batch = pa.record_batch({"person_id": pa.array([5, 6, 7, 6], pa.int64())})
    problems = key_problems([batch], key="person_id", one_row_per_person=True)
    assert [(p.problem, p.rows, p.first_row) for p in problems] == [("duplicates", 1, 4)]


def test_key_problems_event_table_repeats_allowed() -> None:
    batches, _ = text_batches({"person_id": ["1", "1", "2"]})
    assert key_problems(batches, key="person_id", one_row_per_person=False) == []


def test_key_problems_clean_key() -> None:
    batches, _ = text_batches({"person_id": [str(n) for n in range(5000)]}, size=700)
    assert key_problems(batches, key="person_id", one_row_per_person=True) == []


def test_key_problems_missing_key_refused() -> None:
    batches, _ = text_batches({"a": ["1"]})
    with pytest.raises(ProfilingError):
        key_problems(batches, key="person_id", one_row_per_person=True)
