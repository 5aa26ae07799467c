"""The SQL checker: what it accepts, what it rejects, and that it says why and where."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from datasets.health_manifest import HEALTH
from policies.sql_check import AGGREGATES, check_sql

AGGREGATE_CLASSES = tuple(AGGREGATES)

FORBIDDEN = [c.name for t in HEALTH.tables for c in t.columns if c.forbidden]


def rules(sql: str, mode: str = "masked") -> list[str]:
    return [f.rule for f in check_sql(sql, HEALTH, mode=mode).decision.findings]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT sex, COUNT(*) AS n FROM patients GROUP BY sex",
        "select district, avg(cost) from visits v join patients p on v.person_id = p.person_id "
        "group by district having count(*) > 20 order by 2 desc limit 5",
        "SELECT COUNT(*) FROM visits WHERE cost > 1000 AND department IN ('内科', '外科')",
        "SELECT year(visit_date) AS y, COUNT(DISTINCT person_id) FROM visits GROUP BY y",
        'SELECT "Department", SUM(length_of_stay) FROM "VISITS" GROUP BY 1 -- a comment',
        "SELECT test_code, AVG(value), STDDEV(value) FROM labs GROUP BY test_code",
        "SELECT birth_year - birth_year % 5 AS band, COUNT(*) FROM patients GROUP BY band",
    ],
)
def test_check_sql_accepts_aggregates(sql: str) -> None:
    checked = check_sql(sql, HEALTH, mode="masked")
    assert checked.allowed, checked.decision.findings


@pytest.mark.parametrize(
    ("sql", "rule"),
    [
        ("SELECT name, COUNT(*) FROM patients GROUP BY name", "column.forbidden"),
        ("SELECT COUNT(*) FROM patients WHERE id_card LIKE '3204%'", "column.forbidden"),
        ("SELECT COUNT(*) FROM patients p ORDER BY p.phone", "column.forbidden"),
        ('SELECT COUNT(*) FROM patients WHERE "ADDRESS" IS NOT NULL', "column.forbidden"),
        ("SELECT * FROM visits", "output.not_aggregated"),
        ("SELECT cost FROM visits", "output.no_aggregate"),
        (
            "SELECT department, cost, COUNT(*) FROM visits GROUP BY department",
            "output.not_aggregated",
        ),
        ("SELECT person_id, COUNT(*) FROM visits GROUP BY person_id", "output.identifier_group"),
        ("SELECT visit_id, SUM(cost) FROM visits GROUP BY 1", "output.identifier_group"),
        ("SELECT birth_date, COUNT(*) FROM patients GROUP BY 1", "column.generalised"),
        ("SELECT COUNT(*) FROM read_csv('/etc/passwd')", "sql.table_function"),
        ("SELECT COUNT(*) FROM '/input/patients.parquet'", "sql.unknown_table"),
        ("SELECT COUNT(*) FROM main.visits", "sql.unknown_table"),
        ("SELECT COUNT(*) FROM secrets", "sql.unknown_table"),
        ("PRAGMA database_list", "sql.statement_not_allowed"),
        ("ATTACH 'x.db'", "sql.statement_not_allowed"),
        ("COPY visits TO '/tmp/x.csv'", "sql.statement_not_allowed"),
        ("SET enable_external_access = true", "sql.statement_not_allowed"),
        ("INSTALL httpfs", "sql.statement_not_allowed"),
        ("LOAD httpfs", "sql.statement_not_allowed"),
        ("SELECT 1; SELECT 2", "sql.single_statement"),
        ("SELECT getenv('HOME'), COUNT(*) FROM visits", "sql.function_not_allowed"),
        ("SELECT COUNT(*) OVER () FROM visits", "sql.window_not_allowed"),
        ("SELECT MAX(cost) FROM visits", "masked.min_max"),
        (
            "SELECT COUNT(*) FROM visits v JOIN labs l ON v.visit_id = l.visit_id "
            "WHERE person_id = 'x'",
            "column.ambiguous",
        ),
        ("SELECT nonsense, COUNT(*) FROM visits GROUP BY 1", "column.unknown"),
        ("SELEC COUNT(*) FROM visits", "sql.parse"),
    ],
)
def test_check_sql_rejects_with_rule(sql: str, rule: str) -> None:
    assert rule in rules(sql)


def test_check_sql_finding_names_column_and_location() -> None:
    (finding, *_) = check_sql(
        "SELECT COUNT(*)\nFROM patients\nWHERE id_card = '1'", HEALTH, mode="masked"
    ).decision.findings
    assert "id_card" in finding.message
    assert finding.location == "line 3, column 7"


def test_check_sql_reports_every_finding_at_once() -> None:
    found = rules("SELECT name, phone, MAX(cost) FROM patients p JOIN visits v ON 1=1")
    assert found.count("column.forbidden") == 2
    assert "masked.min_max" in found


def test_check_sql_rejects_overlong_query() -> None:
    assert rules("SELECT COUNT(*) FROM visits WHERE " + " OR ".join(["cost > 1"] * 3000)) == [
        "sql.too_long"
    ]


# Property: whatever the query looks like around it, touching a negative-list
# column anywhere means rejection.
PLACES = [
    "SELECT {c}, COUNT(*) FROM patients GROUP BY {c}",
    "SELECT COUNT(*) FROM patients WHERE {c} IS NOT NULL",
    "SELECT COUNT(*) FROM patients p WHERE p.{c} LIKE '1%'",
    "SELECT district, COUNT(DISTINCT {c}) FROM patients GROUP BY district",
    "SELECT sex, SUM(length({c})) FROM patients GROUP BY sex",
    "SELECT COUNT(*) FROM patients GROUP BY district HAVING MIN({c}) > ''",
    "SELECT COUNT(*) FROM patients ORDER BY {c}",
    "SELECT COUNT(*) FROM visits v JOIN patients p ON v.person_id = p.person_id AND p.{c} = 'x'",
    "SELECT CASE WHEN {c} = 'a' THEN 1 END AS x, COUNT(*) FROM patients GROUP BY 1",
    "SELECT COUNT(*) FROM (SELECT {c} FROM patients)",
]


@settings(max_examples=400, deadline=None)
@given(
    column=st.sampled_from(FORBIDDEN),
    place=st.sampled_from(PLACES),
    quoting=st.sampled_from(["{}", '"{}"', "{}"]),
    casing=st.sampled_from([str.lower, str.upper, str.title]),
    mode=st.sampled_from(["masked", "dp"]),
)
def test_check_sql_never_accepts_a_forbidden_column(
    column: str, place: str, quoting: str, casing: object, mode: str
) -> None:
    reference = quoting.format(casing(column))  # type: ignore[operator]
    sql = place.format(c=reference)
    assert not check_sql(sql, HEALTH, mode=mode).allowed  # type: ignore[arg-type]


GROUPABLE = ["sex", "district", "department", "hospital", "icd10", "test_code"]
AGGS = ["COUNT(*)", "SUM(cost)", "AVG(cost)", "COUNT(length_of_stay)", "AVG(value)"]


@settings(max_examples=300, deadline=None)
@given(
    keys=st.lists(st.sampled_from(GROUPABLE), max_size=2, unique=True),
    aggs=st.lists(st.sampled_from(AGGS), min_size=1, max_size=3),
    extra=st.sampled_from(["", "cost", "person_id", "visit_date", "value"]),
)
def test_check_sql_accepted_outputs_are_aggregates_or_keys(
    keys: list[str], aggs: list[str], extra: str
) -> None:
    projections = keys + aggs + ([extra] if extra else [])
    sql = (
        f"SELECT {', '.join(projections)} FROM visits v JOIN labs l ON v.visit_id = l.visit_id "
        f"JOIN patients p ON p.person_id = v.person_id"
        + (f" GROUP BY {', '.join(keys)}" if keys else "")
    )
    checked = check_sql(sql, HEALTH, mode="masked")
    if checked.allowed:
        assert checked.statement is not None
        for projection in checked.statement.expressions:  # type: ignore[attr-defined]
            inner = projection.unalias()
            is_key = isinstance(inner, exp.Column) and inner.name in keys
            assert is_key or any(isinstance(n, AGGREGATE_CLASSES) for n in inner.walk())
    if extra:  # a bare column that is not a group key is never accepted
        assert not checked.allowed


@pytest.mark.parametrize(
    "sql",
    [
        "WITH v AS (SELECT department, cost FROM visits WHERE cost > 100) "
        "SELECT department, AVG(cost) FROM v GROUP BY department",
        "WITH a AS (SELECT person_id AS p, department FROM visits), b AS (SELECT p, department "
        "FROM a) SELECT department, COUNT(DISTINCT p) FROM b GROUP BY department",
        "SELECT t.d, COUNT(*) FROM (SELECT department AS d FROM visits) AS t GROUP BY t.d",
        "SELECT sex, COUNT(*) FROM patients GROUP BY sex "
        "UNION ALL SELECT district, COUNT(*) FROM patients GROUP BY district",
        "SELECT COUNT(*) FROM visits WHERE person_id IN (SELECT person_id FROM patients "
        "WHERE sex = '女')",
        "SELECT COUNT(*) FROM visits v WHERE EXISTS (SELECT 1 FROM patients p "
        "WHERE p.person_id = v.person_id AND p.district = '天宁区')",
        "SELECT department, SUM(CASE WHEN icd10 = 'C34' THEN 1 ELSE 0 END) AS c34 "
        "FROM visits GROUP BY department",
        'SELECT "Hospital", /* a comment */ COUNT(*) FROM "Visits" AS "V" GROUP BY "V"."HOSPITAL"',
        "WITH u AS (SELECT cost FROM visits UNION ALL SELECT value FROM labs) "
        "SELECT AVG(cost) FROM u",
    ],
)
def test_check_sql_resolves_through_ctes_subqueries_and_unions(sql: str) -> None:
    checked = check_sql(sql, HEALTH, mode="masked")
    assert checked.allowed, checked.decision.findings


@pytest.mark.parametrize(
    ("sql", "rule"),
    [
        # A measurement smuggled out as a group key through a derived table.
        (
            "SELECT c, COUNT(*) FROM (SELECT cost AS c FROM visits) t GROUP BY c",
            "column.group_not_allowed",
        ),
        # ... through a CTE, renamed twice.
        (
            "WITH a AS (SELECT cost AS x FROM visits), b AS (SELECT x AS y FROM a) "
            "SELECT y, COUNT(*) FROM b GROUP BY y",
            "column.group_not_allowed",
        ),
        # ... through the second branch of a UNION (columns match by position).
        (
            "SELECT d, COUNT(*) FROM (SELECT department AS d FROM visits UNION ALL "
            "SELECT cost FROM visits) t GROUP BY d",
            "column.group_not_allowed",
        ),
        # ... as a CASE band on an aggregate_only column.
        (
            "SELECT CASE WHEN cost > 1000 THEN 'high' ELSE 'low' END AS band, COUNT(*) "
            "FROM visits GROUP BY band",
            "column.group_not_allowed",
        ),
        # SELECT * in a derived table keeps each column's rule.
        (
            "SELECT t.person_id, COUNT(*) FROM (SELECT * FROM visits) t GROUP BY t.person_id",
            "output.identifier_group",
        ),
        (
            "SELECT COUNT(*) FROM visits WHERE cost IN (SELECT value FROM labs)",
            "column.join_not_allowed",
        ),
        (
            "SELECT x.nope, COUNT(*) FROM (SELECT department FROM visits) x GROUP BY 1",
            "column.unknown",
        ),
        ("WITH t AS (SELECT name FROM patients) SELECT COUNT(*) FROM t", "column.forbidden"),
        (
            "SELECT COUNT(*) FROM visits UNION ALL SELECT COUNT(*) FROM patients WHERE phone = '1'",
            "column.forbidden",
        ),
        ("SELECT consent_research, COUNT(*) FROM patients GROUP BY 1", "column.forbidden"),
    ],
)
def test_check_sql_follows_columns_to_their_source(sql: str, rule: str) -> None:
    assert rule in rules(sql)


def test_check_sql_keeps_duckdb_output_names() -> None:
    checked = check_sql(
        "SELECT department, AVG(cost), COUNT(*) AS n FROM visits GROUP BY 1", HEALTH, mode="masked"
    )
    assert checked.statement is not None
    names = [p.alias_or_name for p in checked.statement.expressions]  # type: ignore[attr-defined]
    assert names == ["department", "AVG(cost)", "n"]


def test_check_sql_records_the_policy_version() -> None:
    from policies.policy_file import load_policy

    checked = check_sql("SELECT COUNT(*) FROM visits", HEALTH, mode="masked")
    assert checked.policy_version == load_policy(HEALTH).version


WRAPPERS = [
    "{q}",
    "WITH w AS ({q}) SELECT COUNT(*) FROM w",
    "SELECT COUNT(*) FROM ({q}) AS w",
    "SELECT COUNT(*) FROM visits UNION ALL {q}",
]


@settings(max_examples=300, deadline=None)
@given(
    column=st.sampled_from(FORBIDDEN),
    wrapper=st.sampled_from(WRAPPERS),
    mode=st.sampled_from(["masked", "dp"]),
)
def test_check_sql_never_accepts_a_forbidden_column_in_any_scope(
    column: str, wrapper: str, mode: str
) -> None:
    inner = f"SELECT COUNT(*) FROM patients WHERE {column} IS NOT NULL"
    sql = wrapper.format(q=inner)
    assert not check_sql(sql, HEALTH, mode=mode).allowed  # type: ignore[arg-type]
