"""The per-worker view cache: the same view bytes for the same key, another view otherwise."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from sandbox.jobs.view_cache import ViewCache, view_key


def key(**changes: object) -> str:
    parts: dict[str, object] = {
        "dataset": "health",
        "version": "v1",
        "grant_id": "g1",
        "tables": ("visits",),
        "columns_policy": "sql:p1",
        "consenting": frozenset({"1", "2", "3"}),
    }
    parts.update(changes)
    return view_key(**parts)  # type: ignore[arg-type]


def test_view_key_changes_with_every_part_and_not_with_order() -> None:
    base = key()
    assert key(consenting=frozenset({"3", "2", "1"})) == base
    for change in (
        {"version": "v2"},
        {"grant_id": "g2"},
        {"tables": ("visits", "labs")},
        {"columns_policy": "python:p1"},
        {"consenting": frozenset({"1", "2"})},
        {"consenting": None},
    ):
        assert key(**change) != base, change


def test_view_cache_builds_once_and_writes_each_jobs_own_files(tmp_path: Path) -> None:
    cache = ViewCache(capacity=2)
    built: list[int] = []

    def build() -> dict[str, pd.DataFrame]:
        built.append(1)
        return {"visits": pd.DataFrame({"person_id": ["a", "b"], "cost": [1.0, 2.0]})}

    assert cache.write(key(), build, tmp_path / "job1") is False
    assert cache.write(key(), build, tmp_path / "job2") is True
    assert len(built) == 1
    for job in ("job1", "job2"):
        assert pq.read_table(tmp_path / job / "visits.parquet").num_rows == 2
    cache.write(key(version="v2"), build, tmp_path / "job3")
    cache.write(key(version="v3"), build, tmp_path / "job4")
    assert cache.write(key(), build, tmp_path / "job5") is False  # pushed out: built again
    assert len(built) == 4
