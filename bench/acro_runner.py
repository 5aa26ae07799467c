"""Ask ACRO for its decision on every cell of the comparison's tables; driven by
bench/acro_compare.py.

Runs in its own venv (bench/.acro-venv: acro 1.0.2 pins its own pandas and
statsmodels), so it imports nothing of the project. It reads one JSON spec on
stdin and writes one JSON answer on stdout; progress goes to stderr.

The spec: ``tables``, each with ``name``, ``data`` (a Parquet file of one row
per person and cell, which the caller made), ``index`` and ``columns`` (the
key columns of the crosstab's rows and columns), ``values`` and ``aggfunc``
(None for a frequency table) and ``risk`` (ACRO risk-appetite settings that
differ from its defaults, such as ``safe_nk_k``).

The answer, per table: every cell of ACRO's crosstab (``pandas.crosstab`` with
``dropna=False``: every combination of the keys), with its keys, whether ACRO
suppresses it and the checks that failed (``Record.sdc["cells"]``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import warnings
from importlib import metadata
from typing import Any

import pandas as pd
from acro import ACRO

# ACRO's checks that say a cell is disclosive; PresenceOfLinkedTableCheck and
# RequiredZeroCheck only tell the output checker something, they never suppress.
SUPPRESSING = ("MinimumThresholdCheck", "PresenceOfZeroCheck", "NKCheck", "PPercentCheck")


def log(message: str) -> None:
    print(f"  [acro] {message}", file=sys.stderr, flush=True)


def decide(acro: ACRO, table: dict[str, Any]) -> list[dict[str, Any]]:
    data = pd.read_parquet(table["data"])
    risk = acro.sdc_checks.risk_appetite
    saved = dict(risk)
    risk.update(table.get("risk") or {})
    try:
        index = [data[c] for c in table["index"]]
        columns = [data[c] for c in table["columns"]]
        values = data[table["values"]] if table.get("values") else None
        with contextlib.redirect_stdout(sys.stderr):  # ACRO prints its outcome table
            acro.crosstab(index, columns, values=values, aggfunc=table.get("aggfunc"))
    finally:
        risk.clear()
        risk.update(saved)
    record = list(acro.results.results.values())[-1]
    # The crosstab ACRO checked, unredacted, to name each cell by its keys.
    kwargs: dict[str, Any] = {"dropna": False}
    if values is not None:
        kwargs.update(values=values, aggfunc=table["aggfunc"])
    plain = pd.crosstab(index, columns, **kwargs)
    failed: dict[tuple[int, int], list[str]] = {}
    for check, cells in record.sdc["cells"].items():
        if check in SUPPRESSING:
            for row, column in cells:
                failed.setdefault((row, column), []).append(check)
    answer = []
    for i, row_key in enumerate(plain.index):
        for j, column_key in enumerate(plain.columns):
            keys = [*_parts(row_key), *_parts(column_key)]
            checks = sorted(failed.get((i, j), []), key=SUPPRESSING.index)
            answer.append({"keys": keys, "suppressed": bool(checks), "checks": checks})
    return answer


def _parts(key: Any) -> list[Any]:
    parts = list(key) if isinstance(key, tuple) else [key]
    return [p.item() if hasattr(p, "item") else p for p in parts]


def main() -> None:
    logging.disable(logging.INFO)
    warnings.simplefilter("ignore")
    spec = json.loads(sys.stdin.read())
    acro = ACRO(suppress=False)
    tables = {}
    for table in spec["tables"]:
        log(table["name"])
        tables[table["name"]] = decide(acro, table)
    versions = {p: metadata.version(p) for p in ("acro", "pandas", "numpy")}
    json.dump({"versions": versions, "tables": tables}, sys.stdout, default=str)


if __name__ == "__main__":
    main()
