from __future__ import annotations

import hashlib
import hmac
from datetime import date, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datasets.errors import DatasetError, ViewError
from datasets.health_manifest import HEALTH
from datasets.manifest import Masking
from datasets.views import build_view, pseudonym_key, view_schema, write_view

Tables = dict[str, pd.DataFrame]
SECRET = b"s" * 32
KEY = pseudonym_key(SECRET, "health", "grant-1")
FORBIDDEN = {c.name for t in HEALTH.tables for c in t.columns if c.forbidden}
KEY_COLUMNS = ("person_id", "visit_id", "lab_id")


def view_of(tables: Tables, *, key: bytes = KEY, consent: bool = False, **kwargs: object) -> Tables:
    """The view; with ``consent``, of the persons whose consent flag is true."""
    consenting = consenting_ids(tables) if consent else kwargs.pop("consenting", None)
    return build_view(tables, HEALTH, key=key, consenting=consenting, **kwargs)  # type: ignore[arg-type]


def consenting_ids(tables: Tables) -> set[str]:
    """Who consents, as consent records name them: the raw person key as text."""
    patients = tables["patients"]
    return {str(p) for p in patients.loc[patients["consent_research"], "person_id"]}


def test_pseudonym_key_differs_per_grant_and_dataset() -> None:
    keys = {
        pseudonym_key(SECRET, "health", "grant-1"),
        pseudonym_key(SECRET, "health", "grant-2"),
        pseudonym_key(SECRET, "other", "grant-1"),
        pseudonym_key(b"t" * 32, "health", "grant-1"),
    }
    assert len(keys) == 4
    assert pseudonym_key(SECRET, "health", "grant-1") == KEY
    assert len(KEY) == 32


def test_pseudonym_key_rejects_empty_secret() -> None:
    with pytest.raises(ViewError):
        pseudonym_key(b"", "health", "grant-1")


def test_build_view_has_no_forbidden_column(small_health_tables: Tables) -> None:
    view = view_of(small_health_tables)
    assert list(view) == ["patients", "visits", "labs"]
    for table in HEALTH.tables:
        assert list(view[table.name].columns) == [c.name for c in table.view_columns()]
        assert not FORBIDDEN & set(view[table.name].columns)


def test_build_view_leaves_no_identifier_value(small_health_tables: Tables) -> None:
    view = view_of(small_health_tables)
    patients = small_health_tables["patients"]
    identifiers = set().union(*(set(patients[c]) for c in ("name", "id_card", "phone", "address")))
    for frame in view.values():
        for column in frame.columns:
            assert not identifiers & set(frame[column].astype(str)), column


def test_build_view_birth_year_replaces_birth_date(small_health_tables: Tables) -> None:
    patients = view_of(small_health_tables)["patients"]
    assert "birth_date" not in patients.columns
    assert patients["birth_year"].dtype == "int64"
    years = [d.year for d in small_health_tables["patients"]["birth_date"]]
    assert patients["birth_year"].tolist() == years


def test_build_view_birth_year_from_datetime64(small_health_tables: Tables) -> None:
    tables = dict(small_health_tables)
    patients = tables["patients"].copy()
    patients["birth_date"] = pd.to_datetime(patients["birth_date"])
    tables["patients"] = patients
    view = view_of(tables)["patients"]
    assert view["birth_year"].tolist() == patients["birth_date"].dt.year.tolist()


def test_build_view_pseudonyms_are_keyed_hmac(small_health_tables: Tables) -> None:
    view = view_of(small_health_tables)
    raw_id = int(small_health_tables["patients"]["person_id"].iloc[0])
    expected = hmac.new(KEY, b"person_id\x00" + str(raw_id).encode(), hashlib.sha256)
    assert view["patients"]["person_id"].iloc[0] == expected.hexdigest()[:32]
    assert view["patients"]["person_id"].str.fullmatch(r"[0-9a-f]{32}").all()
    assert view["labs"]["lab_id"].is_unique


def test_build_view_pseudonyms_differ_between_grants(small_health_tables: Tables) -> None:
    first = view_of(small_health_tables, key=pseudonym_key(SECRET, "health", "grant-1"))
    second = view_of(small_health_tables, key=pseudonym_key(SECRET, "health", "grant-2"))
    for table, column in (("patients", "person_id"), ("visits", "visit_id"), ("labs", "lab_id")):
        assert not set(first[table][column]) & set(second[table][column])


def test_build_view_pseudonyms_match_across_tables(small_health_tables: Tables) -> None:
    raw = small_health_tables
    view = view_of(raw)
    # The mapping raw -> pseudonym is the same function in every table of the view.
    for column, tables in (
        ("person_id", ("patients", "visits", "labs")),
        ("visit_id", ("visits", "labs")),
    ):
        mapping: dict[int, str] = {}
        for table in tables:
            for original, pseudonym in zip(raw[table][column], view[table][column], strict=True):
                assert mapping.setdefault(original, pseudonym) == pseudonym
        assert len(set(mapping.values())) == len(mapping)
    joined = view["labs"].merge(view["visits"], on=["visit_id", "person_id"])
    assert len(joined) == len(raw["labs"])
    assert view["visits"]["person_id"].isin(view["patients"]["person_id"]).all()


def test_build_view_consent_leaves_out_non_consenting_everywhere(
    small_health_tables: Tables,
) -> None:
    raw = small_health_tables
    consenting = consenting_ids(raw)
    assert 0 < len(consenting) < len(raw["patients"])
    full = view_of(raw)
    view = view_of(raw, consent=True)
    for table in HEALTH.table_names:
        kept = raw[table]["person_id"].astype(str).isin(consenting)
        assert len(view[table]) == int(kept.sum()), table
        left_out = set(full[table].loc[~kept.to_numpy(), "person_id"])
        for other in view.values():
            assert not left_out & set(other["person_id"])
    assert view["patients"]["consent_research"].all()


def test_build_view_consent_follows_the_records_not_the_flag(small_health_tables: Tables) -> None:
    patients = small_health_tables["patients"].head(4)
    ids = [str(p) for p in patients["person_id"]]
    flags = patients["consent_research"].tolist()
    # A person whose flag says yes but whose record was withdrawn is left out, and the
    # other way round.
    consenting = {i for i, flag in zip(ids, flags, strict=True) if not flag}
    view = view_of({"patients": patients}, consenting=consenting, table_names=["patients"])
    assert len(view["patients"]) == len(consenting)
    assert not view["patients"]["consent_research"].any()


def test_build_view_consent_matches_the_raw_key_as_text(small_health_tables: Tables) -> None:
    patients = small_health_tables["patients"].head(3).copy()
    first, second, _ = (int(p) for p in patients["person_id"])
    as_float = patients.assign(person_id=patients["person_id"].astype("float64"))
    as_text = patients.assign(person_id=patients["person_id"].astype(str))
    for frame in (patients, as_float, as_text):
        view = view_of(
            {"patients": frame}, consenting=[str(first), str(second)], table_names=["patients"]
        )
        assert len(view["patients"]) == 2, frame["person_id"].dtype
    # Ids of another type are not person ids as records hold them: nobody matches.
    view = view_of({"patients": patients}, consenting={first, second}, table_names=["patients"])
    assert view["patients"].empty


def test_build_view_consent_without_the_patients_table(small_health_tables: Tables) -> None:
    tables = {"visits": small_health_tables["visits"]}
    consenting = consenting_ids(small_health_tables)
    view = view_of(tables, consenting=consenting, table_names=["visits"])
    kept = tables["visits"]["person_id"].astype(str).isin(consenting)
    assert len(view["visits"]) == int(kept.sum()) < len(tables["visits"])
    assert len(view_of(tables, table_names=["visits"])["visits"]) == len(tables["visits"])


def test_build_view_nobody_consenting_leaves_every_table_empty(small_health_tables: Tables) -> None:
    view = view_of(small_health_tables, consenting=frozenset())
    assert all(frame.empty for frame in view.values())
    assert list(view["patients"].columns) == view_schema(HEALTH)["patients"]


def test_build_view_required_consent_needs_the_consenting_persons(
    small_health_tables: Tables,
) -> None:
    with pytest.raises(ViewError, match="consent"):
        build_view(small_health_tables, HEALTH, key=KEY, require_consent=True)
    with pytest.raises(ViewError, match="one string"):
        build_view(small_health_tables, HEALTH, key=KEY, consenting="12")


def test_build_view_table_subset(small_health_tables: Tables) -> None:
    view = view_of(small_health_tables, consent=True, table_names=["labs"])
    assert list(view) == ["labs"]
    assert len(view["labs"]) < len(small_health_tables["labs"])


def test_build_view_unknown_table_raises(small_health_tables: Tables) -> None:
    with pytest.raises(ViewError, match="no table"):
        view_of(small_health_tables, table_names=["prescriptions"])


def test_build_view_missing_column_raises(small_health_tables: Tables) -> None:
    tables = dict(small_health_tables, visits=small_health_tables["visits"].drop(columns="cost"))
    with pytest.raises(ViewError, match="cost"):
        view_of(tables)


def test_build_view_missing_forbidden_column_is_fine(small_health_tables: Tables) -> None:
    patients = small_health_tables["patients"].drop(columns=["name", "phone"])
    view = view_of(dict(small_health_tables, patients=patients), table_names=["patients"])
    assert len(view["patients"]) == len(patients)


def test_build_view_drops_undeclared_columns(small_health_tables: Tables) -> None:
    patients = small_health_tables["patients"].assign(secret_note="病史")
    view = view_of(dict(small_health_tables, patients=patients), table_names=["patients"])
    assert "secret_note" not in view["patients"].columns


def test_build_view_does_not_modify_input(small_health_tables: Tables) -> None:
    before = {name: frame.copy() for name, frame in small_health_tables.items()}
    view_of(small_health_tables, consent=True)
    for name, frame in before.items():
        pd.testing.assert_frame_equal(small_health_tables[name], frame)


def test_build_view_rejects_short_key(small_health_tables: Tables) -> None:
    with pytest.raises(ViewError):
        view_of(small_health_tables, key=b"short")


def test_build_view_dtypes(small_health_tables: Tables) -> None:
    view = view_of(small_health_tables)
    visits, labs = view["visits"], view["labs"]
    assert visits["cost"].dtype == "float64"
    assert visits["length_of_stay"].dtype == "int64"
    assert visits["readmitted_30d"].dtype == "bool"
    assert isinstance(visits["visit_date"].iloc[0], date)
    assert labs["taken_at"].dtype == "datetime64[us]"


def test_write_view_duckdb_types(small_health_tables: Tables, tmp_path: Path) -> None:
    write_view(view_of(small_health_tables), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "labs.parquet",
        "patients.parquet",
        "visits.parquet",
    ]
    connection = duckdb.connect()
    types = {}
    for table in ("patients", "visits", "labs"):
        rows = connection.execute(
            f"DESCRIBE SELECT * FROM read_parquet('{tmp_path / table}.parquet')"
        ).fetchall()
        types[table] = {row[0]: row[1] for row in rows}
    assert types["patients"]["birth_year"] == "BIGINT"
    assert types["patients"]["person_id"] == "VARCHAR"
    assert types["patients"]["consent_research"] == "BOOLEAN"
    assert types["visits"]["cost"] == "DOUBLE"
    assert types["visits"]["length_of_stay"] == "BIGINT"
    assert types["visits"]["readmitted_30d"] == "BOOLEAN"
    assert types["visits"]["visit_date"] == "DATE"
    assert types["labs"]["taken_at"] == "TIMESTAMP"
    assert types["labs"]["value"] == "DOUBLE"
    joined = connection.execute(
        f"SELECT count(*) FROM read_parquet('{tmp_path}/labs.parquet') l "
        f"JOIN read_parquet('{tmp_path}/visits.parquet') v ON l.visit_id = v.visit_id"
    ).fetchone()
    assert joined == (len(small_health_tables["labs"]),)


def test_write_view_rejects_bad_table_name(tmp_path: Path) -> None:
    with pytest.raises(ViewError):
        write_view({"../escape": pd.DataFrame({"x": [1]})}, tmp_path)


def test_view_schema_lists_view_columns() -> None:
    schema = view_schema(HEALTH)
    assert schema["patients"] == ["person_id", "sex", "birth_year", "district", "consent_research"]
    assert "cost" in schema["visits"]
    assert not FORBIDDEN & {c for columns in schema.values() for c in columns}


def test_view_error_is_a_dataset_error() -> None:
    assert issubclass(ViewError, DatasetError)


# --- property: no forbidden column and no raw key ever leaves build_view ----------------

ids = st.integers(min_value=-(10**12), max_value=10**12)


@st.composite
def populations(draw: st.DrawFn) -> Tables:
    person_ids = draw(st.lists(ids, unique=True, max_size=12))
    n = len(person_ids)
    consent = draw(st.lists(st.sampled_from([True, False]), min_size=n, max_size=n))
    patients = pd.DataFrame(
        {
            "person_id": pd.array(person_ids, dtype="int64"),
            "name": [f"姓名{i}" for i in range(n)],
            "id_card": [f"ID{p}" for p in person_ids],
            "phone": [f"PHONE{p}" for p in person_ids],
            "sex": ["男"] * n,
            "birth_date": [date(1950 + i % 50, 1 + i % 12, 1) for i in range(n)],
            "district": ["天宁区"] * n,
            "address": [f"ADDRESS{p}" for p in person_ids],
            "consent_research": pd.array(consent, dtype="bool"),
        }
    )
    owners = st.sampled_from(person_ids) if person_ids else ids
    visit_ids = draw(st.lists(ids, unique=True, max_size=20))
    visit_people = draw(st.lists(owners, min_size=len(visit_ids), max_size=len(visit_ids)))
    nv = len(visit_ids)
    visits = pd.DataFrame(
        {
            "visit_id": pd.array(visit_ids, dtype="int64"),
            "person_id": pd.array(visit_people, dtype="int64"),
            "hospital": ["常州市第一人民医院"] * nv,
            "department": ["内科"] * nv,
            "visit_date": [date(2023, 1, 1)] * nv,
            "icd10": ["J06"] * nv,
            "diagnosis": ["急性上呼吸道感染"] * nv,
            "cost": [100.0] * nv,
            "length_of_stay": pd.array([0] * nv, dtype="int64"),
            "readmitted_30d": pd.array([False] * nv, dtype="bool"),
        }
    )
    lab_ids = draw(st.lists(ids, unique=True, max_size=20))
    nl = len(lab_ids)
    lab_visits = draw(
        st.lists(st.sampled_from(list(range(nv))) if nv else st.just(-1), min_size=nl, max_size=nl)
    )
    labs = pd.DataFrame(
        {
            "lab_id": pd.array(lab_ids, dtype="int64"),
            "visit_id": pd.array(
                [visit_ids[v] if v >= 0 else 0 for v in lab_visits], dtype="int64"
            ),
            "person_id": pd.array(
                [visit_people[v] if v >= 0 else 0 for v in lab_visits], dtype="int64"
            ),
            "test_code": ["GLU"] * nl,
            "value": [5.0] * nl,
            "unit": ["mmol/L"] * nl,
            "taken_at": pd.array([datetime(2023, 1, 1, 8)] * nl, dtype="datetime64[us]"),
        }
    )
    return {"patients": patients, "visits": visits, "labs": labs}


@settings(max_examples=60, deadline=None)
@given(
    tables=populations(),
    key=st.binary(min_size=32, max_size=32),
    require_consent=st.booleans(),
)
def test_build_view_property_no_forbidden_column_or_raw_key(
    tables: Tables, key: bytes, require_consent: bool
) -> None:
    consenting = consenting_ids(tables) if require_consent else None
    view = build_view(tables, HEALTH, key=key, consenting=consenting)
    raw_keys = set()
    for frame in tables.values():
        for column in KEY_COLUMNS:
            if column in frame.columns:
                raw_keys |= {v for v in frame[column].tolist()} | {str(v) for v in frame[column]}
    identifiers = set().union(
        *(set(tables["patients"][c]) for c in ("name", "id_card", "phone", "address"))
    )
    for table in HEALTH.tables:
        frame = view[table.name]
        assert list(frame.columns) == [c.name for c in table.view_columns()]
        assert not FORBIDDEN & set(frame.columns)
        for column in table.view_columns():
            values = frame[column.name].tolist()
            if column.masking is Masking.PSEUDONYMISE:
                assert not raw_keys & set(values), column.name
            assert not identifiers & {str(v) for v in values}, column.name
        expected = len(tables[table.name])
        if consenting is not None:
            expected = int(tables[table.name]["person_id"].astype(str).isin(consenting).sum())
        assert len(frame) == expected


@pytest.mark.parametrize("key", [b"k" * 16, b"k" * 64, b"k" * 65, bytes(range(200))])
def test_hmac_hexes_match_the_standard_library(key: bytes) -> None:
    from datasets.views import _hmac_hexes

    messages = [b"", b"person_id\x001", "visit_id\x00中文".encode() * 20]
    expected = [hmac.new(key, m, hashlib.sha256).hexdigest()[:32] for m in messages]
    assert _hmac_hexes(key, messages) == expected
