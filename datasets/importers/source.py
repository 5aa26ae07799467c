"""An owner's file as a byte stream: opened, measured and cut off at its size limit."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from datasets.errors import SourceError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

MAGIC_BYTES = 8


class SourceBytes(io.RawIOBase):
    """Reads ``raw`` (after the ``head`` already taken from it), counting every byte.

    Past ``limit`` bytes it raises ``import.too_large``: a stream of unknown length
    is refused as soon as it is too long, not after it was read whole.
    """

    def __init__(self, raw: BinaryIO, *, head: bytes, limit: int, file: str) -> None:
        self._raw = raw
        self._head = head
        self._limit = limit
        self._file = file
        self.count = 0
        self.failure: SourceError | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            count = min(len(view), len(self._head))
            view[:count] = self._head[:count]
            self._head = self._head[count:]
        else:
            data = self._raw.read(len(view)) or b""
            count = len(data)
            view[:count] = data
        self.count += count
        if self.count > self._limit:
            # Kept as well as raised: a parser calling this may report it otherwise.
            self.failure = too_large(self._file, self._limit)
            raise self.failure
        return count

    def unread(self, data: bytes) -> None:
        """Put ``data``, just read, back in front of the stream (it is counted again)."""
        self._head = data + self._head
        self.count -= len(data)

    def read_up_to(self, size: int) -> bytes:
        """Up to ``size`` bytes, fewer only at the end of the stream."""
        parts = []
        wanted = size
        while wanted > 0:
            part = self.read(min(wanted, 1 << 20))
            if not part:
                break
            parts.append(part)
            wanted -= len(part)
        return b"".join(parts)


def too_large(file: str, limit: int) -> SourceError:
    return SourceError(
        "import.too_large", f"the file is larger than the limit of {limit} bytes", file=file
    )


@contextmanager
def opened(source: Path | BinaryIO) -> Iterator[BinaryIO]:
    """A path opened for reading (and closed after), or the caller's own stream as it is."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as handle:
            yield handle
    else:
        yield source


def peek_head(handle: BinaryIO) -> tuple[bytes, bool]:
    """The stream's first bytes (to tell its format), and whether it was rewound after.

    A seekable stream is put back where it was; of one that is not, the bytes are
    gone from it and the caller hands them on (:class:`SourceBytes` ``head``).
    """
    seekable = _seekable(handle)
    start = handle.tell() if seekable else 0
    head = b""
    while len(head) < MAGIC_BYTES:  # a stream may give less than asked before its end
        part = handle.read(MAGIC_BYTES - len(head))
        if not part:
            break
        head += part
    if seekable:
        handle.seek(start)
    return head, seekable


def remaining_size(handle: BinaryIO) -> int:
    """Bytes from a seekable stream's position to its end (the position is kept)."""
    start = handle.tell()
    end = handle.seek(0, io.SEEK_END)
    handle.seek(start)
    return end - start


def _seekable(handle: BinaryIO) -> bool:
    try:
        return bool(handle.seekable())
    except (AttributeError, OSError, ValueError):
        return False
