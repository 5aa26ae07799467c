from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from datasets.errors import DatasetError, StorageError
from datasets.storage import DatasetStore

Tables = dict[str, pd.DataFrame]
MASTER_KEY = bytes(range(32))


def make_store(root: Path, key: bytes = MASTER_KEY) -> DatasetStore:
    return DatasetStore(root, key)


def table_file(root: Path, name: str, table: str) -> Path:
    return root / name / f"{table}.parquet.enc"


def flip_byte(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def stored(tmp_path: Path, small_health_tables: Tables) -> tuple[DatasetStore, str]:
    store = make_store(tmp_path)
    return store, store.write("health", small_health_tables)


def test_dataset_store_round_trip(
    stored: tuple[DatasetStore, str], small_health_tables: Tables
) -> None:
    store, version = stored
    assert store.exists("health")
    assert store.version("health") == version
    assert len(version) == 64 and int(version, 16) >= 0
    assert store.tables("health") == ["patients", "visits", "labs"]
    assert store.row_counts("health") == {n: len(f) for n, f in small_health_tables.items()}
    for name, frame in small_health_tables.items():
        pd.testing.assert_frame_equal(store.read_table("health", name), frame)


def test_dataset_store_version_depends_only_on_data(
    tmp_path: Path, small_health_tables: Tables
) -> None:
    store = make_store(tmp_path)
    first = store.write("health", small_health_tables)
    again = store.write("copy", small_health_tables)
    changed = dict(small_health_tables, patients=small_health_tables["patients"].head(10))
    other = store.write("changed", changed)
    assert first == again
    assert other != first


def test_dataset_store_no_plaintext_on_disk(
    stored: tuple[DatasetStore, str], tmp_path: Path, small_health_tables: Tables
) -> None:
    store, _ = stored
    for name in small_health_tables:
        store.read_table("health", name)  # reading must not leave files behind either
    name = small_health_tables["patients"]["name"].iloc[0].encode()
    id_card = small_health_tables["patients"]["id_card"].iloc[0].encode()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files
    for path in files:
        content = path.read_bytes()
        assert b"PAR1" not in content, path
        assert name not in content and id_card not in content, path
    assert sorted(p.name for p in files) == sorted(
        [
            "key.json",
            "manifest.json",
            "patients.parquet.enc",
            "visits.parquet.enc",
            "labs.parquet.enc",
        ]
    )


def test_dataset_store_files_are_private(stored: tuple[DatasetStore, str], tmp_path: Path) -> None:
    for path in (tmp_path / "health").iterdir():
        assert path.stat().st_mode & 0o077 == 0, path


@pytest.mark.parametrize("position", [0, 13, 30, -1])  # nonce, tag, ciphertext, last byte
def test_dataset_store_tampered_table_raises(
    stored: tuple[DatasetStore, str], tmp_path: Path, position: int
) -> None:
    store, _ = stored
    path = table_file(tmp_path, "health", "visits")
    flip_byte(path, position if position >= 0 else path.stat().st_size - 1)
    with pytest.raises(StorageError, match="authentication"):
        store.read_table("health", "visits")
    store.read_table("health", "patients")  # the others still open


def test_dataset_store_truncated_table_raises(
    stored: tuple[DatasetStore, str], tmp_path: Path
) -> None:
    store, _ = stored
    table_file(tmp_path, "health", "labs").write_bytes(b"short")
    with pytest.raises(StorageError):
        store.read_table("health", "labs")


def test_dataset_store_wrong_master_key_raises(
    stored: tuple[DatasetStore, str], tmp_path: Path
) -> None:
    other = make_store(tmp_path, bytes(32))
    assert other.exists("health")
    with pytest.raises(StorageError, match="wrong master key"):
        other.read_table("health", "patients")
    with pytest.raises(StorageError):
        other.version("health")


def test_dataset_store_swapped_table_files_raise(
    stored: tuple[DatasetStore, str], tmp_path: Path
) -> None:
    store, _ = stored
    shutil.copyfile(
        table_file(tmp_path, "health", "visits"), table_file(tmp_path, "health", "patients")
    )
    with pytest.raises(StorageError, match="authentication"):
        store.read_table("health", "patients")


def test_dataset_store_files_from_another_dataset_raise(
    tmp_path: Path, small_health_tables: Tables
) -> None:
    store = make_store(tmp_path)
    store.write("health", small_health_tables)
    store.write("other", small_health_tables)  # same data, same version, own key
    for file in ("key.json", "patients.parquet.enc"):
        shutil.copyfile(tmp_path / "health" / file, tmp_path / "other" / file)
    with pytest.raises(StorageError):
        store.read_table("other", "patients")


def test_dataset_store_tampered_manifest_raises(
    stored: tuple[DatasetStore, str], tmp_path: Path
) -> None:
    store, _ = stored
    path = tmp_path / "health" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["tables"]["patients"] += 1
    path.write_text(json.dumps(manifest))
    with pytest.raises(StorageError, match="manifest"):
        store.row_counts("health")


def test_dataset_store_tampered_key_file_raises(
    stored: tuple[DatasetStore, str], tmp_path: Path
) -> None:
    store, _ = stored
    path = tmp_path / "health" / "key.json"
    record = json.loads(path.read_text())
    record["wrapped_key"] = "not base64!"
    path.write_text(json.dumps(record))
    with pytest.raises(StorageError):
        store.read_table("health", "patients")


def test_dataset_store_missing_dataset_raises(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    assert not store.exists("health")
    with pytest.raises(StorageError, match="no dataset"):
        store.read_table("health", "patients")
    with pytest.raises(StorageError):
        store.version("health")


def test_dataset_store_missing_table_raises(stored: tuple[DatasetStore, str]) -> None:
    store, _ = stored
    with pytest.raises(StorageError, match="no table"):
        store.read_table("health", "prescriptions")


def test_dataset_store_deleted_table_file_raises(
    stored: tuple[DatasetStore, str], tmp_path: Path
) -> None:
    store, _ = stored
    os.remove(table_file(tmp_path, "health", "labs"))
    with pytest.raises(StorageError):
        store.read_table("health", "labs")


def test_dataset_store_overwrite_replaces_dataset(
    stored: tuple[DatasetStore, str], tmp_path: Path, small_health_tables: Tables
) -> None:
    store, version = stored
    smaller = {"patients": small_health_tables["patients"].head(5)}
    new_version = store.write("health", smaller)
    assert new_version != version
    assert store.tables("health") == ["patients"]
    assert len(store.read_table("health", "patients")) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["health"]  # no staging left


@pytest.mark.parametrize("key", [b"", b"short", bytes(31), bytes(33)])
def test_dataset_store_rejects_bad_master_key(tmp_path: Path, key: bytes) -> None:
    with pytest.raises(StorageError):
        DatasetStore(tmp_path, key)


@pytest.mark.parametrize("name", ["../escape", "a/b", "", "Health", ".hidden"])
def test_dataset_store_rejects_bad_dataset_names(tmp_path: Path, name: str) -> None:
    store = make_store(tmp_path)
    with pytest.raises(StorageError):
        store.write(name, {"t": pd.DataFrame({"x": [1]})})
    assert not store.exists(name)


def test_dataset_store_rejects_bad_table_names(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    with pytest.raises(StorageError):
        store.write("health", {"../t": pd.DataFrame({"x": [1]})})
    assert not (tmp_path / "health").exists()


def test_dataset_store_rejects_empty_dataset(tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        make_store(tmp_path).write("health", {})


def test_storage_error_is_a_dataset_error() -> None:
    assert issubclass(StorageError, DatasetError)
