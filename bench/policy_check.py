"""Time of the SQL policy check over many varied queries.

Generates N queries (default 2,000) from a seeded mix of shapes — plain
aggregates, joins, CTEs, derived tables, UNIONs, semi-joins, CASE counts, and
rejected ones (negative-list columns, measurements as group keys, row-level
outputs, table functions) — and times ``check_sql`` on each with the owner's
policy loaded. Prints median, p90, p99 and max in milliseconds, and how many
were accepted.

    .venv/bin/python bench/policy_check.py [--queries N] [--seed S] [--runs R]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.health_manifest import HEALTH
from policies.policy_file import load_policy
from policies.sql_check import check_sql

DIMENSIONS = {
    "visits": ["department", "hospital", "icd10", "diagnosis"],
    "patients": ["sex", "district", "birth_year"],
    "labs": ["test_code", "unit"],
}
MEASURES = {"visits": ["cost", "length_of_stay"], "labs": ["value"], "patients": []}
AGGREGATES = ["COUNT(*)", "AVG({m})", "SUM({m})", "STDDEV({m})", "COUNT(DISTINCT person_id)"]
FILTERS = {
    "visits": [
        "cost > {n}",
        "length_of_stay >= {k}",
        "department = '内科'",
        "visit_date >= '2022-01-01'",
        "icd10 IN ('I10', 'E11')",
    ],
    "patients": ["sex = '女'", "district = '武进区'", "birth_year < {y}"],
    "labs": ["value > {k}", "test_code = 'GLU'", "taken_at < '2023-01-01'"],
}
BAD = [
    "SELECT name, COUNT(*) FROM patients GROUP BY name",
    "SELECT COUNT(*) FROM patients WHERE id_card LIKE '3204%'",
    "SELECT cost, COUNT(*) FROM visits GROUP BY cost",
    "SELECT person_id, SUM(cost) FROM visits GROUP BY person_id",
    "SELECT * FROM visits",
    "SELECT COUNT(*) FROM read_csv('/etc/passwd')",
    "WITH t AS (SELECT phone FROM patients) SELECT COUNT(*) FROM t",
    "SELECT c, COUNT(*) FROM (SELECT cost AS c FROM visits) t GROUP BY c",
    "SELECT MAX(cost) FROM visits",
    "SELECT department, COUNT(*) OVER () FROM visits",
]


def _aggregate(rng: random.Random, table: str) -> str:
    measures = MEASURES[table]
    choices = AGGREGATES if measures else ["COUNT(*)", "COUNT(DISTINCT person_id)"]
    return rng.choice(choices).format(m=rng.choice(measures) if measures else "")


def _filter(rng: random.Random, table: str) -> str:
    return rng.choice(FILTERS[table]).format(
        n=rng.randint(100, 5000), k=rng.randint(1, 20), y=rng.randint(1940, 2010)
    )


def query(rng: random.Random) -> str:
    shape = rng.randrange(9)
    table = rng.choice(list(DIMENSIONS))
    dim = rng.choice(DIMENSIONS[table])
    agg = _aggregate(rng, table)
    where = f" WHERE {_filter(rng, table)}" if rng.random() < 0.6 else ""
    if shape == 0:
        return f"SELECT {dim}, {agg} AS a FROM {table}{where} GROUP BY {dim}"
    if shape == 1:
        return (
            f"SELECT p.district, v.department, COUNT(*) AS n, AVG(v.cost) AS c FROM visits v "
            f"JOIN patients p ON v.person_id = p.person_id WHERE v.cost > {rng.randint(1, 900)} "
            f"GROUP BY p.district, v.department ORDER BY n DESC LIMIT {rng.randint(5, 50)}"
        )
    if shape == 2:
        return (
            f"WITH t AS (SELECT {dim}, person_id FROM {table}{where}) "
            f"SELECT {dim}, COUNT(DISTINCT person_id) AS persons FROM t GROUP BY {dim}"
        )
    if shape == 3:
        return f"SELECT x.{dim}, COUNT(*) FROM (SELECT {dim} FROM {table}{where}) AS x GROUP BY 1"
    if shape == 4:
        other = rng.choice(DIMENSIONS[table])
        return (
            f"SELECT {dim} AS k, COUNT(*) AS n FROM {table} GROUP BY {dim} UNION ALL "
            f"SELECT {other}, COUNT(*) FROM {table} GROUP BY {other}"
        )
    if shape == 5:
        return (
            "SELECT department, COUNT(*) FROM visits WHERE person_id IN (SELECT person_id FROM "
            f"patients WHERE {_filter(rng, 'patients')}) GROUP BY department"
        )
    if shape == 6:
        code = rng.choice(["C34", "I10", "E11", "J18"])
        return (
            f"SELECT hospital, SUM(CASE WHEN icd10 = '{code}' THEN 1 ELSE 0 END) AS n, "
            "AVG(length_of_stay) AS los FROM visits GROUP BY hospital"
        )
    if shape == 7:
        return (
            "SELECT l.test_code, p.sex, AVG(l.value) FROM labs l JOIN visits v ON l.visit_id = "
            "v.visit_id JOIN patients p ON p.person_id = v.person_id "
            "WHERE v.department = '内分泌科' GROUP BY l.test_code, p.sex"
        )
    return rng.choice(BAD)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runs", type=int, default=3, help="timed passes; the median is kept")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    queries = [query(rng) for _ in range(args.queries)]
    policy = load_policy(HEALTH)
    for sql in queries[:50]:  # warm-up: imports and caches
        check_sql(sql, HEALTH, mode="masked", policy=policy)
    per_query: list[list[float]] = [[] for _ in queries]
    accepted = 0
    for run in range(args.runs):
        for index, sql in enumerate(queries):
            started = time.perf_counter()
            checked = check_sql(sql, HEALTH, mode="masked", policy=policy)
            per_query[index].append((time.perf_counter() - started) * 1000)
            accepted += checked.allowed if run == 0 else 0
    times = sorted(statistics.median(t) for t in per_query)
    q = statistics.quantiles(times, n=100)
    print(
        f"queries: {len(queries)} distinct shapes x values, {accepted} accepted, "
        f"{len(queries) - accepted} rejected; median of {args.runs} runs per query"
    )
    print(
        f"check time ms: median {statistics.median(times):.2f}  p90 {q[89]:.2f}  "
        f"p99 {q[98]:.2f}  max {times[-1]:.2f}"
    )


if __name__ == "__main__":
    main()
