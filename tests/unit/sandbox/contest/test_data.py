"""The split of a track's view: each person in one part, the scored part without its labels
or withheld columns, its rows shuffled, and its labels in the order of its rows."""

from __future__ import annotations

import secrets

import numpy as np
import pytest

from datasets.health_manifest import HEALTH
from datasets.mock import mock_view
from sandbox.contest.data import TrackShape, split_tables
from sandbox.contest.metrics import Task
from sandbox.contest.splits import Part, Shares

SHAPE = TrackShape(
    track_id="t1",
    dataset="health",
    task=Task.MULTICLASS,
    target_table="visits",
    target_column="icd10",
    event_column=None,
    withheld=frozenset({"visits.diagnosis", "visits.department"}),
    tables=("patients", "visits", "labs"),
    shares=Shares(public=0.2, private=0.2),
)


@pytest.fixture(scope="module")
def view() -> dict:  # type: ignore[type-arg]
    return mock_view(HEALTH, list(SHAPE.tables), 800, seed=3)


def test_each_person_is_in_one_part_whatever_the_table(view: dict) -> None:  # type: ignore[type-arg]
    key = secrets.token_bytes(32)
    public = split_tables(view, SHAPE, person="person_id", key=key, scored=Part.PUBLIC)
    private = split_tables(view, SHAPE, person="person_id", key=key, scored=Part.PRIVATE)
    train = {n: set(f["person_id"]) for n, f in public.train.items()}
    scored = {n: set(f["person_id"]) for n, f in public.features.items()}
    held = {n: set(f["person_id"]) for n, f in private.features.items()}
    for name in SHAPE.tables:
        assert not train[name] & scored[name] and not scored[name] & held[name]
        assert not train[name] & held[name]
    # A scored person's visits and labs are all scored: none of them trains.
    assert scored["labs"] <= scored["visits"] | scored["patients"]
    assert not scored["visits"] & train["labs"]


def test_the_scored_part_holds_no_label_and_no_withheld_column(view: dict) -> None:  # type: ignore[type-arg]
    tables = split_tables(
        view, SHAPE, person="person_id", key=secrets.token_bytes(32), scored=Part.PUBLIC
    )
    columns = set(tables.features["visits"].columns)
    assert not {"icd10", "diagnosis", "department"} & columns
    assert "icd10" in tables.train["visits"].columns
    assert not {"diagnosis", "department"} & set(tables.train["visits"].columns)
    assert len(tables.labels) == len(tables.features["visits"])
    assert set(tables.labels) <= set(tables.classes or [])


def test_labels_follow_the_shuffled_rows(view: dict) -> None:  # type: ignore[type-arg]
    key = secrets.token_bytes(32)
    tables = split_tables(view, SHAPE, person="person_id", key=key, scored=Part.PUBLIC)
    truth = view["visits"].set_index("visit_id")["icd10"].astype(str)
    shown = tables.features["visits"]["visit_id"]
    assert list(truth.loc[shown]) == list(tables.labels)
    # The stored order is not the scored order; the same key gives the same order.
    stored = [v for v in view["visits"]["visit_id"] if v in set(shown)]
    assert list(shown) != stored
    again = split_tables(view, SHAPE, person="person_id", key=key, scored=Part.PUBLIC)
    assert list(again.features["visits"]["visit_id"]) == list(shown)


def test_rows_without_a_label_are_not_scored(view: dict) -> None:  # type: ignore[type-arg]
    holed = {name: frame.copy() for name, frame in view.items()}
    holed["visits"].loc[holed["visits"].index[::7], "icd10"] = None
    tables = split_tables(
        holed, SHAPE, person="person_id", key=secrets.token_bytes(32), scored=Part.PUBLIC
    )
    assert "None" not in set(tables.labels) and "nan" not in set(tables.labels)
    assert np.asarray(tables.labels).dtype.kind == "U"
