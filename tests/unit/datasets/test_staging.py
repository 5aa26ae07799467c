from __future__ import annotations

import datetime as dt
import os
import secrets
import stat
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from datasets.errors import DatasetError, StagingError
from datasets.staging import (
    CHUNK_BYTES,
    HEADER_BYTES,
    NONCE_BYTES,
    TAG_BYTES,
    Staging,
    _SealedReader,
    _SealedWriter,
)

KEY = bytes(range(32))
STRIDE = NONCE_BYTES + CHUNK_BYTES + TAG_BYTES
MARKER = "身份证32040219800101001X"


def make_staging(folder: Path, key: bytes = KEY) -> Staging:
    return Staging(folder / "import", key)


def visits_batch(start: int = 0, rows: int = 1000) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "patient_id": [f"{MARKER}{i}" for i in range(start, start + rows)],
            "visit_date": [dt.date(2024, 1, 1) + dt.timedelta(days=i % 365) for i in range(rows)],
            "cost": [Decimal(i) / 100 for i in range(rows)],
            "count": list(range(rows)),
        },
        schema=pa.schema(
            [
                ("patient_id", pa.string()),
                ("visit_date", pa.date32()),
                ("cost", pa.decimal128(10, 2)),
                ("count", pa.int64()),
            ]
        ),
    )


def noise_batch(megabytes: int) -> pa.RecordBatch:
    """Incompressible rows, so the stored file spans several chunks."""
    rows = megabytes * 16
    return pa.RecordBatch.from_pydict(
        {"i": list(range(rows)), "noise": [os.urandom(64 * 1024) for _ in range(rows)]}
    )


def stage(staging: Staging, table: str, *batches: pa.RecordBatch) -> None:
    with staging.table_writer(table, batches[0].schema) as writer:
        for batch in batches:
            writer.write(batch)


def table_file(staging: Staging, table: str) -> Path:
    return staging.folder / f"{table}.parquet.enc"


def chunks_of(path: Path) -> tuple[bytes, list[bytes]]:
    data = path.read_bytes()
    body = data[HEADER_BYTES:]
    return data[:HEADER_BYTES], [body[i : i + STRIDE] for i in range(0, len(body), STRIDE)]


def test_staging_round_trip(tmp_path: Path) -> None:
    staging = make_staging(tmp_path)
    first, second = visits_batch(0), visits_batch(1000)
    stage(staging, "visits", first, second)

    assert staging.tables() == ["visits"]
    assert staging.rows("visits") == 2000
    assert staging.schema("visits") == first.schema
    assert staging.read_table("visits") == pa.Table.from_batches([first, second])


def test_staging_batches_stream_chosen_columns(tmp_path: Path) -> None:
    staging = make_staging(tmp_path)
    stage(staging, "visits", visits_batch(0, 5000))

    batches = list(staging.batches("visits", columns=["count"], batch_size=1000))

    assert [b.num_rows for b in batches] == [1000] * 5
    assert batches[0].schema.names == ["count"]
    assert sum(pa.compute.sum(b.column(0)).as_py() for b in batches) == sum(range(5000))


def test_staging_batches_unknown_column_refused(tmp_path: Path) -> None:
    staging = make_staging(tmp_path)
    stage(staging, "visits", visits_batch())

    with pytest.raises(StagingError, match="no column 'nope'"):
        list(staging.batches("visits", columns=["nope"]))


def test_staging_reader_scanned_by_duckdb(tmp_path: Path) -> None:
    staging = make_staging(tmp_path)
    stage(staging, "visits", visits_batch(0, 3000))

    relation = duckdb.from_arrow(staging.reader("visits"))

    assert relation.aggregate("count(*), max(count)").fetchall() == [(3000, 2999)]


def test_staging_multi_chunk_file_round_trip(tmp_path: Path) -> None:
    staging = make_staging(tmp_path)
    batch = noise_batch(3)
    stage(staging, "noise", batch)

    _, chunks = chunks_of(table_file(staging, "noise"))
    assert len(chunks) >= 3
    assert staging.read_table("noise") == pa.Table.from_batches([batch])
    assert [b.num_rows for b in staging.batches("noise", columns=["i"])] == [batch.num_rows]


def test_staging_sealed_reader_reads_across_chunks_at_any_offset(tmp_path: Path) -> None:
    plain = os.urandom(2 * CHUNK_BYTES + 12345)
    path = tmp_path / "raw"
    writer = _SealedWriter(path, KEY, "raw")
    for start in range(0, len(plain), 100_000):
        writer.write(plain[start : start + 100_000])
    writer.finish()
    writer.close()

    with _SealedReader(path, KEY, "raw") as reader:
        assert reader.seek(0, os.SEEK_END) == len(plain)
        for offset, size in [
            (0, 10),
            (CHUNK_BYTES - 5, 10),
            (10, 2 * CHUNK_BYTES),
            (len(plain) - 3, 99),
        ]:
            reader.seek(offset)
            assert reader.read(size) == plain[offset : offset + size]
        reader.seek(0)
        assert reader.read() == plain


def test_staging_files_private_and_never_plain(tmp_path: Path) -> None:
    staging = make_staging(tmp_path)
    stage(staging, "visits", visits_batch())

    assert stat.S_IMODE(staging.folder.stat().st_mode) == 0o700
    assert [p.name for p in staging.folder.iterdir()] == ["visits.parquet.enc"]
    path = table_file(staging, "visits")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = path.read_bytes()
    assert MARKER.encode() not in data
    assert b"patient_id" not in data  # not even the schema


def test_staging_existing_folder_made_private(tmp_path: Path) -> None:
    folder = tmp_path / "import"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)

    Staging(folder, KEY)

    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_staging_failed_write_leaves_nothing(tmp_path: Path) -> None:
    staging = make_staging(tmp_path)

    with pytest.raises(RuntimeError), staging.table_writer("visits", visits_batch().schema) as w:
        w.write(visits_batch())
        raise RuntimeError("the source broke")

    assert staging.tables() == []
    assert list(staging.folder.iterdir()) == []


def test_staging_batch_of_another_schema_refused(tmp_path: Path) -> None:
    staging = make_staging(tmp_path)
    other = pa.RecordBatch.from_pydict({"x": [1]})

    with pytest.raises(StagingError, match="does not match"):
        with staging.table_writer("visits", visits_batch().schema) as writer:
            writer.write(other)

    assert staging.tables() == []


def test_staging_table_already_staged_refused(tmp_path: Path) -> None:
    staging = make_staging(tmp_path)
    stage(staging, "visits", visits_batch())

    with pytest.raises(StagingError, match="already staged"):
        stage(staging, "visits", visits_batch())

    assert staging.rows("visits") == 1000


@pytest.mark.parametrize("name", ["Visits", "1visits", "visits-2024", "门诊", "", "a" * 64, "a.b"])
def test_staging_bad_table_name_refused(tmp_path: Path, name: str) -> None:
    staging = make_staging(tmp_path)

    with pytest.raises(StagingError, match="not a table name"):
        stage(staging, name, visits_batch())
    with pytest.raises(StagingError, match="not a table name"):
        staging.rows(name)


def test_staging_key_must_be_32_bytes(tmp_path: Path) -> None:
    with pytest.raises(StagingError, match="32 bytes"):
        Staging(tmp_path, b"short")


def test_staging_error_is_a_dataset_error() -> None:
    assert issubclass(StagingError, DatasetError)


def test_staging_missing_table_refused(tmp_path: Path) -> None:
    with pytest.raises(StagingError, match="no staged table 'visits'"):
        make_staging(tmp_path).read_table("visits")


def test_staging_empty_table_round_trip(tmp_path: Path) -> None:
    staging = make_staging(tmp_path)
    schema = visits_batch().schema
    with staging.table_writer("empty", schema):
        pass

    assert staging.rows("empty") == 0
    assert staging.read_table("empty").schema == schema


def test_staging_remove_table_and_destroy(tmp_path: Path) -> None:
    staging = make_staging(tmp_path)
    stage(staging, "a", visits_batch())
    stage(staging, "b", visits_batch())

    staging.remove_table("a")
    assert staging.tables() == ["b"]
    staging.destroy()
    assert not staging.folder.exists()
    assert staging.tables() == []


# --- tampering ---------------------------------------------------------------------------


def write_noise(tmp_path: Path) -> tuple[Staging, Path, bytes, list[bytes]]:
    staging = make_staging(tmp_path)
    stage(staging, "noise", noise_batch(3))
    path = table_file(staging, "noise")
    header, chunks = chunks_of(path)
    return staging, path, header, chunks


def assert_unreadable(staging: Staging, table: str = "noise") -> None:
    with pytest.raises(StagingError):
        staging.read_table(table)


@pytest.mark.parametrize("position", [HEADER_BYTES + 100, HEADER_BYTES + STRIDE + 5, -1, 9])
def test_staging_flipped_byte_detected(tmp_path: Path, position: int) -> None:
    staging, path, _, _ = write_noise(tmp_path)
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))

    with pytest.raises(StagingError, match="fails authentication|format"):
        staging.read_table("noise")


def test_staging_dropped_chunk_detected(tmp_path: Path) -> None:
    staging, path, header, chunks = write_noise(tmp_path)
    path.write_bytes(header + b"".join(chunks[:1] + chunks[2:]))

    assert_unreadable(staging)


def test_staging_last_chunk_cut_off_detected(tmp_path: Path) -> None:
    staging, path, header, chunks = write_noise(tmp_path)
    path.write_bytes(header + b"".join(chunks[:-1]))

    with pytest.raises(StagingError, match="fails authentication"):
        staging.read_table("noise")


def test_staging_truncated_mid_chunk_detected(tmp_path: Path) -> None:
    staging, path, _, _ = write_noise(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-100])

    assert_unreadable(staging)


def test_staging_swapped_chunks_detected(tmp_path: Path) -> None:
    staging, path, header, chunks = write_noise(tmp_path)
    path.write_bytes(header + b"".join([chunks[1], chunks[0], *chunks[2:]]))

    assert_unreadable(staging)


def test_staging_file_renamed_to_another_table_detected(tmp_path: Path) -> None:
    staging, path, _, _ = write_noise(tmp_path)
    path.rename(table_file(staging, "other"))

    assert_unreadable(staging, "other")


def test_staging_chunk_from_another_file_detected(tmp_path: Path) -> None:
    staging, path, header, chunks = write_noise(tmp_path)
    stage(staging, "copy", noise_batch(3))
    _, foreign = chunks_of(table_file(staging, "copy"))
    path.write_bytes(header + b"".join([chunks[0], foreign[1], *chunks[2:]]))

    assert_unreadable(staging)


def test_staging_wrong_key_detected(tmp_path: Path) -> None:
    staging = make_staging(tmp_path)
    stage(staging, "visits", visits_batch())

    with pytest.raises(StagingError, match="key is wrong"):
        make_staging(tmp_path, secrets.token_bytes(32)).rows("visits")
