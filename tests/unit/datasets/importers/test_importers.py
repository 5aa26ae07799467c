from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datasets.errors import DatasetError, SourceError, StagingError
from datasets.importers import FileOptions, StagedTable, stage_database, stage_file
from datasets.staging import Staging

KEY = bytes(range(32))
ID = "32040219800101001X"


@pytest.fixture
def staging(tmp_path: Path) -> Staging:
    return Staging(tmp_path / "import", KEY)


def stage_bytes(
    staging: Staging, data: bytes, filename: str = "visits.csv", **options: Any
) -> list[StagedTable]:
    return stage_file(
        io.BytesIO(data), filename=filename, staging=staging, options=FileOptions(**options)
    )


def refused(
    staging: Staging, data: bytes, filename: str = "visits.csv", **options: Any
) -> SourceError:
    """The import's error, after checking that it left nothing staged."""
    with pytest.raises(SourceError) as caught:
        stage_bytes(staging, data, filename, **options)
    assert staging.tables() == []
    assert list(staging.folder.iterdir()) == []
    assert caught.value.file == filename
    return caught.value


def rows_of(staging: Staging, table: str) -> list[dict[str, Any]]:
    return staging.read_table(table).to_pylist()


class OneWayStream(io.RawIOBase):
    """A stream that cannot seek (an upload), made up as it is read; counts what was read."""

    def __init__(self, head: bytes, line: bytes, total: int) -> None:
        self._pending = head
        self._line = line
        self._left = total
        self.given = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._pending and self._left > 0:
            count = min(self._left, 1 << 16) // len(self._line) or 1
            self._pending = self._line * count
            self._left -= len(self._pending)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        self.given += size
        return size


# --- CSV: encodings ------------------------------------------------------------------------

VISITS = f"身份证号,医院,就诊日期,费用\n{ID},市第一人民医院,2024-01-05,12.50\n0519,中医院,,3\n"


def test_stage_csv_utf8_round_trip(staging: Staging) -> None:
    [staged] = stage_bytes(staging, VISITS.encode())

    assert staged.name == "visits"
    assert staged.rows == 2
    assert staged.columns == tuple(
        (name, "string") for name in ("身份证号", "医院", "就诊日期", "费用")
    )
    assert staged.source == {
        "file": "visits.csv",
        "format": "csv",
        "encoding": "UTF-8",
        "byte_order_mark": False,
        "delimiter": ",",
        "header": True,
    }
    assert rows_of(staging, "visits") == [
        {"身份证号": ID, "医院": "市第一人民医院", "就诊日期": "2024-01-05", "费用": "12.50"},
        {"身份证号": "0519", "医院": "中医院", "就诊日期": None, "费用": "3"},
    ]


def test_stage_csv_utf8_bom_dropped(staging: Staging) -> None:
    [staged] = stage_bytes(staging, b"\xef\xbb\xbf" + VISITS.encode())

    assert staged.source["byte_order_mark"] is True
    assert staged.columns[0] == ("身份证号", "string")
    assert rows_of(staging, "visits")[1]["身份证号"] == "0519"


@pytest.mark.parametrize("encoding", ["gbk", "gb18030"])
def test_stage_csv_gbk_family_detected(staging: Staging, encoding: str) -> None:
    [staged] = stage_bytes(staging, VISITS.encode(encoding))

    assert staged.source["encoding"] == "GB18030"
    assert rows_of(staging, "visits")[0]["医院"] == "市第一人民医院"


def test_stage_csv_gb18030_beyond_gbk(staging: Staging) -> None:
    text = "姓名,备注\n𠮷野,㐀\n"  # neither character is in GBK
    with pytest.raises(UnicodeEncodeError):
        text.encode("gbk")

    stage_bytes(staging, text.encode("gb18030"))

    assert rows_of(staging, "visits") == [{"姓名": "𠮷野", "备注": "㐀"}]


def test_stage_csv_named_encoding(staging: Staging) -> None:
    [staged] = stage_bytes(staging, VISITS.encode("gbk"), encoding="GBK")

    assert staged.source["encoding"] == "GBK"
    assert rows_of(staging, "visits")[1]["医院"] == "中医院"


def test_stage_csv_undecodable_in_named_encoding(staging: Staging) -> None:
    data = b"a,b\n1,2\n" + "中,文\n".encode("gbk")

    error = refused(staging, data, encoding="utf-8")

    assert error.rule == "import.encoding"
    assert error.row == 3
    assert "UTF-8 at byte 8 (line 3)" in str(error)


def test_stage_csv_undecodable_after_detection(
    staging: Staging, monkeypatch: pytest.MonkeyPatch
) -> None:
    # UTF-8 in the part looked at, GBK further on: caught while streaming, by line.
    monkeypatch.setattr("datasets.importers.csv_file.DETECT_BYTES", 64)
    data = b"a,b\n" + b"1,2\n" * 100 + "中,文\n".encode("gbk")

    error = refused(staging, data)

    assert error.rule == "import.encoding"
    assert error.row == 102
    assert f"at byte {4 + 4 * 100} (line 102)" in str(error)


def test_stage_csv_neither_utf8_nor_gb18030(staging: Staging) -> None:
    error = refused(staging, b"a,b\n1,\xff\xff\n")

    assert error.rule == "import.encoding"
    assert "neither UTF-8 (byte 6, line 2) nor GB18030" in str(error)


def test_stage_csv_utf16_refused(staging: Staging) -> None:
    error = refused(staging, "a,b\n1,2\n".encode("utf-16"))

    assert error.rule == "import.encoding"
    assert "UTF-16" in str(error)


@pytest.mark.parametrize("encoding", ["klingon", "utf-16"])
def test_stage_csv_unusable_encoding_name_refused(staging: Staging, encoding: str) -> None:
    assert refused(staging, b"a,b\n1,2\n", encoding=encoding).rule == "import.encoding"


# --- CSV: delimiters, quoting, headers --------------------------------------------------------


@pytest.mark.parametrize("delimiter", [",", "\t", ";", "|"])
def test_stage_csv_delimiter_sniffed(staging: Staging, delimiter: str) -> None:
    text = "id,name,note\n0519,张三,x\n0520,李四,y\n".replace(",", delimiter)

    [staged] = stage_bytes(staging, text.encode())

    assert staged.source["delimiter"] == delimiter
    assert [c for c, _ in staged.columns] == ["id", "name", "note"]
    assert rows_of(staging, "visits")[1] == {"id": "0520", "name": "李四", "note": "y"}


def test_stage_csv_semicolon_file_with_commas_in_values(staging: Staging) -> None:
    [staged] = stage_bytes(staging, b"a;b\n1,5;2,5\n3,0;4\n")

    assert staged.source["delimiter"] == ";"
    assert rows_of(staging, "visits")[0] == {"a": "1,5", "b": "2,5"}


def test_stage_csv_tsv_named_file(staging: Staging) -> None:
    [staged] = stage_bytes(staging, b"a\tb\n1\t2\n", "visits.tsv")

    assert staged.source["delimiter"] == "\t"


def test_stage_csv_delimiter_named(staging: Staging) -> None:
    [staged] = stage_bytes(staging, b"a|b;c\n1|2;3\n", delimiter="|")

    assert rows_of(staging, "visits") == [{"a": "1", "b;c": "2;3"}]
    assert staged.source["delimiter"] == "|"


def test_stage_csv_quoted_values_with_delimiters_newlines_quotes(staging: Staging) -> None:
    data = 'id,note\r\n1,"复诊, 随访"\r\n2,"two\nlines"\r\n3,"say ""hi"""\r\n4,""\r\n'.encode()

    stage_bytes(staging, data)

    assert [row["note"] for row in rows_of(staging, "visits")] == [
        "复诊, 随访",
        "two\nlines",
        'say "hi"',
        None,
    ]


def test_stage_csv_headers_stripped_blank_named(staging: Staging) -> None:
    [staged] = stage_bytes(staging, " 姓名 ,,年龄\n张三,x,30\n".encode())

    assert [c for c, _ in staged.columns] == ["姓名", "col_2", "年龄"]


def test_stage_csv_duplicate_header_refused(staging: Staging) -> None:
    error = refused(staging, "姓名,年龄,姓名 \n张三,30,李四\n".encode())

    assert (error.rule, error.row, error.column) == ("import.header", 1, "姓名")


def test_stage_csv_without_header(staging: Staging) -> None:
    [staged] = stage_bytes(staging, f"{ID},张三\n0519,李四\n".encode(), header=False)

    assert [c for c, _ in staged.columns] == ["col_1", "col_2"]
    assert rows_of(staging, "visits")[0] == {"col_1": ID, "col_2": "张三"}


def test_stage_csv_single_column(staging: Staging) -> None:
    stage_bytes(staging, b"id\n0519\n0520\n")

    assert rows_of(staging, "visits") == [{"id": "0519"}, {"id": "0520"}]


def test_stage_csv_table_named_after_file(staging: Staging) -> None:
    [named] = stage_bytes(staging, b"a\n1\n", "Visits 2024.csv")
    [chinese] = stage_bytes(staging, b"a\n1\n", "门诊记录.csv")
    [chosen] = stage_file(io.BytesIO(b"a\n1\n"), filename="x.csv", staging=staging, table="mine")

    assert (named.name, chinese.name, chosen.name) == ("visits_2024", "table", "mine")


def test_stage_csv_from_path(staging: Staging, tmp_path: Path) -> None:
    path = tmp_path / "visits.csv"
    path.write_bytes(VISITS.encode("gbk"))

    [staged] = stage_file(path, filename=path.name, staging=staging)

    assert staged.rows == 2


def test_stage_csv_bad_table_name_refused(staging: Staging) -> None:
    with pytest.raises(StagingError, match="not a table name"):
        stage_file(io.BytesIO(b"a\n1\n"), filename="x.csv", staging=staging, table="Bad-Name")


# --- CSV: bad input ---------------------------------------------------------------------------


def test_stage_csv_row_with_too_many_fields_refused(staging: Staging) -> None:
    data = f"a,b\n1,2\n\n3,4\n5,{ID},7\n8,9\n".encode()

    error = refused(staging, data)

    assert (error.rule, error.row) == ("import.malformed_row", 4)
    assert "3 fields where the header has 2" in str(error)
    assert ID not in str(error)


def test_stage_csv_row_with_too_few_fields_refused(staging: Staging) -> None:
    error = refused(staging, b"a,b,c\n" + b"1,2,3\n" * 3 + b"4,5\n")

    assert (error.rule, error.row) == ("import.malformed_row", 5)


def test_stage_csv_malformed_row_far_in_refused(staging: Staging) -> None:
    error = refused(staging, b"a,b\n" + b"1,2\n" * 300_000 + b"3\n")

    assert (error.rule, error.row) == ("import.malformed_row", 300_002)


def test_stage_csv_unclosed_quote_refused(staging: Staging) -> None:
    error = refused(staging, b'a,b\n1,2\n3,"4\n5,6\n')

    assert (error.rule, error.row, error.column) == ("import.malformed_row", 3, "b")


@pytest.mark.parametrize("data", [b"", b" \r\n\n"])
def test_stage_csv_empty_file_refused(staging: Staging, data: bytes) -> None:
    assert refused(staging, data).rule == "import.empty"


def test_stage_csv_header_without_rows_refused(staging: Staging) -> None:
    error = refused(staging, "姓名,年龄\n".encode())

    assert error.rule == "import.empty"
    assert "no rows" in str(error)


def test_stage_csv_too_large_file_refused(staging: Staging, tmp_path: Path) -> None:
    path = tmp_path / "visits.csv"
    path.write_bytes(b"a,b\n" + b"1,2\n" * 1000)

    with pytest.raises(SourceError) as caught:
        stage_file(path, filename="visits.csv", staging=staging, options=FileOptions(max_bytes=100))

    assert caught.value.rule == "import.too_large"
    assert staging.tables() == []


def test_stage_csv_too_large_stream_cut_off_while_read(staging: Staging) -> None:
    limit = 1 << 20
    stream = OneWayStream(b"a,b\n", b"1,2\n", 64 << 20)

    with pytest.raises(SourceError) as caught:
        stage_file(
            stream,  # type: ignore[arg-type]
            filename="visits.csv",
            staging=staging,
            options=FileOptions(max_bytes=limit),
        )

    assert caught.value.rule == "import.too_large"
    assert stream.given < 16 * limit  # stopped early, not read whole
    assert staging.tables() == []
    assert list(staging.folder.iterdir()) == []


def test_stage_csv_from_stream_that_cannot_seek(staging: Staging) -> None:
    stream = OneWayStream(b"a,b\n", b"0519,2\n", 1000 * 7)

    [staged] = stage_file(stream, filename="visits.csv", staging=staging)  # type: ignore[arg-type]

    assert staged.rows == 1000
    assert rows_of(staging, "visits")[0] == {"a": "0519", "b": "2"}


# --- formats ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "filename", "says"),
    [
        (b"a,b\n1,2\n", "visits.docx", "not known"),
        (b"a,b\n1,2\n", "visits.xlsx", "named .xlsx"),
        (b"a,b\n1,2\n", "visits.parquet", "named .parquet"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "visits.xls", ".xls"),
        (b"PK\x03\x04 not really a zip", "visits.xlsx", "cannot be read"),
        (b"PAR1 not really parquet", "visits.parquet", "cannot be read"),
    ],
)
def test_stage_file_unknown_or_broken_format_refused(
    staging: Staging, data: bytes, filename: str, says: str
) -> None:
    error = refused(staging, data, filename)

    assert error.rule == "import.format"
    assert says in str(error)


def test_source_error_to_dict_and_hierarchy(staging: Staging) -> None:
    error = refused(staging, b"a,b\n1,2,3\n")

    assert isinstance(error, DatasetError)
    assert error.to_dict() == {
        "rule": "import.malformed_row",
        "message": "visits.csv, row 2: the row has 3 fields where the header has 2 "
        "(import.malformed_row)",
        "file": "visits.csv",
        "row": 2,
        "column": None,
    }


# --- xlsx -------------------------------------------------------------------------------------


def workbook_bytes(fill: Callable[[Any], None]) -> bytes:
    workbook = openpyxl.Workbook()
    fill(workbook)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def two_sheets(workbook: Any) -> None:
    clinic = workbook.active
    clinic.title = "门诊"
    clinic.append(["身份证号", "就诊日期", "费用", "次数", "挂号时间", "复诊"])
    clinic.append([ID, dt.date(2024, 1, 5), 12.5, 3.0, dt.datetime(2024, 1, 5, 8, 30), True])
    clinic.append(["0519", dt.date(2024, 2, 1), 7, 10, None, False])
    labs = workbook.create_sheet("Lab Results")
    labs.append(["test", "value"])
    labs.append(["HbA1c", 6.1])
    workbook.create_sheet("empty")


def test_stage_xlsx_sheets_round_trip(staging: Staging) -> None:
    staged = stage_bytes(staging, workbook_bytes(two_sheets), "clinic.xlsx")

    assert [(t.name, t.rows, t.source["sheet"]) for t in staged] == [
        ("sheet_1", 2, "门诊"),
        ("lab_results", 1, "Lab Results"),
    ]
    assert staged[0].source == {
        "file": "clinic.xlsx",
        "format": "xlsx",
        "sheet": "门诊",
        "header": True,
    }
    assert staging.tables() == ["lab_results", "sheet_1"]
    assert rows_of(staging, "sheet_1") == [
        {
            "身份证号": ID,
            "就诊日期": "2024-01-05",
            "费用": "12.5",
            "次数": "3",
            "挂号时间": "2024-01-05T08:30:00",
            "复诊": "true",
        },
        {
            "身份证号": "0519",
            "就诊日期": "2024-02-01",
            "费用": "7",
            "次数": "10",
            "挂号时间": None,
            "复诊": "false",
        },
    ]
    assert rows_of(staging, "lab_results") == [{"test": "HbA1c", "value": "6.1"}]


def test_stage_xlsx_table_names_from_prefix(staging: Staging) -> None:
    staged = stage_file(
        io.BytesIO(workbook_bytes(two_sheets)),
        filename="clinic.xlsx",
        staging=staging,
        table="clinic",
    )

    assert [t.name for t in staged] == ["clinic_sheet_1", "clinic_lab_results"]


def test_stage_xlsx_formula_refused(staging: Staging) -> None:
    def with_formula(workbook: Any) -> None:
        sheet = workbook.active
        sheet.title = "费用"
        sheet.append(["a", "b"])
        sheet.append([1, 2])
        sheet["B3"] = "=A2*2"

    error = refused(staging, workbook_bytes(with_formula), "clinic.xlsx")

    assert (error.rule, error.row, error.column) == ("import.formula", 3, "B")
    assert "cell B3 of sheet '费用'" in str(error)


def test_stage_xlsx_formula_in_later_sheet_removes_earlier_ones(staging: Staging) -> None:
    def later_formula(workbook: Any) -> None:
        two_sheets(workbook)
        workbook["Lab Results"]["C2"] = "=B2+1"

    error = refused(staging, workbook_bytes(later_formula), "clinic.xlsx")

    assert (error.rule, error.column) == ("import.formula", "C")


def test_stage_xlsx_merged_cells_refused(staging: Staging) -> None:
    def with_merge(workbook: Any) -> None:
        two_sheets(workbook)
        workbook["Lab Results"].merge_cells("A3:B4")

    error = refused(staging, workbook_bytes(with_merge), "clinic.xlsx")

    assert error.rule == "import.merged_cells"
    assert "sheet 'Lab Results' has merged cells (A3:B4)" in str(error)


def test_stage_xlsx_text_mentioning_merged_cells_is_not_refused(staging: Staging) -> None:
    def text_only(workbook: Any) -> None:
        workbook.active.append(["note"])
        workbook.active.append(['<mergeCell ref="A1:B2"/>'])

    [staged] = stage_bytes(staging, workbook_bytes(text_only), "notes.xlsx")

    assert staged.rows == 1


def test_stage_xlsx_value_beyond_header_refused(staging: Staging) -> None:
    def wide_row(workbook: Any) -> None:
        workbook.active.append(["a", "b"])
        workbook.active.append([1, 2])
        workbook.active.append([3, 4, 5])

    error = refused(staging, workbook_bytes(wide_row), "clinic.xlsx")

    assert (error.rule, error.row, error.column) == ("import.malformed_row", 3, "C")


def test_stage_xlsx_header_only_refused(staging: Staging) -> None:
    def header_only(workbook: Any) -> None:
        workbook.active.append(["a", "b"])

    assert refused(staging, workbook_bytes(header_only), "clinic.xlsx").rule == "import.empty"


def test_stage_xlsx_empty_workbook_refused(staging: Staging) -> None:
    assert refused(staging, workbook_bytes(lambda _: None), "clinic.xlsx").rule == "import.empty"


def test_stage_xlsx_upload_stream_is_spooled_sealed_then_read(staging: Staging) -> None:
    # An upload cannot seek: it is copied into a sealed spool file of the staging first.
    data = workbook_bytes(two_sheets)
    stream = OneWayStream(data, b"x", 0)

    staged = stage_file(stream, filename="clinic.xlsx", staging=staging)  # type: ignore[arg-type]

    assert [t.name for t in staged] == [
        t.name
        for t in stage_file(io.BytesIO(data), filename="clinic.xlsx", staging=_fresh(staging))
    ]
    # Nothing of the spool is left, and no file of the staging holds the plain bytes.
    assert not list(staging.folder.glob(".spool.*"))
    assert all(b"PK" not in f.read_bytes()[:64] for f in staging.folder.iterdir())


def test_an_upload_over_the_cap_is_cut_off_while_it_is_spooled(staging: Staging) -> None:
    data = workbook_bytes(two_sheets)
    stream = OneWayStream(data, b"x", 0)
    options = FileOptions(max_bytes=len(data) // 2)

    with pytest.raises(SourceError) as caught:
        stage_file(stream, filename="clinic.xlsx", staging=staging, options=options)  # type: ignore[arg-type]

    assert caught.value.rule == "import.too_large"
    assert staging.tables() == [] and not list(staging.folder.glob(".spool.*"))


def _fresh(staging: Staging) -> Staging:
    import secrets

    return Staging(staging.folder.parent / f"other-{secrets.token_hex(4)}", secrets.token_bytes(32))


# --- Parquet ----------------------------------------------------------------------------------


def parquet_bytes(table: pa.Table, row_group_size: int = 1000) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=row_group_size)
    return buffer.getvalue()


def test_stage_parquet_native_types_kept(staging: Staging) -> None:
    table = pa.table(
        {
            "id": pa.array([f"{i:04d}" for i in range(2500)]),
            "n": pa.array(range(2500), pa.int32()),
            "cost": pa.array([Decimal(i) / 100 for i in range(2500)], pa.decimal128(9, 2)),
            "day": pa.array([dt.date(2024, 1, 1)] * 2500, pa.date32()),
            "seen": pa.array([dt.datetime(2024, 1, 1, 8)] * 2500, pa.timestamp("us")),
        }
    )

    [staged] = stage_bytes(staging, parquet_bytes(table), "visits.parquet")

    assert staged.rows == 2500
    assert staged.columns == (
        ("id", "string"),
        ("n", "int32"),
        ("cost", "decimal128(9, 2)"),
        ("day", "date32[day]"),
        ("seen", "timestamp[us]"),
    )
    assert staged.source == {"file": "visits.parquet", "format": "parquet"}
    assert staging.read_table("visits").equals(table)


def test_stage_parquet_without_rows_refused(staging: Staging) -> None:
    empty = pa.table({"a": pa.array([], pa.string())})

    assert refused(staging, parquet_bytes(empty), "visits.parquet").rule == "import.empty"


def test_stage_csv_blank_lines_before_header_skipped(staging: Staging) -> None:
    [staged] = stage_bytes(staging, b"\r\n\na,b\n1,2\n")

    assert [c for c, _ in staged.columns] == ["a", "b"]
    assert rows_of(staging, "visits") == [{"a": "1", "b": "2"}]


# --- databases, before any connection ---------------------------------------------------------

UNREACHABLE = "postgresql://owner:pw-unseen@127.0.0.1:1/clinic"


def refused_database(staging: Staging, url: str, **kwargs: Any) -> SourceError:
    with pytest.raises(SourceError) as caught:
        stage_database(url, staging=staging, name="visits", **kwargs)
    assert staging.tables() == []
    assert "pw-unseen" not in str(caught.value) + repr(caught.value.to_dict())
    return caught.value


@pytest.mark.parametrize("url", ["not a url", "sqlite:///clinic.db", "oracle://u:pw-unseen@h/db"])
def test_stage_database_unsupported_url_refused(staging: Staging, url: str) -> None:
    assert refused_database(staging, url, table="visits").rule == "import.url"


@pytest.mark.parametrize("arguments", [{}, {"table": "visits", "query": "SELECT 1"}])
def test_stage_database_needs_table_or_query(staging: Staging, arguments: dict[str, str]) -> None:
    error = refused_database(staging, UNREACHABLE, **arguments)

    assert error.rule == "import.table_or_query"
    assert error.file == "postgresql://owner@127.0.0.1:1/clinic"


@pytest.mark.parametrize(
    "query",
    [
        "DELETE FROM visits",
        "UPDATE visits SET cost = 0",
        "SELECT 1; SELECT 2",
        "WITH gone AS (DELETE FROM visits RETURNING *) SELECT * FROM gone",
        "SELECT * INTO copied FROM visits",
        "SELECT * FROM visits FOR UPDATE",
        "EXPLAIN ANALYZE SELECT 1",
        "SELECT FROM WHERE (",
    ],
)
def test_stage_database_non_select_refused_before_connecting(staging: Staging, query: str) -> None:
    # The server is unreachable: had the query been sent, the rule would say so.
    assert refused_database(staging, UNREACHABLE, query=query).rule == "import.not_select"


def test_stage_database_bad_table_name_refused(staging: Staging) -> None:
    with pytest.raises(StagingError, match="not a table name"):
        stage_database(UNREACHABLE, staging=staging, name="Visits", table="visits")
