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
    from policies.policy_file import load_policy
    from sandbox.catalog import mock_csv

    policy = load_policy(HEALTH)
    csv = mock_csv(HEALTH, policy, table="patients", rows="7", marginals=marginals)  # type: ignore[arg-type]
    header, *rows = csv.strip().splitlines()
    assert header.split(",") == ["person_id", "sex", "birth_year", "district"]
    assert len(rows) == 7


def test_visits_follow_their_persons_decade_when_some_have_no_birth_year(  # type: ignore[no-untyped-def]
    marginals,
) -> None:
    """Decade keys are spelled as the histogram's buckets even beside missing years (a
    float array spelled them "1950.0", and every visit fell back to the whole table)."""
    import copy

    fixed = copy.deepcopy(marginals)
    birth = fixed["tables"]["patients"]["birth_year"]
    null_at = birth["buckets"].index("__null__")
    for row in birth["counts"]:  # a fifth of every district has no birth year
        row[null_at] = max(1, sum(row) // 4)
    icd10 = fixed["tables"]["visits"]["icd10"]
    codes = icd10["buckets"]
    for decade, row in zip(icd10["given_buckets"], icd10["counts"], strict=True):
        # One code per decade: I10 for persons born before 1970, J06 after, Z00 unknown.
        code = "Z00" if decade == "__null__" else "I10" if decade < 1970 else "J06"
        row[:] = [100 if c == code else 0 for c in codes]
    visits = mock_table(fixed, HEALTH, "visits", 1000, seed=5)  # type: ignore[arg-type]
    patients = mock_table(fixed, HEALTH, "patients", 200, seed=5)  # type: ignore[arg-type]
    joined = visits.merge(patients, on="person_id")
    assert joined.birth_year.isna().any() and joined.birth_year.notna().any()
    expected = joined.birth_year.map(
        lambda y: "Z00" if pd.isna(y) else "I10" if y // 10 * 10 < 1970 else "J06"
    )
    assert (joined.icd10 == expected).all()


def test_every_histogram_holds_the_populations_counts(marginals) -> None:  # type: ignore[no-untyped-def]
    """Unconditioned ones too: pandas 3 turned their None condition into a missing value,
    which crosstab dropped, and the district of every mock person was drawn uniformly."""
    for table, columns in marginals["tables"].items():
        for column, histogram in columns.items():
            total = sum(map(sum, histogram["counts"]))
            assert total > 1000, (table, column, histogram["given"])


def test_a_decade_the_noise_emptied_borrows_its_neighbours_distribution() -> None:
    import numpy as np

    from sandbox.dp.marginals import _draw

    histogram = {
        "given": "__decade",
        "buckets": ["I10", "J06"],
        "given_buckets": [1930, 1940, 1950, 2000, "__null__"],
        "counts": [[0, 0], [0, 0], [90, 0], [0, 80], [0, 0]],
    }
    frame = pd.DataFrame({"__decade": ["1930", "1940", "2000", "__null__"] * 25})
    drawn = _draw(histogram, frame, np.random.default_rng(1))
    by_decade = pd.DataFrame({"decade": frame["__decade"], "code": drawn})
    # 1930 and 1940 are empty: the nearest non-empty decade is 1950 (all I10).
    assert set(by_decade[by_decade.decade.isin(["1930", "1940"])].code) == {"I10"}
    assert set(by_decade[by_decade.decade == "2000"].code) == {"J06"}
    # No year: no neighbour by age; the whole histogram.
    assert set(by_decade[by_decade.decade == "__null__"].code) == {"I10", "J06"}
