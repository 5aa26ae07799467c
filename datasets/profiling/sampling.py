"""A uniform sample of a column's values, drawn while its rows stream past.

Every row gets a random key; a column's sample is its ``size`` non-null values of
smallest key (bottom-k sampling, equivalent to a reservoir sample). The keys are
drawn per row, in row order, from one seeded generator for the whole table, so
the sample is the same however the rows are cut into batches, and a profile of
the same table is the same twice. Memory is two chunks' worth of ``size`` values.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

SEED = 13


def row_keys(rows: int, generator: np.random.Generator) -> npt.NDArray[np.float64]:
    """The next ``rows`` rows' keys: uniform in [0, 1)."""
    return generator.random(rows)


class Sample:
    """Up to ``size`` non-null values of one column, uniformly drawn."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("a sample's size must not be negative")
        self.size = size
        self._keys: list[npt.NDArray[np.float64]] = []
        self._values: list[pa.Array] = []
        self._held = 0
        # Keys at or above the largest kept key cannot enter the sample any more.
        self._threshold = 1.0

    def add(self, column: pa.Array, keys: npt.NDArray[np.float64]) -> None:
        """Offer a batch's values, with the keys of its rows."""
        if self.size == 0:
            return
        chosen = keys < self._threshold
        if column.null_count:
            chosen &= np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        index = np.flatnonzero(chosen)
        if not len(index):
            return
        self._keys.append(keys[index])
        self._values.append(column.take(pa.array(index)))
        self._held += len(index)
        if self._held >= 2 * self.size:
            self._compact()

    def values(self) -> pa.Array | None:
        """The sample in key order (a random order, the same every time); None if empty."""
        if not self._values:
            return None
        self._compact()
        order = np.argsort(self._keys[0], kind="stable")
        return self._values[0].take(pa.array(order))

    def _compact(self) -> None:
        keys = np.concatenate(self._keys)
        values = pa.concat_arrays(self._values)
        if len(keys) > self.size:
            keep = np.argpartition(keys, self.size - 1)[: self.size]
            keys = keys[keep]
            values = values.take(pa.array(keep))
            self._threshold = float(keys.max())
        self._keys = [keys]
        self._values = [values]
        self._held = len(keys)
