"""Views kept in a worker's memory for the jobs that share them.

Building a view (decrypting the tables, pseudonymising keys, filtering by
consent) and writing it as Parquet is most of a small job's time in the
worker. Jobs under the same grant, on the same dataset version, with the
same persons consenting and the same tables and columns get the same view,
so each worker process keeps the Parquet bytes of its last few views in
memory, never on disk: a job's folder gets its own files written from them,
deleted after the job as before. Any change to the key's parts (a new
dataset version, a consent withdrawn, another grant) is another view.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from datasets.views import ViewError

# Views a worker process keeps: a few grants' SQL and Python views at 20k persons
# take a few MB each; 16 keep 4 analysts' mixed jobs from building theirs again.
CAPACITY = 16


def view_key(
    *,
    dataset: str,
    version: str,
    grant_id: str,
    tables: Iterable[str],
    columns_policy: str,
    consenting: Collection[str] | None,
) -> str:
    """What makes two jobs' views the same; consenting persons enter as a digest."""
    digest = hashlib.sha256()
    for part in (dataset, version, grant_id, ",".join(tables), columns_policy):
        digest.update(part.encode() + b"\0")
    if consenting is None:
        digest.update(b"no consent filter")
    else:
        for person in sorted(consenting):
            digest.update(person.encode() + b"\n")
    return digest.hexdigest()


class ViewCache:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._views: OrderedDict[str, dict[str, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def write(
        self, key: str, build: Callable[[], Mapping[str, pd.DataFrame]], folder: Path
    ) -> bool:
        """Write the view for ``key`` into ``folder``; True if it came from memory."""
        with self._lock:
            files = self._views.get(key)
            hit = files is not None
            if files is not None:
                self._views.move_to_end(key)
                self.hits += 1
        if files is None:
            files = {name: _parquet(name, frame) for name, frame in build().items()}
            with self._lock:
                self.misses += 1
                self._views[key] = files
                while len(self._views) > self.capacity:
                    self._views.popitem(last=False)
        folder.mkdir(parents=True, exist_ok=True, mode=0o755)
        for name, data in files.items():
            (folder / f"{name}.parquet").write_bytes(data)
        return hit

    def clear(self) -> None:
        with self._lock:
            self._views.clear()


def _parquet(name: str, frame: pd.DataFrame) -> bytes:
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowException, ValueError, TypeError) as error:
        raise ViewError(f"table {name!r} cannot be written as Parquet") from error
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()
