from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datasets.health import generate_health
from datasets.health_manifest import HEALTH, ICD10, LAB_TESTS
from datasets.idcard import CHANGZHOU_AREA_CODES, is_male, is_valid
from datasets.manifest import ColumnClass, ColumnType

Tables = dict[str, pd.DataFrame]
REPO_ROOT = Path(__file__).resolve().parents[3]

EXPECTED_DTYPES = {
    ColumnType.INTEGER: "int64",
    ColumnType.FLOAT: "float64",
    ColumnType.BOOLEAN: "bool",
    ColumnType.STRING: "str",
    ColumnType.DATE: "object",
    ColumnType.TIMESTAMP: "datetime64[us]",
}


def _visits_with_age(tables: Tables) -> pd.DataFrame:
    patients = tables["patients"][["person_id", "sex", "birth_date"]]
    visits = tables["visits"].merge(patients, on="person_id", validate="many_to_one")
    days = pd.to_datetime(visits["visit_date"]) - pd.to_datetime(visits["birth_date"])
    return visits.assign(age=days.dt.days / 365.25)


def test_generate_health_deterministic_for_a_seed() -> None:
    first = generate_health(200, seed=5)
    second = generate_health(200, seed=5)
    other = generate_health(200, seed=6)
    for name in HEALTH.table_names:
        pd.testing.assert_frame_equal(first[name], second[name])
    assert not first["patients"].equals(other["patients"])


def test_generate_health_columns_follow_manifest(health_tables: Tables) -> None:
    assert list(health_tables) == list(HEALTH.table_names)
    for table in HEALTH.tables:
        frame = health_tables[table.name]
        assert list(frame.columns) == [c.name for c in table.columns]
        for column in table.columns:
            assert str(frame[column.name].dtype) == EXPECTED_DTYPES[column.type], column.name
            assert not frame[column.name].isna().any(), column.name


def test_generate_health_dates_are_python_dates(health_tables: Tables) -> None:
    assert type(health_tables["patients"]["birth_date"].iloc[0]) is date
    assert type(health_tables["visits"]["visit_date"].iloc[0]) is date


def test_generate_health_parquet_types_round_trip(health_tables: Tables) -> None:
    for name, frame in health_tables.items():
        sink = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
        table = pq.read_table(pa.BufferReader(sink.getvalue()))
        if name == "patients":
            assert table.schema.field("birth_date").type == pa.date32()
        if name == "visits":
            assert table.schema.field("visit_date").type == pa.date32()
        if name == "labs":
            assert table.schema.field("taken_at").type == pa.timestamp("us")
        pd.testing.assert_frame_equal(table.to_pandas(), frame)


def test_generate_health_average_visits_and_labs_per_patient(health_tables: Tables) -> None:
    patients = len(health_tables["patients"])
    assert 4.5 <= len(health_tables["visits"]) / patients <= 5.5
    assert 13.0 <= len(health_tables["labs"]) / patients <= 17.0
    with_visits = health_tables["visits"]["person_id"].nunique()
    assert 0.03 <= 1 - with_visits / patients <= 0.25  # some people never visit


def test_generate_health_keys_are_unique_and_consistent(health_tables: Tables) -> None:
    patients, visits, labs = (health_tables[n] for n in ("patients", "visits", "labs"))
    assert patients["person_id"].is_unique
    assert visits["visit_id"].is_unique
    assert labs["lab_id"].is_unique
    assert visits["person_id"].isin(patients["person_id"]).all()
    owner = labs.merge(visits[["visit_id", "person_id"]], on="visit_id", suffixes=("", "_visit"))
    assert len(owner) == len(labs)
    assert (owner["person_id"] == owner["person_id_visit"]).all()


def test_generate_health_id_cards_valid_and_consistent(health_tables: Tables) -> None:
    patients = health_tables["patients"]
    assert patients["id_card"].is_unique
    for row in patients.itertuples():
        assert is_valid(row.id_card), row.id_card
        assert row.id_card[:6] == str(CHANGZHOU_AREA_CODES[row.district])
        assert row.id_card[6:14] == row.birth_date.strftime("%Y%m%d")
        assert is_male(row.id_card) == (row.sex == "男")


def test_generate_health_phones_are_mobile_numbers(health_tables: Tables) -> None:
    phones = health_tables["patients"]["phone"]
    assert phones.str.fullmatch(r"1[3-9]\d{9}").all()
    assert phones.is_unique


def test_generate_health_names_and_addresses_look_real(health_tables: Tables) -> None:
    patients = health_tables["patients"]
    assert patients["name"].str.fullmatch(r"[\u4e00-\u9fff]{2,4}").all()
    assert patients["name"].nunique() > 0.5 * len(patients)
    prefix = "江苏省常州市" + patients["district"]
    starts = [a.startswith(p) for a, p in zip(patients["address"], prefix, strict=True)]
    assert all(starts)
    assert patients["address"].str.contains(r"\d+号").all()


def test_generate_health_consent_share(health_tables: Tables) -> None:
    assert 0.82 <= health_tables["patients"]["consent_research"].mean() <= 0.88


def test_generate_health_values_within_categories_and_bounds(health_tables: Tables) -> None:
    for table in HEALTH.tables:
        frame = health_tables[table.name]
        for column in table.columns:
            values = frame[column.name]
            if column.categories is not None:
                assert set(values) <= set(column.categories), column.name
            if column.bounds is not None and column.type in (ColumnType.INTEGER, ColumnType.FLOAT):
                low, high = column.bounds
                assert values.between(low, high).all(), column.name
    years = pd.to_datetime(health_tables["patients"]["birth_date"]).dt.year
    low, high = HEALTH.table("patients").column("birth_date").bounds  # type: ignore[union-attr]
    assert years.between(low, high).all()


def test_generate_health_visits_after_birth_in_study_period(health_tables: Tables) -> None:
    visits = _visits_with_age(health_tables)
    assert (visits["age"] >= 0).all()
    dates = pd.to_datetime(visits["visit_date"])
    assert dates.min() >= pd.Timestamp("2022-01-01")
    assert dates.max() <= pd.Timestamp("2024-12-31")


def test_generate_health_chronic_patients_are_older(health_tables: Tables) -> None:
    age = _visits_with_age(health_tables).groupby("icd10")["age"].mean()
    assert age["I10"] > age["J06"] + 15
    chronic = [code for code, (_, is_chronic) in ICD10.items() if is_chronic]
    visits = _visits_with_age(health_tables)
    old = visits[visits["age"] >= 65]["icd10"].isin(chronic).mean()
    young = visits[visits["age"] < 40]["icd10"].isin(chronic).mean()
    assert old > 3 * young


def test_generate_health_childbirth_only_women_18_to_45_in_obstetrics(
    health_tables: Tables,
) -> None:
    births = _visits_with_age(health_tables).query("icd10 == 'O80'")
    assert len(births) > 0
    assert (births["sex"] == "女").all()
    assert births["age"].between(18, 46).all()
    assert (births["department"] == "妇产科").all()


def test_generate_health_children_mostly_in_paediatrics(health_tables: Tables) -> None:
    visits = _visits_with_age(health_tables)
    children = visits[visits["age"] < 14]
    assert (children["department"] == "儿科").mean() > 0.8
    adults = visits[visits["age"] >= 18]
    assert (adults["department"] == "儿科").mean() == 0


def test_generate_health_department_fits_diagnosis(health_tables: Tables) -> None:
    visits = _visits_with_age(health_tables)
    adults = visits[visits["age"] >= 18]
    assert set(adults.query("icd10 == 'E11'")["department"]) <= {"内分泌科", "内科"}
    assert set(adults.query("icd10 == 'S72'")["department"]) <= {"骨科", "急诊科"}
    assert set(adults.query("icd10 == 'I63'")["department"]) <= {"神经内科", "急诊科"}


def test_generate_health_cost_rises_with_length_of_stay(health_tables: Tables) -> None:
    visits = health_tables["visits"]
    assert visits["length_of_stay"].corr(visits["cost"]) > 0.5
    stay = visits.groupby("icd10")["length_of_stay"].mean()
    for severe in ("I63", "I50", "C34", "S72", "J18"):
        assert stay[severe] > 3 * stay["J06"] + 1, severe
    inpatient = visits[visits["length_of_stay"] > 0]
    assert inpatient["cost"].mean() > 5 * visits[visits["length_of_stay"] == 0]["cost"].mean()


def test_generate_health_readmission_rises_with_stay_and_age(health_tables: Tables) -> None:
    visits = _visits_with_age(health_tables)
    long_stay = visits[visits["length_of_stay"] >= 10]["readmitted_30d"].mean()
    outpatient = visits[visits["length_of_stay"] == 0]["readmitted_30d"].mean()
    assert long_stay > 2 * outpatient
    old = visits[visits["age"] >= 75]["readmitted_30d"].mean()
    young = visits[visits["age"] < 40]["readmitted_30d"].mean()
    assert old > 2 * young


def test_generate_health_lab_values_follow_diagnosis(health_tables: Tables) -> None:
    labs = health_tables["labs"].merge(
        health_tables["visits"][["visit_id", "icd10"]], on="visit_id", validate="many_to_one"
    )

    def mean(test: str, code: str, *, with_code: bool) -> float:
        rows = labs[(labs["test_code"] == test) & ((labs["icd10"] == code) == with_code)]
        return float(rows["value"].mean())

    assert mean("GLU", "E11", with_code=True) > mean("GLU", "E11", with_code=False) + 2
    assert mean("HBA1C", "E11", with_code=True) > mean("HBA1C", "E11", with_code=False) + 1.5
    assert mean("TC", "E78", with_code=True) > mean("TC", "E78", with_code=False) + 1
    assert mean("LDL", "E78", with_code=True) > mean("LDL", "E78", with_code=False) + 1
    assert mean("WBC", "J18", with_code=True) > mean("WBC", "J18", with_code=False) + 3


def test_generate_health_creatinine_rises_with_age(health_tables: Tables) -> None:
    labs = health_tables["labs"].query("test_code == 'CREA'")
    labs = labs.merge(health_tables["patients"][["person_id", "birth_date"]], on="person_id")
    age = (labs["taken_at"] - pd.to_datetime(labs["birth_date"])).dt.days / 365.25
    assert np.corrcoef(age, labs["value"])[0, 1] > 0.4


def test_generate_health_lab_units_and_times(health_tables: Tables) -> None:
    labs = health_tables["labs"].merge(
        health_tables["visits"][["visit_id", "visit_date"]], on="visit_id", validate="many_to_one"
    )
    units = labs["test_code"].map({code: unit for code, (_, unit, _, _) in LAB_TESTS.items()})
    assert (labs["unit"] == units).all()
    assert (labs["taken_at"].dt.date == labs["visit_date"]).all()
    assert (labs["value"] > 0).all()


def test_generate_health_zero_patients() -> None:
    tables = generate_health(0, seed=1)
    assert all(len(frame) == 0 for frame in tables.values())
    assert list(tables["labs"].columns) == [c.name for c in HEALTH.table("labs").columns]  # type: ignore[union-attr]


def test_generate_health_negative_patients_raises() -> None:
    with pytest.raises(ValueError):
        generate_health(-1)


def test_generate_health_direct_identifiers_are_declared() -> None:
    forbidden = {c.name for t in HEALTH.tables for c in t.columns if c.forbidden}
    assert forbidden == {"name", "id_card", "phone", "address"}
    assert all(c.cls is not ColumnClass.DIRECT_IDENTIFIER for c in HEALTH.table("visits").columns)  # type: ignore[union-attr]


def test_datasets_package_imports_nothing_else_of_ours() -> None:
    code = (
        "import sys, datasets.health, datasets.storage, datasets.views, datasets.mock;"
        "print(sorted({m.split('.')[0] for m in sys.modules}"
        " & {'sandbox', 'policies', 'runners', 'portal'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_generate_health_100k_patients_under_a_minute() -> None:
    start = time.perf_counter()
    tables = generate_health(100_000, seed=3)
    elapsed = time.perf_counter() - start
    assert len(tables["patients"]) == 100_000
    assert elapsed < 60, f"took {elapsed:.1f} s"


def test_generate_health_address_pattern_example(health_tables: Tables) -> None:
    address = health_tables["patients"]["address"].iloc[0]
    assert re.fullmatch(r"江苏省常州市\S+?(区|市)\S+\d+号\d+幢\d+单元\d+室", address)
