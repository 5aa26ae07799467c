"""Which reader a file needs: by its first bytes where they tell, else by its name."""

from __future__ import annotations

from pathlib import PurePath
from typing import Literal

from datasets.errors import SourceError

FileFormat = Literal["csv", "xlsx", "parquet"]

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
ZIP_MAGIC = b"PK\x03\x04"
PARQUET_MAGIC = b"PAR1"
# Excel 97-2003 (.xls) and other OLE compound files.
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def file_format(filename: str, head: bytes) -> FileFormat:
    """The format of a file named ``filename`` whose first bytes are ``head``.

    The bytes win over the name: a workbook saved as ``data.csv`` is still read as
    a workbook, and a ``.xlsx`` that is not a zip is refused rather than misread.
    """
    suffix = PurePath(filename).suffix.lower()
    if not head:
        raise SourceError("import.empty", "the file is empty", file=filename)
    if head.startswith(ZIP_MAGIC):
        return "xlsx"
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    if head.startswith(OLE_MAGIC):
        raise SourceError(
            "import.format",
            "Excel 97-2003 workbooks (.xls) are not read: save it as .xlsx",
            file=filename,
        )
    if suffix in (".xlsx", ".parquet"):
        raise SourceError(
            "import.format", f"the file is named {suffix} but its content is not", file=filename
        )
    if suffix in CSV_SUFFIXES:
        return "csv"
    raise SourceError(
        "import.format",
        "the format is not known: give a .csv, .tsv, .txt, .xlsx or .parquet file",
        file=filename,
    )
