from __future__ import annotations

import pandas as pd
import pytest

from datasets.errors import ViewError
from datasets.health_manifest import HEALTH
from datasets.manifest import Column, ColumnClass, ColumnType, Manifest, Table
from datasets.mock import MAX_MOCK_ROWS, mock_view_table
from datasets.views import build_view, pseudonym_key, view_schema

Tables = dict[str, pd.DataFrame]


@pytest.mark.parametrize("table", ["patients", "visits", "labs"])
def test_mock_view_table_has_the_view_schema(table: str, small_health_tables: Tables) -> None:
    mock = mock_view_table(HEALTH, table, 250, seed=1)
    assert len(mock) == 250
    assert list(mock.columns) == view_schema(HEALTH)[table]
    real = build_view(
        small_health_tables,
        HEALTH,
        key=pseudonym_key(b"k" * 32, "health", "g"),
        require_consent=False,
        table_names=[table],
    )[table]
    assert mock.dtypes.astype(str).to_dict() == real.dtypes.astype(str).to_dict()


def test_mock_view_table_same_rows_for_a_seed_apart_from_pseudonyms() -> None:
    first = mock_view_table(HEALTH, "visits", 100, seed=4)
    second = mock_view_table(HEALTH, "visits", 100, seed=4)
    keys = ["visit_id", "person_id"]
    pd.testing.assert_frame_equal(first.drop(columns=keys), second.drop(columns=keys))
    assert not set(first["person_id"]) & set(second["person_id"])  # a throwaway key each time


def test_mock_view_table_caps_rows() -> None:
    mock = mock_view_table(HEALTH, "labs", MAX_MOCK_ROWS + 5000)
    assert len(mock) == MAX_MOCK_ROWS


def test_mock_view_table_zero_rows() -> None:
    mock = mock_view_table(HEALTH, "patients", 0)
    assert len(mock) == 0
    assert list(mock.columns) == view_schema(HEALTH)["patients"]


def test_mock_view_table_unknown_table_raises() -> None:
    with pytest.raises(ViewError, match="no table"):
        mock_view_table(HEALTH, "prescriptions", 10)


def test_mock_view_table_negative_rows_raises() -> None:
    with pytest.raises(ViewError):
        mock_view_table(HEALTH, "patients", -1)


def test_mock_view_table_other_manifest_from_declarations() -> None:
    manifest = Manifest(
        name="survey",
        title="问卷",
        title_en="Survey",
        privacy_unit="person_id",
        tables=(
            Table(
                name="answers",
                description="回答",
                description_en="Answers",
                columns=(
                    Column("answer_id", ColumnType.INTEGER, ColumnClass.RECORD_KEY, "编号"),
                    Column("person_id", ColumnType.INTEGER, ColumnClass.PERSON_KEY, "人员"),
                    Column("email", ColumnType.STRING, ColumnClass.DIRECT_IDENTIFIER, "邮箱"),
                    Column(
                        "birth_date",
                        ColumnType.DATE,
                        ColumnClass.QUASI_IDENTIFIER,
                        "出生",
                        bounds=(1940, 2010),
                    ),
                    Column(
                        "score", ColumnType.FLOAT, ColumnClass.SENSITIVE, "得分", bounds=(0, 10)
                    ),
                    Column(
                        "region",
                        ColumnType.STRING,
                        ColumnClass.CATEGORY,
                        "地区",
                        categories=("东", "西"),
                    ),
                    Column("answered_at", ColumnType.TIMESTAMP, ColumnClass.SENSITIVE, "时间"),
                    Column("agreed", ColumnType.BOOLEAN, ColumnClass.CONSENT, "同意"),
                ),
            ),
        ),
    )
    mock = mock_view_table(manifest, "answers", 50, seed=2)
    assert list(mock.columns) == view_schema(manifest)["answers"]
    assert len(mock) == 50
    assert mock["birth_year"].between(1940, 2010).all()
    assert mock["score"].between(0, 10).all()
    assert set(mock["region"]) <= {"东", "西"}
    assert str(mock["answered_at"].dtype) == "datetime64[us]"
