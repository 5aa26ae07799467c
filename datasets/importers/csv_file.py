"""A CSV (or TSV) file streamed into a staged table, every column as text.

Columns are staged as strings, empty values as null: types are the profiler's
call, and an id such as ``0519…`` or ``32040219800101001X`` must keep every
character. The parser reads a block at a time, so memory stays bounded
whatever the file's size. Rows are numbered as the parser counts them: the
header is row 1 and blank lines are not counted.
"""

from __future__ import annotations

import codecs
import csv
import io
from itertools import islice
from pathlib import PurePath
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv

from datasets.errors import SourceError
from datasets.importers.decoding import (
    DETECT_BYTES,
    Utf8Text,
    check_decodes,
    detect_encoding,
    encoding_label,
    named_encoding,
)
from datasets.importers.names import column_names, numbered_names
from datasets.importers.options import FileOptions
from datasets.importers.source import SourceBytes
from datasets.importers.staged import StagedTable, staged_table
from datasets.staging import Staging

DELIMITERS = (",", "\t", ";", "|")
# The parser's unit of work: a row may not be longer than this.
BLOCK_BYTES = 4 << 20
SNIFF_CHARS = 64 * 1024
SNIFF_ROWS = 50


def stage_csv(
    handle: BinaryIO,
    *,
    head: bytes,
    filename: str,
    staging: Staging,
    table: str,
    options: FileOptions,
) -> StagedTable:
    """Stage the CSV file in ``handle`` (of which ``head`` was already read) as ``table``."""
    source = SourceBytes(handle, head=head, limit=options.max_bytes, file=filename)
    prefix = source.read_up_to(DETECT_BYTES)
    if not prefix.strip():
        raise SourceError("import.empty", "the file is empty", file=filename)
    complete = len(prefix) < DETECT_BYTES
    if options.encoding is not None:
        encoding = named_encoding(options.encoding, file=filename)
        # A named encoding the first bytes do not decode in is the wrong one: say so
        # now, not later as a header of replacement characters.
        check_decodes(prefix, encoding, complete=complete, file=filename)
    else:
        encoding = detect_encoding(prefix, complete=complete, file=filename)
    sample = _text(prefix, encoding, complete=complete)
    suffix = PurePath(filename).suffix.lower()
    delimiter = options.delimiter or sniff_delimiter(sample, suffix=suffix)
    if len(delimiter) != 1 or delimiter in '"\r\n':
        raise SourceError(
            "import.delimiter",
            "the delimiter must be one character other than a quote or newline",
            file=filename,
        )
    # The parser skips blank lines, before the header too.
    records = csv.reader(io.StringIO(sample), delimiter=delimiter, strict=False)
    first = next((record for record in records if record), None)
    if not first:
        raise SourceError("import.empty", "the file has no header row", file=filename)
    names = column_names(first, file=filename) if options.header else numbered_names(len(first))
    source.unread(prefix)
    text = Utf8Text(source, encoding=encoding, file=filename)
    read = _ReadCsv(text, source, filename=filename, delimiter=delimiter)
    rows = read.into(staging, table, raw_names=first if options.header else None, names=names)
    return staged_table(
        table,
        pa.schema([(name, pa.string()) for name in names]),
        rows,
        {
            "file": filename,
            "format": "csv",
            "encoding": encoding_label(encoding),
            "byte_order_mark": text.had_bom,
            "delimiter": delimiter,
            "header": options.header,
        },
    )


def sniff_delimiter(sample: str, *, suffix: str = "") -> str:
    """The first of , TAB ; | that splits the first rows into one same number (>1) of fields.

    ``csv.Sniffer`` guesses from character frequencies and is misled by quoted text
    holding delimiters; counting fields with the csv parser itself is exact. A
    ``.tsv`` tries TAB first. Failing that, the candidate that splits the header
    into most fields; a file of one column is ``,``.
    """
    candidates = ("\t", ",", ";", "|") if suffix == ".tsv" else DELIMITERS
    # The sample ends mid-row unless it is the whole file: leave its last row out.
    cut = sample[: sample.rfind("\n") + 1] or sample
    for delimiter in candidates:
        reader = csv.reader(io.StringIO(cut), delimiter=delimiter, strict=False)
        counts = {len(row) for row in islice(reader, SNIFF_ROWS) if row}
        if len(counts) == 1 and counts.pop() > 1:
            return delimiter
    header = cut.split("\n", 1)[0]
    most = max(candidates, key=header.count)
    return most if header.count(most) else candidates[0]


def _text(prefix: bytes, encoding: str, *, complete: bool) -> str:
    """The file's first characters, for sniffing (bad bytes are reported when streamed)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    return decoder.decode(prefix[: SNIFF_CHARS * 4], final=complete).lstrip("\ufeff")


class _ReadCsv:
    """One pass of the CSV parser over a file's UTF-8 text into a staged table."""

    def __init__(
        self, text: Utf8Text, source: SourceBytes, *, filename: str, delimiter: str
    ) -> None:
        self._text = text
        self._source = source
        self._file = filename
        self._delimiter = delimiter
        self._invalid: tuple[int, int, int | None] | None = None

    def _on_invalid_row(self, row: Any) -> str:
        # Only the counts and the number are kept: row.text is data.
        self._invalid = (row.expected_columns, row.actual_columns, row.number)
        return "error"

    def into(
        self, staging: Staging, table: str, *, raw_names: list[str] | None, names: list[str]
    ) -> int:
        parse = pacsv.ParseOptions(
            delimiter=self._delimiter,
            quote_char='"',
            double_quote=True,
            escape_char=False,
            newlines_in_values=True,
            invalid_row_handler=self._on_invalid_row,
        )
        keys = raw_names if raw_names is not None else [f"f{i}" for i in range(len(names))]
        convert = pacsv.ConvertOptions(
            column_types={key: pa.string() for key in keys},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        )
        read = pacsv.ReadOptions(
            # One thread: the parser then numbers the rows it refuses, and on a shared
            # machine it was as fast as several (the file's bytes come through Python).
            use_threads=False,
            block_size=BLOCK_BYTES,
            autogenerate_column_names=raw_names is None,
        )
        schema = pa.schema([(name, pa.string()) for name in names])
        try:
            reader = pacsv.open_csv(
                self._text, read_options=read, parse_options=parse, convert_options=convert
            )
            if reader.schema.names != keys or any(t != pa.string() for t in reader.schema.types):
                raise SourceError(
                    "import.header",
                    "the header row cannot be read the same way twice (is a quote not closed?)",
                    file=self._file,
                    row=1,
                )
            with staging.table_writer(table, schema) as writer:
                last: pa.RecordBatch | None = None
                for batch in reader:
                    if batch.num_rows:
                        last = pa.RecordBatch.from_arrays(batch.columns, schema=schema)
                        writer.write(last)
                if last is None:
                    raise SourceError("import.empty", "the file has no rows", file=self._file)
                self._check_last_row(last, writer.rows)
                return writer.rows
        except (pa.ArrowException, OSError) as error:
            raise self._explained(error) from None

    def _check_last_row(self, last: pa.RecordBatch, rows: int) -> None:
        """Refuse a quote left open at the end: the parser takes the rest of the file as one value.

        That value then ends with the file's last newline, which a value closed by its
        quote almost never does.
        """
        for name, column in zip(last.schema.names, last.columns, strict=True):
            value = column[last.num_rows - 1].as_py()
            if isinstance(value, str) and value.endswith(("\n", "\r")):
                raise SourceError(
                    "import.malformed_row",
                    "a quoted value is not closed before the end of the file",
                    file=self._file,
                    row=rows + 1,
                    column=name,
                )

    def _explained(self, error: Exception) -> SourceError:
        """The parser's error as a SourceError; its own text may quote the row, so it is dropped."""
        for failure in (self._text.failure, self._source.failure):
            if failure is not None:
                return failure
        if isinstance(error, SourceError):
            return error
        if self._invalid is not None:
            expected, actual, number = self._invalid
            return SourceError(
                "import.malformed_row",
                f"the row has {actual} fields where the header has {expected}",
                file=self._file,
                row=number,
            )
        if "straddl" in str(error):
            return SourceError(
                "import.malformed_row",
                f"a row is longer than {BLOCK_BYTES} bytes, or a quoted value is not closed",
                file=self._file,
            )
        return SourceError(
            "import.unreadable",
            f"the file cannot be read as CSV ({type(error).__name__})",
            file=self._file,
        )
