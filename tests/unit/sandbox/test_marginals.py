"""Mock rows from DP marginals: the view's schema, the key relations, nothing real."""

from __future__ import annotations

import pandas as pd
import pytest

from datasets.health_manifest import HEALTH, ICD10, LAB_TESTS
from datasets.views import build_view
from sandbox.dp.marginals import compute_marginals, mock_table
from tests.factories import health_tables


@pytest.fixture(scope="module")
def view() -> dict[str, pd.DataFrame]:
    # DP marginals need a population: at 20,000 persons the noise is small beside
    # the counts, as it is for the demo dataset.
    return build_view(health_tables(20_000), HEALTH, key=b"k" * 32)


@pytest.fixture(scope="module")
def marginals(view: dict[str, pd.DataFrame]) -> dict[str, object]:
    return compute_marginals(view, HEALTH, epsilon=2.0)


def test_mock_rows_have_the_view_schema(view, marginals) -> None:  # type: ignore[no-untyped-def]
    for table in HEALTH.table_names:
        mock = mock_table(marginals, HEALTH, table, 300, seed=1)  # type: ignore[arg-type]
        assert list(mock.columns) == list(view[table].columns)
        assert len(mock) == 300


def test_mock_rows_keep_the_key_relations(view, marginals) -> None:  # type: ignore[no-untyped-def]
    visits = mock_table(marginals, HEALTH, "visits", 2000, seed=2)  # type: ignore[arg-type]
    named = visits.dropna(subset=["icd10", "diagnosis"])
    consistent = (named.diagnosis == named.icd10.map(lambda c: ICD10[c][0])).mean()
    assert consistent > 0.85  # diagnosis follows its code through the noise
    labs = mock_table(marginals, HEALTH, "labs", 2000, seed=2).dropna(subset=["test_code", "unit"])  # type: ignore[arg-type]
    assert (labs.unit == labs.test_code.map(lambda c: LAB_TESTS[c][1])).mean() > 0.85
    patients = mock_table(marginals, HEALTH, "patients", 400, seed=2)  # type: ignore[arg-type]
    joined = visits.merge(patients, on="person_id")
    assert len(joined) == len(visits)  # mock tables join like the real ones
    age = 2022 - joined.birth_year.astype(float)
    old, young = age[joined.icd10 == "I10"].mean(), age[joined.icd10 == "J06"].mean()
    assert old > young + 10  # chronic disease with age, as in the data


def test_mock_rows_hold_no_real_key_or_record(view, marginals) -> None:  # type: ignore[no-untyped-def]
    mock = mock_table(marginals, HEALTH, "visits", 1000, seed=3)  # type: ignore[arg-type]
    assert not set(mock.person_id) & set(view["visits"].person_id)
    assert not set(mock.visit_id) & set(view["visits"].visit_id)
    # Whole records (every non-key column) do not come back: values are drawn
    # bucket by bucket, not copied.
    columns = ["hospital", "department", "visit_date", "icd10", "cost", "length_of_stay"]
    real = set(map(tuple, view["visits"][columns].astype(str).to_numpy()))
    fake = set(map(tuple, mock[columns].astype(str).to_numpy()))
    assert not real & fake


def test_mock_csv_serves_marginal_rows_without_closed_columns(marginals) -> None:  # type: ignore[no-untyped-def]
    from sandbox.reads import mock_csv

    csv = mock_csv("health", table="patients", rows="7", marginals=marginals)  # type: ignore[arg-type]
    header, *rows = csv.strip().splitlines()
    assert header.split(",") == ["person_id", "sex", "birth_year", "district"]
    assert len(rows) == 7
