"""What a dataset must hold before it is stored: promises the DP planner relies on."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from datasets.errors import DatasetError
from datasets.manifest import Manifest


class DatasetInvalid(DatasetError):
    """The tables break a promise of their manifest (no value from the data is named)."""


def check_one_row_per_person(tables: Mapping[str, pd.DataFrame], manifest: Manifest) -> None:
    """A table whose bound is one row per person must hold one row per person.

    The DP planner skips bounding on such tables, so a duplicate would let one
    person count twice: refuse to store it.
    """
    unit = manifest.privacy_unit
    for table in manifest.tables:
        frame = tables.get(table.name)
        if table.max_rows_per_person != 1 or frame is None or unit not in frame.columns:
            continue
        duplicates = int(frame[unit].duplicated().sum())
        if duplicates:
            raise DatasetInvalid(
                f"{table.name}: {duplicates} rows repeat a {unit} already seen; the manifest "
                f"bounds this table to one row per person."
            )
