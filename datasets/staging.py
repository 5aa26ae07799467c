"""One import's staging folder: its tables as Parquet, encrypted in sealed chunks.

An import is staged before its owner confirms it, so its tables live here, under
a key of their own, until they are published or the import is dropped. Layout::

    <folder>/<table>.parquet.enc     header | chunk 0 | chunk 1 | … | final chunk

The header is ``MAGIC | version | chunk size | random file id`` (32 bytes). Each
chunk holds ``CHUNK_BYTES`` of Parquet (the final one 0 to ``CHUNK_BYTES``) as
``nonce | AES-256-GCM ciphertext | tag``, with a fresh random nonce, and its
associated data binds the header, the table's name, the chunk's index and
whether it is the final chunk: a chunk cannot be altered, moved, dropped,
duplicated or taken from another table or file, and the file cannot be cut
short at a chunk boundary, without reading failing. Fixed-size chunks give
random access (a Parquet reader starts at the footer), so a table is read
chunk by chunk and never decrypted whole into memory, nor onto disk.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import shutil
import struct
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
from Crypto.Cipher import AES

from datasets.errors import StagingError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
CHUNK_BYTES = 1 << 20
TABLE_SUFFIX = ".parquet.enc"
MAGIC = b"SBXSTAGE"
VERSION = 1
# magic, version, three reserved bytes, chunk size, file id
_HEADER = struct.Struct(">8sB3xI16s")
HEADER_BYTES = _HEADER.size
_AAD_PURPOSE = b"sandbox-staging/1"
# Batches are gathered into row groups of about this many rows: one Parquet row
# group per incoming batch would make thousands of tiny ones from a CSV reader.
ROW_GROUP_ROWS = 131_072
ROW_GROUP_BYTES = 64 << 20
# Decrypted chunks a reader keeps: a Parquet reader goes back and forth between a
# column chunk's pages and the next column's, rarely further.
_CACHED_CHUNKS = 4

_TABLE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# The label sealed into a spooled upload's chunks: no table is named so (see _TABLE).
SPOOL_LABEL = ".spool"


def check_table_name(table: str) -> None:
    """Refuse a name that is not lower-case letters, digits and ``_`` (63 at most)."""
    if not isinstance(table, str) or not _TABLE.match(table):
        raise StagingError(
            f"{table!r} is not a table name: it must start with a lower-case letter "
            "and hold only lower-case letters, digits and '_' (63 characters at most)"
        )


class Staging:
    """The staged tables of one import, in ``folder`` (0700), each file 0600."""

    def __init__(self, folder: Path, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise StagingError(f"a staging key must be exactly {KEY_BYTES} bytes")
        self.folder = Path(folder)
        self._key = key
        self._ensure_folder()

    # --- writing ---------------------------------------------------------------------

    @contextmanager
    def table_writer(self, table: str, schema: pa.Schema) -> Iterator[TableWriter]:
        """A writer of ``table``'s batches; the table appears only once the block ends.

        If the block raises, the partial file is removed and the table is not
        staged. A table already staged is refused: remove it first.
        """
        check_table_name(table)
        self._ensure_folder()
        final = self._path(table)
        if final.exists():
            raise StagingError(f"table {table!r} is already staged: remove it first")
        partial = self.folder / f".{table}.{secrets.token_hex(8)}.partial"
        sink = _SealedWriter(partial, self._key, table)
        try:
            writer = TableWriter(table, schema, sink)
            try:
                yield writer
                writer.finish()
            finally:
                writer.abandon()
            sink.finish()
            try:
                # A hard link publishes the file only if no other writer got there first.
                os.link(partial, final)
            except FileExistsError:
                raise StagingError(
                    f"table {table!r} was staged meanwhile by another writer"
                ) from None
        finally:
            sink.close()
            partial.unlink(missing_ok=True)

    def remove_table(self, table: str) -> None:
        self._existing(table).unlink()

    @contextmanager
    def spooled(self, source: BinaryIO) -> Iterator[BinaryIO]:
        """``source`` (a stream that cannot seek: an upload) copied into a sealed file of
        this staging, as a seekable stream of its plain bytes; removed after the block.

        A workbook or Parquet file is read out of order; an upload comes as a stream.
        The copy is sealed like a staged table, so nothing of it is on disk in plain.
        """
        self._ensure_folder()
        path = self.folder / f".spool.{secrets.token_hex(8)}"
        try:
            with _SealedWriter(path, self._key, SPOOL_LABEL) as sink:
                shutil.copyfileobj(source, sink, CHUNK_BYTES)  # type: ignore[misc]
                sink.finish()
            with _SealedReader(path, self._key, SPOOL_LABEL) as spool:
                yield io.BufferedReader(spool, CHUNK_BYTES)  # type: ignore[return-value]
        finally:
            path.unlink(missing_ok=True)

    def destroy(self) -> None:
        """Delete every file of this import, and its folder."""
        if self.folder.exists():
            shutil.rmtree(self.folder)

    # --- reading ---------------------------------------------------------------------

    def tables(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        found = (p.name[: -len(TABLE_SUFFIX)] for p in self.folder.glob(f"*{TABLE_SUFFIX}"))
        return sorted(name for name in found if _TABLE.match(name))

    def schema(self, table: str) -> pa.Schema:
        with self._parquet(table) as parquet:
            return parquet.schema_arrow

    def rows(self, table: str) -> int:
        with self._parquet(table) as parquet:
            return int(parquet.metadata.num_rows)

    def batches(
        self, table: str, columns: list[str] | None = None, batch_size: int = 65_536
    ) -> Iterator[pa.RecordBatch]:
        """``table``'s rows in batches, one row group in memory at a time."""
        with self._parquet(table) as parquet:
            if columns is not None:
                known = set(parquet.schema_arrow.names)
                unknown = [name for name in columns if name not in known]
                if unknown:
                    raise StagingError(f"table {table!r} has no column {unknown[0]!r}")
            yield from parquet.iter_batches(batch_size=batch_size, columns=columns)

    def reader(self, table: str) -> pa.RecordBatchReader:
        """``table`` as a stream of batches (DuckDB scans it: ``duckdb.from_arrow(reader)``)."""
        return pa.RecordBatchReader.from_batches(self.schema(table), self.batches(table))

    def read_table(self, table: str) -> pa.Table:
        with self._parquet(table) as parquet:
            return parquet.read()

    # --- files -----------------------------------------------------------------------

    def _ensure_folder(self) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)  # an existing folder, or one a umask left wider

    def _path(self, table: str) -> Path:
        return self.folder / f"{table}{TABLE_SUFFIX}"

    def _existing(self, table: str) -> Path:
        check_table_name(table)
        path = self._path(table)
        if not path.is_file():
            raise StagingError(f"there is no staged table {table!r}")
        return path

    @contextmanager
    def _parquet(self, table: str) -> Iterator[pq.ParquetFile]:
        with _SealedReader(self._existing(table), self._key, table) as raw:
            try:
                parquet = pq.ParquetFile(raw)
            except pa.ArrowException as error:  # authenticated, so not an attacker's
                raise StagingError(f"staged table {table!r} is not valid Parquet") from error
            try:
                yield parquet
            finally:
                parquet.close()


class TableWriter:
    """Writes batches of one schema into a staged table, gathered into row groups."""

    def __init__(self, table: str, schema: pa.Schema, sink: _SealedWriter) -> None:
        self.table = table
        self.schema = schema
        self.rows = 0
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        try:
            self._parquet = pq.ParquetWriter(sink, schema, compression="zstd")
        except (pa.ArrowException, TypeError, ValueError) as error:
            raise StagingError(f"table {table!r} cannot be stored as Parquet") from error
        self._open = True

    def write(self, batch: pa.RecordBatch) -> None:
        if not self._open:
            raise StagingError(f"the writer of table {self.table!r} is closed")
        if not batch.schema.equals(self.schema, check_metadata=False):
            raise StagingError(f"a batch for table {self.table!r} does not match its schema")
        if batch.num_rows == 0:
            return
        if batch.schema.metadata != self.schema.metadata:
            batch = pa.RecordBatch.from_arrays(batch.columns, schema=self.schema)
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self._pending_bytes += batch.nbytes
        self.rows += batch.num_rows
        if self._pending_rows >= ROW_GROUP_ROWS or self._pending_bytes >= ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        group = pa.Table.from_batches(self._pending, schema=self.schema)
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
        self._parquet.write_table(group, row_group_size=group.num_rows)

    def finish(self) -> None:
        self._flush()
        self._open = False
        self._parquet.close()

    def abandon(self) -> None:
        """Drop what is pending and close (after :meth:`finish` it has nothing to do)."""
        self._pending = []
        if self._open:
            self._open = False
            try:
                self._parquet.close()
            except pa.ArrowException:
                pass  # the partial file is removed anyway


def _aad(header: bytes, table: str, index: int, final: bool) -> bytes:
    return b"|".join((_AAD_PURPOSE, header, table.encode(), struct.pack(">QB", index, int(final))))


class _SealedWriter(io.RawIOBase):
    """A write-only file that seals what it is given in chunks (the sink of a ParquetWriter)."""

    def __init__(self, path: Path, key: bytes, table: str) -> None:
        self._key = key
        self._table = table
        self._header = _HEADER.pack(MAGIC, VERSION, CHUNK_BYTES, secrets.token_bytes(16))
        self._buffer = bytearray()
        self._index = 0
        self._position = 0
        self._finished = False
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(fd, "wb")
        self._file.write(self._header)

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        if self._finished:
            raise StagingError(f"the file of table {self._table!r} is already sealed")
        view = memoryview(data).cast("B")
        self._buffer += view
        self._position += len(view)
        # Strictly more than a chunk: the final chunk is then never empty unless the
        # whole file is, and the reader finds it from the file's size alone.
        while len(self._buffer) > CHUNK_BYTES:
            self._seal(bytes(self._buffer[:CHUNK_BYTES]), final=False)
            del self._buffer[:CHUNK_BYTES]
        return len(view)

    def tell(self) -> int:
        return self._position

    def _seal(self, plain: bytes, *, final: bool) -> None:
        nonce = secrets.token_bytes(NONCE_BYTES)
        cipher = AES.new(self._key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_BYTES)
        cipher.update(_aad(self._header, self._table, self._index, final))
        ciphertext, tag = cipher.encrypt_and_digest(plain)
        self._file.write(nonce)
        self._file.write(ciphertext)
        self._file.write(tag)
        self._index += 1

    def finish(self) -> None:
        """Seal the final chunk and make the file durable."""
        if self._finished:
            return
        self._seal(bytes(self._buffer), final=True)
        self._buffer = bytearray()
        self._finished = True
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


class _SealedReader(io.RawIOBase):
    """A seekable read-only view of a sealed file's plain bytes, one chunk decrypted at a time.

    It keeps no lock: pyarrow serialises its reads of a Python file (a seek and a
    read under one mutex per file), even when it reads with several threads.
    """

    def __init__(self, path: Path, key: bytes, table: str) -> None:
        self._key = key
        self._table = table
        self._what = f"staged table {table!r}"
        self._file = open(path, "rb")
        try:
            self._header = self._file.read(_HEADER.size)
            self._chunk, self._chunks, self.size = self._layout(os.fstat(self._file.fileno()))
        except BaseException:
            self._file.close()
            raise
        self._position = 0
        self._cache: OrderedDict[int, bytes] = OrderedDict()

    def _layout(self, stat: os.stat_result) -> tuple[int, int, int]:
        """Chunk size, number of chunks and plain size, from the header and the file's size."""
        if len(self._header) != _HEADER.size:
            raise StagingError(f"{self._what} is truncated")
        magic, version, chunk, _ = _HEADER.unpack(self._header)
        if magic != MAGIC or version != VERSION or not 0 < chunk <= 64 * CHUNK_BYTES:
            raise StagingError(f"{self._what} is not a staged file of a known format")
        body = stat.st_size - _HEADER.size
        stride = NONCE_BYTES + chunk + TAG_BYTES
        chunks = -(-body // stride)
        last = body - (chunks - 1) * stride - NONCE_BYTES - TAG_BYTES
        if chunks < 1 or last < 0:
            raise StagingError(f"{self._what} is truncated")
        return chunk, chunks, (chunks - 1) * chunk + last

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            position = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if position < 0:
            raise ValueError("negative seek position")
        self._position = position
        return position

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Fill ``buffer`` as far as the file goes (a short read means the end)."""
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._position < self.size:
            index, start = divmod(self._position, self._chunk)
            plain = self._plain_chunk(index)
            count = min(len(view) - done, len(plain) - start)
            view[done : done + count] = plain[start : start + count]
            done += count
            self._position += count
        return done

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = max(self.size - self._position, 0)
        buffer = bytearray(min(size, max(self.size - self._position, 0)))
        count = self.readinto(buffer)
        return bytes(buffer[:count])

    def _plain_chunk(self, index: int) -> bytes:
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        final = index == self._chunks - 1
        stride = NONCE_BYTES + self._chunk + TAG_BYTES
        length = self.size - index * self._chunk if final else self._chunk
        self._file.seek(_HEADER.size + index * stride)
        sealed = self._file.read(NONCE_BYTES + length + TAG_BYTES)
        if len(sealed) != NONCE_BYTES + length + TAG_BYTES:
            raise StagingError(f"{self._what} is truncated")
        cipher = AES.new(self._key, AES.MODE_GCM, nonce=sealed[:NONCE_BYTES], mac_len=TAG_BYTES)
        cipher.update(_aad(self._header, self._table, index, final))
        try:
            plain = cipher.decrypt_and_verify(sealed[NONCE_BYTES:-TAG_BYTES], sealed[-TAG_BYTES:])
        except ValueError:
            raise StagingError(
                f"{self._what} fails authentication at chunk {index}: it was altered, "
                "truncated, reordered or taken from another table, or the key is wrong"
            ) from None
        self._cache[index] = plain
        if len(self._cache) > _CACHED_CHUNKS:
            self._cache.popitem(last=False)
        return plain

    def close(self) -> None:
        if not self.closed:
            self._file.close()
            self._cache.clear()
        super().close()
