"""Owners' imports end to end: stage, profile and classify a visits-like CSV (and a
PostgreSQL table), rows per second and peak memory, against plain DuckDB as the floor.

Usage::

    .venv/bin/python bench/import.py [--rows 1000000,10000000] [--runs 3] [--postgres-rows 1000000]

Each measured step runs in a child process of its own, so its peak resident memory
(``ru_maxrss``) is its own. For every size:

- **ours**: ``stage_file`` (the CSV streamed into the encrypted staging: every column as
  text, AES-256-GCM in 1 MiB chunks) + ``profile_table`` over the staged reader +
  ``propose_columns`` — what ``POST /imports/<id>/files`` and ``/profile`` do;
- **floor**: DuckDB's ``read_csv`` of the same file (all columns as text) written to a
  Parquet file, with no encryption, profile or detection: the fastest plain
  CSV-to-Parquet on this machine.

The CSV has 12 columns: visit and person ids, a resident ID, a mobile number, a
personal name, an address, hospital, department, ICD-10 code, visit date, cost and
length of stay, in UTF-8. Files are made once under ``bench/.data/`` (about 1.3 GB
at 10M rows). It prints medians of ``--runs`` runs; goal: at least 200,000 rows/s end
to end and peak memory under 1 GiB at 10M rows, whatever the size.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

BENCH = Path(__file__).resolve().parent
DATA = BENCH / ".data"
GOAL_ROWS_PER_S = 200_000
GOAL_PEAK_MIB = 1024
SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN = list("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国红梅玉兰志强海燕")
HOSPITALS = ["常州市第一人民医院", "常州市第二人民医院", "常州市中医医院", "溧阳市人民医院"]
DEPARTMENTS = ["内科", "外科", "儿科", "妇产科", "心内科", "骨科", "急诊科"]
ICD10 = ["I10", "E11", "J18", "K29", "M54", "S72", "I63", "N39"]
STREETS = ["延陵西路", "和平北路", "晋陵中路", "通江南路", "龙城大道", "长江路"]
DISTRICTS = ["天宁区", "钟楼区", "新北区", "武进区"]
WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])


def resident_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Valid 18-character resident IDs: region 3204xx, a birth date, a sequence, the check."""
    region = 320400 + rng.choice([2, 4, 11, 12, 81, 82], n)
    year = rng.integers(1940, 2015, n)
    month = rng.integers(1, 13, n)
    day = rng.integers(1, 29, n)
    sequence = rng.integers(0, 1000, n)
    body = region * 10**11 + year * 10**7 + month * 10**5 + day * 10**3 + sequence
    digits = (body[:, None] // 10 ** np.arange(16, -1, -1)) % 10
    check = np.array(list("10X98765432"))[(digits * WEIGHTS).sum(axis=1) % 11]
    return np.char.add(body.astype(str), check)


def visits_table(rng: np.random.Generator, n: int, start: int) -> pa.Table:
    persons = rng.integers(0, max(n // 5, 1), n)
    mobiles = np.char.add(
        rng.choice(["138", "139", "151", "186", "177"], n),
        rng.integers(10**7, 10**8, n).astype(str),
    )
    names = np.char.add(
        np.array(SURNAMES)[rng.integers(0, len(SURNAMES), n)],
        np.array(GIVEN)[rng.integers(0, len(GIVEN), n)],
    )
    addresses = np.char.add(
        np.char.add(
            np.char.add("江苏省常州市", np.array(DISTRICTS)[rng.integers(0, 4, n)]),
            np.array(STREETS)[rng.integers(0, 6, n)],
        ),
        np.char.add(rng.integers(1, 400, n).astype(str), "号"),
    )
    days = (np.datetime64("2021-01-01") + rng.integers(0, 730, n)).astype(str)
    return pa.table(
        {
            "visit_id": np.arange(start, start + n),
            "person_id": persons,
            "id_card": resident_ids(rng, n),
            "phone": mobiles,
            "name": names,
            "address": addresses,
            "hospital": np.array(HOSPITALS)[rng.integers(0, len(HOSPITALS), n)],
            "department": np.array(DEPARTMENTS)[rng.integers(0, len(DEPARTMENTS), n)],
            "icd10": np.array(ICD10)[rng.integers(0, len(ICD10), n)],
            "visit_date": days,
            "cost": np.round(rng.lognormal(6.0, 0.8, n), 2),
            "length_of_stay": rng.integers(0, 30, n),
        }
    )


def ensure_csv(rows: int) -> Path:
    path = DATA / f"visits-{rows}.csv"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    print(f"writing {path.name} ({rows:,} rows) ...", flush=True)
    rng = np.random.default_rng(rows)
    partial = path.with_suffix(".partial")
    with pacsv.CSVWriter(partial, visits_table(rng, 10, 0).schema) as writer:
        done = 0
        while done < rows:
            chunk = min(500_000, rows - done)
            writer.write_table(visits_table(rng, chunk, done))
            done += chunk
    partial.rename(path)
    return path


# --- the measured steps, each run in a child process ----------------------------------------


def ours(source: str) -> dict[str, object]:
    import secrets

    from datasets.importers import stage_file
    from datasets.profiling.profiler import profile_table
    from datasets.profiling.proposals import propose_columns
    from datasets.staging import Staging

    folder = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        started = time.perf_counter()
        staging = Staging(folder / "staging", secrets.token_bytes(32))
        if source.startswith("postgresql"):
            from datasets.importers import stage_database

            (staged,) = [
                stage_database(source, staging=staging, name="visits", table="bench_visits")
            ]
        else:
            (staged,) = stage_file(Path(source), filename=Path(source).name, staging=staging)
        staged_at = time.perf_counter()
        profile = profile_table(staging.reader(staged.name), schema=staging.schema(staged.name))
        proposals = propose_columns(profile, table=staged.name)
        done = time.perf_counter()
        classes = {p.column: p.cls.value for p in proposals}
        return {
            "rows": staged.rows,
            "stage_s": staged_at - started,
            "profile_s": done - staged_at,
            "total_s": done - started,
            "classes": classes,
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def floor(source: str) -> dict[str, object]:
    import duckdb

    folder = Path(tempfile.mkdtemp(prefix="bench-floor-"))
    try:
        started = time.perf_counter()
        connection = duckdb.connect()
        relation = connection.read_csv(source, all_varchar=True)
        relation.write_parquet(str(folder / "out.parquet"))
        rows = connection.sql(f"SELECT COUNT(*) FROM '{folder / 'out.parquet'}'").fetchall()
        return {"rows": rows[0][0], "total_s": time.perf_counter() - started}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def child(step: str, source: str) -> dict[str, object]:
    """Run one step in a fresh process; its figures and its peak memory (MiB)."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", step, source],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        sys.exit(f"{step} failed:\n{done.stderr[-3000:]}")
    figures: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="1000000,10000000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--child", nargs=2, metavar=("STEP", "SOURCE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        step, source = args.child
        figures = ours(source) if step == "ours" else floor(source)
        figures["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(figures, ensure_ascii=False))
        return
    missed = False
    for rows in (int(r) for r in args.rows.split(",") if int(r) > 0):
        path = ensure_csv(rows)
        size_mb = path.stat().st_size / 1e6
        print(f"\n## CSV, {rows:,} rows, {size_mb:,.0f} MB")
        missed |= report(str(path), args.runs, with_floor=True)
    if args.postgres_rows:
        url = load_postgres(args.postgres_url, args.postgres_rows)
        if url:
            print(f"\n## PostgreSQL table, {args.postgres_rows:,} rows")
            missed |= report(url, args.runs, with_floor=False)
    if missed:
        sys.exit(1)


def report(source: str, runs: int, *, with_floor: bool) -> bool:
    measured = [child("ours", source) for _ in range(runs)]
    rows = int(measured[0]["rows"])  # type: ignore[call-overload]
    total = statistics.median(float(m["total_s"]) for m in measured)  # type: ignore[arg-type]
    stage = statistics.median(float(m["stage_s"]) for m in measured)  # type: ignore[arg-type]
    profile = statistics.median(float(m["profile_s"]) for m in measured)  # type: ignore[arg-type]
    peak = max(float(m["peak_mib"]) for m in measured)  # type: ignore[arg-type]
    rate = rows / total
    print(
        f"  ours   {rate:>10,.0f} rows/s end to end (stage {stage:.1f} s, profile+classify "
        f"{profile:.1f} s, total {total:.1f} s; median of {runs}), peak {peak:,.0f} MiB"
    )
    classes = measured[0]["classes"]
    print(f"         proposed: {', '.join(f'{c}={k}' for c, k in classes.items())}")  # type: ignore[attr-defined]
    if with_floor:
        floors = [child("floor", source) for _ in range(runs)]
        floor_total = statistics.median(float(f["total_s"]) for f in floors)  # type: ignore[arg-type]
        floor_peak = max(float(f["peak_mib"]) for f in floors)  # type: ignore[arg-type]
        print(
            f"  floor  {rows / floor_total:>10,.0f} rows/s (duckdb read_csv → Parquet, "
            f"{floor_total:.1f} s), peak {floor_peak:,.0f} MiB; ours takes "
            f"{total / floor_total:.2f}× its time"
        )
    ok = rate >= GOAL_ROWS_PER_S and peak < GOAL_PEAK_MIB
    print(
        f"  goal (≥ {GOAL_ROWS_PER_S:,} rows/s, < {GOAL_PEAK_MIB} MiB): {'met' if ok else 'MISSED'}"
    )
    return not ok


def load_postgres(url: str, rows: int) -> str | None:
    """The bench table in the test database (made once); None if PostgreSQL is absent."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    try:
        engine = create_engine(url)
        with engine.begin() as connection:
            have = connection.execute(
                text("SELECT to_regclass('bench_visits') IS NOT NULL")
            ).scalar()
            count = (
                connection.execute(text("SELECT COUNT(*) FROM bench_visits")).scalar()
                if have
                else 0
            )
            if count != rows:
                print(f"loading {rows:,} rows into PostgreSQL bench_visits ...", flush=True)
                connection.execute(text("DROP TABLE IF EXISTS bench_visits"))
                connection.execute(
                    text(
                        "CREATE TABLE bench_visits (visit_id bigint, person_id bigint, "
                        "id_card text, phone text, name text, address text, hospital text, "
                        "department text, "
                        "icd10 text, visit_date date, cost numeric(10,2), length_of_stay int)"
                    )
                )
                raw = connection.connection.driver_connection
                path = ensure_csv(rows)
                with raw.cursor() as cursor, path.open("rb") as handle:  # type: ignore[union-attr]
                    with cursor.copy(
                        "COPY bench_visits FROM STDIN WITH (FORMAT csv, HEADER true)"
                    ) as copy:
                        while chunk := handle.read(1 << 20):
                            copy.write(chunk)
        engine.dispose()
    except OperationalError as error:
        print(f"(PostgreSQL not reachable: {type(error).__name__}; skipped)")
        return None
    return url


if __name__ == "__main__":
    main()
