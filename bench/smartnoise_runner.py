"""Answer the benchmark's queries with SmartNoise SQL; driven by bench/dp_sql.py.

Runs in its own venv (bench/.smartnoise-venv: smartnoise-sql needs opendp<0.15
and pandas<3, which the project's venv does not have), so it imports nothing
of the project. It speaks JSON lines: the first line on stdin is the spec,
answered with the versions and the set-up time; then one command per line,
each answered with one line on stdout, so the caller can time SmartNoise and
its own engine turn by turn under the same load. Progress goes to stderr.

The spec: ``data`` (a folder with one Parquet file per table), ``tables``
(per table: ``max_ids`` and per column SmartNoise's metadata, which the
caller takes from the project's manifest), ``epsilon`` and ``delta`` (the
budget of one query, all of it) and ``configs`` (name to ``censor_dims``).

Commands (``config`` and ``query`` name what to work on):

- ``prepare`` with ``attempts`` (the SQL as written, then adaptations, each
  with a note): runs each until SmartNoise answers one (that run is a warm-up)
  and keeps it; answers with the SQL used, the refusals before it, and the
  epsilon per statistic, or with ``error``.
- ``run``: one timed ``reader.execute(sql)`` (parse, rewrite, SQL on
  SmartNoise's pandas back end, which is an in-memory SQLite database, noise),
  answered with ``seconds`` and the ``answer``.
- ``draws`` with ``n``: that many answers re-noising the exact aggregates of
  the last run (``execute(sql, pre_aggregated=...)``: no SQL, same sample).
- ``quit``.

SmartNoise spends its ``Privacy.epsilon`` on *each* noisy statistic (and on
the distinct-person count it thresholds groups with), so each query gets
``epsilon`` divided by its number of statistics, and spends ``epsilon`` in
all, as our engine does.
"""

from __future__ import annotations

import json
import sys
import time
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import pandas as pd
import snsql
from snsql import Privacy
from snsql.sql.private_reader import PrivateReader


def log(message: str) -> None:
    print(f"  [smartnoise] {message}", file=sys.stderr, flush=True)


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, default=str) + "\n")
    sys.stdout.flush()


def smartnoise_metadata(spec: dict[str, Any], *, censor_dims: bool) -> dict[str, Any]:
    tables = {}
    for name, table in spec["tables"].items():
        entry: dict[str, Any] = {
            "max_ids": table["max_ids"],
            "row_privacy": False,
            "sample_max_ids": True,
            "censor_dims": censor_dims,
            # Our engine floors noisy counts at 0 too.
            "clamp_counts": True,
            "clamp_columns": True,
        }
        entry.update(table["columns"])
        tables[name] = entry
    # Collection "health", empty schema: the tables are named as in our SQL.
    return {"health": {"": tables}}


def as_answer(result: list[Any]) -> dict[str, Any]:
    return {"columns": list(result[0]), "rows": [list(r) for r in result[1:]]}


class Recorder:
    """Wraps the SQL reader's execute to keep the exact aggregates of the last query."""

    def __init__(self, reader: Any) -> None:
        self.execute = reader.execute
        self.last: Any = None
        reader.execute = self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.last = self.execute(*args, **kwargs)
        return self.last


class Session:
    def __init__(self, spec: dict[str, Any], sql_reader: Any, recorder: Recorder) -> None:
        self.spec = spec
        self.sql_reader = sql_reader
        self.recorder = recorder
        self.metadata = {
            name: smartnoise_metadata(spec, censor_dims=censor)
            for name, censor in spec["configs"].items()
        }
        self.prepared: dict[tuple[str, str], dict[str, Any]] = {}

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        key = (command["config"], command["query"])
        if command["cmd"] == "prepare":
            return self.prepare(key, command["attempts"])
        state = self.prepared[key]
        if command["cmd"] == "run":
            started = time.perf_counter()
            result = state["reader"].execute(state["sql"])
            seconds = time.perf_counter() - started
            state["exact"] = self.recorder.last
            return {"seconds": seconds, "answer": as_answer(result)}
        if command["cmd"] == "draws":
            answers = [
                as_answer(state["reader"].execute(state["sql"], pre_aggregated=state["exact"]))
                for _ in range(command["n"])
            ]
            return {"answers": answers}
        raise ValueError(f"unknown command {command['cmd']!r}")

    def prepare(self, key: tuple[str, str], attempts: list[dict[str, str]]) -> dict[str, Any]:
        meta = self.metadata[key[0]]
        delta = self.spec["delta"]
        refused = []
        for attempt in attempts:
            try:
                # At 1.0 per statistic the cost is the number of statistics (basic composition).
                probe = PrivateReader(
                    self.sql_reader, meta, privacy=Privacy(epsilon=1.0, delta=delta)
                )
                statistics_count = probe.get_privacy_cost(attempt["sql"])[0]
                per_stat = self.spec["epsilon"] / statistics_count
                privacy = Privacy(epsilon=per_stat, delta=delta)
                reader = PrivateReader(self.sql_reader, meta, privacy=privacy)
                spent = reader.get_privacy_cost(attempt["sql"])
                started = time.perf_counter()
                reader.execute(attempt["sql"])  # warm-up, and the proof that it runs
                warm_up = time.perf_counter() - started
            except Exception as error:  # any refusal is reported, not raised
                refused.append(
                    {"note": attempt["note"], "error": f"{type(error).__name__}: {error}"}
                )
                continue
            self.prepared[key] = {"reader": reader, "sql": attempt["sql"], "exact": None}
            log(f"{key[0]}: {key[1]}: runs ({warm_up:.2f} s warm-up)")
            return {
                "sql": attempt["sql"],
                "note": attempt["note"],
                "refused": refused,
                "epsilon_per_statistic": per_stat,
                "statistics": round(statistics_count),
                "spent": [float(spent[0]), float(spent[1])],
            }
        log(f"{key[0]}: {key[1]}: refused")
        return {"error": refused[-1]["error"] if refused else "no attempt", "refused": refused}


def main() -> None:
    spec = json.loads(sys.stdin.readline())
    folder = Path(spec["data"])
    started = time.perf_counter()
    frames = {}
    for name, table in spec["tables"].items():
        frames[name] = pd.read_parquet(folder / f"{name}.parquet", columns=list(table["columns"]))
    loaded = time.perf_counter() - started
    log(f"read {', '.join(f'{n} {len(f):,}' for n, f in frames.items())} rows in {loaded:.1f} s")

    # One SQLite copy of the data, shared by every PrivateReader.
    started = time.perf_counter()
    base = snsql.from_connection(
        frames,
        privacy=Privacy(epsilon=spec["epsilon"], delta=spec["delta"]),
        metadata=smartnoise_metadata(spec, censor_dims=True),
    )
    setup = time.perf_counter() - started
    log(f"loaded into SmartNoise's pandas back end (SQLite) in {setup:.1f} s")
    session = Session(spec, base.reader, Recorder(base.reader))
    send(
        {
            "versions": {
                p: package_metadata.version(p) for p in ("smartnoise-sql", "opendp", "pandas")
            },
            "python": sys.version.split()[0],
            "setup_s": setup,
        }
    )
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "quit":
            break
        try:
            send(session.handle(command))
        except Exception as error:  # the caller reports it; the session goes on
            send({"error": f"{type(error).__name__}: {error}"})


if __name__ == "__main__":
    main()
