"""A Parquet file streamed into a staged table, row group by row group, types kept."""

from __future__ import annotations

from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from datasets.errors import SourceError
from datasets.importers.names import column_names
from datasets.importers.staged import StagedTable, staged_table
from datasets.staging import Staging

BATCH_ROWS = 65_536


def stage_parquet(handle: BinaryIO, *, filename: str, staging: Staging, table: str) -> StagedTable:
    """Stage the Parquet file in ``handle`` (seekable: its footer is read first) as ``table``."""
    try:
        parquet = pq.ParquetFile(handle)
    except (pa.ArrowException, OSError) as error:
        raise _unreadable(filename, error) from None
    with parquet:
        # The writer's pandas index and other metadata mean nothing once staged.
        schema = parquet.schema_arrow.remove_metadata()
        column_names(schema.names, file=filename)  # refuses two columns of one name
        if parquet.metadata.num_rows == 0:
            raise SourceError("import.empty", "the file has no rows", file=filename)
        try:
            with staging.table_writer(table, schema) as writer:
                for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
                    writer.write(batch)
                rows = writer.rows
        except (pa.ArrowException, OSError) as error:
            raise _unreadable(filename, error) from None
    return staged_table(table, schema, rows, {"file": filename, "format": "parquet"})


def _unreadable(filename: str, error: Exception) -> SourceError:
    return SourceError(
        "import.format",
        f"the file cannot be read as Parquet ({type(error).__name__})",
        file=filename,
    )
