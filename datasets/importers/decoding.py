"""A CSV file's text encoding: detected or named, checked as the file is read.

The CSV parser is given UTF-8: a UTF-8 file passes through as it is (less its
byte order mark), one in another encoding is decoded and re-encoded block by
block. An undecodable byte is reported by its offset and line, never shown.
"""

from __future__ import annotations

import codecs
import io
from typing import TYPE_CHECKING

from datasets.errors import SourceError
from datasets.importers.source import SourceBytes

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

# Enough to tell UTF-8 from GB18030 in practice: a file of Chinese text shows a
# non-ASCII byte within its first lines.
DETECT_BYTES = 4 << 20
BLOCK_BYTES = 1 << 20
NEWLINE = b"\n"
_UTF8 = "utf-8"
_GB18030 = "gb18030"
_BOMS_REFUSED = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def encoding_label(encoding: str) -> str:
    """The name people know an encoding by (``GB18030``, ``UTF-8``)."""
    return codecs.lookup(encoding).name.upper().replace("_", "-")


def named_encoding(encoding: str, *, file: str) -> str:
    """The codec an owner named, if Python knows it and it writes ASCII as ASCII."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise SourceError(
            "import.encoding", f"{encoding!r} is not a known text encoding", file=file
        ) from None
    if name == "utf-8-sig":
        name = _UTF8  # the byte order mark is dropped either way
    # The delimiter, the quote and the newline are found in the bytes: an encoding
    # that writes them otherwise (UTF-16, UTF-32) cannot be streamed this way.
    if 'a,"\n'.encode(name) != b'a,"\n':
        raise SourceError(
            "import.encoding",
            f"{encoding_label(name)} is not supported: save the file as UTF-8 (or GB18030)",
            file=file,
        )
    return name


def check_decodes(head: bytes, encoding: str, *, complete: bool, file: str) -> None:
    """Refuse, as ``import.encoding``, first bytes that are not text in ``encoding``."""
    try:
        codecs.getincrementaldecoder(encoding)().decode(head, final=complete)
    except UnicodeDecodeError as error:
        line = head.count(NEWLINE, 0, error.start) + 1
        raise SourceError(
            "import.encoding",
            f"the file is not valid {encoding_label(encoding)} at byte {error.start} "
            f"(line {line}): name another encoding, or let it be detected",
            file=file,
            row=line,
        ) from None


def detect_encoding(head: bytes, *, complete: bool, file: str) -> str:
    """UTF-8 if the first bytes are valid UTF-8, else GB18030 (a superset of GBK, GB2312).

    ``complete`` says ``head`` is the whole file, so it must not end mid-character.
    """
    if head.startswith(_BOMS_REFUSED):
        raise SourceError(
            "import.encoding",
            "UTF-16 and UTF-32 are not supported: save the file as UTF-8 (or GB18030)",
            file=file,
        )
    failures = []
    for encoding in (_UTF8, _GB18030):
        try:
            codecs.getincrementaldecoder(encoding)().decode(head, final=complete)
        except UnicodeDecodeError as error:
            failures.append(
                f"{encoding_label(encoding)} (byte {error.start}, {_line(head, error.start)})"
            )
            continue
        return encoding
    raise SourceError(
        "import.encoding",
        f"the file is neither {' nor '.join(failures)}: name its encoding",
        file=file,
    )


def _line(data: bytes, offset: int) -> str:
    return f"line {data.count(NEWLINE, 0, offset) + 1}"


class Utf8Text(io.RawIOBase):
    """The UTF-8 text of ``source`` (in ``encoding``), for the CSV parser to read."""

    def __init__(self, source: SourceBytes, *, encoding: str, file: str) -> None:
        self._source = source
        self._encoding = encoding
        self._passthrough = encoding == _UTF8
        self._decoder = codecs.getincrementaldecoder(encoding)()
        self._file = file
        self._out = b""
        self._taken = 0  # bytes of _out already read
        self._fed = 0  # source bytes given to the decoder
        self._lines = 0  # newlines among them
        self._started = False
        self._ended = False
        self.had_bom = False
        self.failure: SourceError | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view):
            if self._taken == len(self._out):
                if self._ended:
                    break
                self._refill()
                continue
            count = min(len(view) - done, len(self._out) - self._taken)
            view[done : done + count] = self._out[self._taken : self._taken + count]
            self._taken += count
            done += count
        return done

    def _refill(self) -> None:
        data = self._source.read_up_to(BLOCK_BYTES)
        final = not data
        buffered = self._decoder.getstate()[0]
        try:
            text = self._decoder.decode(data, final=final)
        except UnicodeDecodeError as error:
            self.failure = self._undecodable(error, data, buffered)
            raise self.failure from None
        self._fed += len(data)
        self._lines += data.count(NEWLINE)
        self._ended = final
        if not self._started and (data or final):
            self._started = True
            if text.startswith("\ufeff"):
                self.had_bom = True
                text = text[1:]
                if self._passthrough:
                    data = data[len(codecs.BOM_UTF8) :]
        self._out = data if self._passthrough else text.encode(_UTF8)
        self._taken = 0

    def _undecodable(self, error: UnicodeDecodeError, data: bytes, buffered: bytes) -> SourceError:
        # The decoder reports the offset within the bytes it held back plus this block.
        within = max(error.start - len(buffered), 0)
        offset = self._fed - len(buffered) + error.start
        line = self._lines + data.count(NEWLINE, 0, within) + 1
        return SourceError(
            "import.encoding",
            f"the file is not valid {encoding_label(self._encoding)} at byte {offset} "
            f"(line {line}): name its encoding if it is another one",
            file=self._file,
            row=line,
        )
