"""Every rule of the SQL checker with one accepted and one rejected query.

The tests run each example (test_rule_examples.py), and docs/policy-rules.md is
rendered from this list and compared in a test, so the page cannot drift from
what the checker does. Regenerate it with:

    .venv/bin/python -m tests.unit.policies.rule_examples > docs/policy-rules.md
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RuleExample:
    rule: str
    meaning: str
    accepted: str
    rejected: str
    mode: str = "masked"
    language: str = "sql"


EXAMPLES = [
    RuleExample(
        "column.forbidden",
        "A negative-list (负面清单) column may appear nowhere: not in output, filter, join or "
        "subquery.",
        "SELECT district, COUNT(*) AS n FROM patients GROUP BY district",
        "SELECT COUNT(*) FROM patients WHERE id_card LIKE '3204%'",
    ),
    RuleExample(
        "column.generalised",
        "A generalised column is only in the view under its new name.",
        "SELECT birth_year - birth_year % 5 AS band, COUNT(*) FROM patients GROUP BY band",
        "SELECT birth_date, COUNT(*) FROM patients GROUP BY birth_date",
    ),
    RuleExample(
        "column.aggregate_not_allowed",
        "An aggregate_only column is used only inside the aggregates its rule lists.",
        "SELECT department, AVG(cost) FROM visits GROUP BY department",
        "SELECT department, STDDEV(readmitted_30d) FROM visits GROUP BY department",
    ),
    RuleExample(
        "column.group_not_allowed",
        "Only a dimension may be a GROUP BY key.",
        "SELECT icd10, COUNT(*) FROM visits GROUP BY icd10",
        "SELECT length_of_stay, COUNT(*) FROM visits GROUP BY length_of_stay",
    ),
    RuleExample(
        "column.output_not_allowed",
        "Only a dimension may be released as a column, also through a CTE or subquery.",
        "WITH v AS (SELECT department, cost FROM visits) "
        "SELECT department, SUM(cost) FROM v GROUP BY department",
        "WITH v AS (SELECT department, cost FROM visits) "
        "SELECT cost, COUNT(*) FROM v GROUP BY cost",
    ),
    RuleExample(
        "column.filter_not_allowed",
        "Only filter and dimension columns are compared with literals in WHERE or HAVING.",
        "SELECT COUNT(*) FROM labs WHERE taken_at >= '2022-01-01'",
        "SELECT COUNT(*) FROM visits WHERE person_id = 'a1b2'",
    ),
    RuleExample(
        "column.join_not_allowed",
        "Only join_key columns join tables.",
        "SELECT p.sex, COUNT(*) FROM visits v JOIN patients p ON v.person_id = p.person_id "
        "GROUP BY p.sex",
        "SELECT COUNT(*) FROM visits v JOIN labs l ON v.cost = l.value",
    ),
    RuleExample(
        "output.identifier_group",
        "Person and record keys are never GROUP BY keys or outputs; count them instead.",
        "SELECT COUNT(DISTINCT person_id) FROM visits",
        "SELECT person_id, COUNT(*) FROM visits GROUP BY person_id",
    ),
    RuleExample(
        "output.no_aggregate",
        "The released output is aggregated.",
        "SELECT COUNT(*) FROM visits",
        "SELECT department FROM visits",
    ),
    RuleExample(
        "output.not_aggregated",
        "Every output column is an aggregate or a GROUP BY key.",
        "SELECT department, hospital, COUNT(*) FROM visits GROUP BY department, hospital",
        "SELECT department, hospital, COUNT(*) FROM visits GROUP BY department",
    ),
    RuleExample(
        "masked.min_max",
        "MIN, MAX and MEDIAN release one person's exact value: not in masked mode.",
        "SELECT AVG(length_of_stay) FROM visits",
        "SELECT MAX(length_of_stay) FROM visits",
    ),
    RuleExample(
        "column.unknown",
        "Every column resolves to a column of a table or derived table in scope.",
        "SELECT t.d, COUNT(*) FROM (SELECT department AS d FROM visits) AS t GROUP BY t.d",
        "SELECT t.department, COUNT(*) FROM (SELECT department AS d FROM visits) AS t "
        "GROUP BY t.department",
    ),
    RuleExample(
        "column.ambiguous",
        "A column name held by several joined tables is qualified.",
        "SELECT COUNT(DISTINCT v.person_id) FROM visits v JOIN labs l ON v.visit_id = l.visit_id",
        "SELECT COUNT(DISTINCT person_id) FROM visits v JOIN labs l ON v.visit_id = l.visit_id",
    ),
    RuleExample(
        "sql.unknown_table",
        "Only the dataset's tables (and the query's own CTEs) are read.",
        "WITH t AS (SELECT department FROM visits) SELECT department, COUNT(*) FROM t "
        "GROUP BY department",
        "SELECT COUNT(*) FROM information_schema.tables",
    ),
    RuleExample(
        "sql.table_function",
        "No table functions or file reads.",
        "SELECT COUNT(*) FROM visits",
        "SELECT COUNT(*) FROM read_parquet('/input/visits.parquet')",
    ),
    RuleExample(
        "sql.function_not_allowed",
        "Functions come from an allowlist.",
        "SELECT YEAR(visit_date) AS y, COUNT(*) FROM visits GROUP BY y",
        "SELECT getenv('HOME'), COUNT(*) FROM visits",
    ),
    RuleExample(
        "sql.window_not_allowed",
        "Window functions return one value per row.",
        "SELECT department, COUNT(*) FROM visits GROUP BY department",
        "SELECT department, COUNT(*) OVER (PARTITION BY department) FROM visits",
    ),
    RuleExample(
        "sql.statement_not_allowed",
        "One SELECT (or a set operation of SELECTs): no PRAGMA, ATTACH, COPY, SET, INSTALL, LOAD.",
        "SELECT sex, COUNT(*) FROM patients GROUP BY sex "
        "UNION ALL SELECT district, COUNT(*) FROM patients GROUP BY district",
        "COPY visits TO '/tmp/visits.csv'",
    ),
    RuleExample(
        "sql.single_statement",
        "Exactly one statement.",
        "SELECT COUNT(*) FROM visits -- one statement, comments welcome",
        "SELECT COUNT(*) FROM visits; SELECT COUNT(*) FROM labs",
    ),
    RuleExample(
        "sql.star",
        "* only in COUNT(*) (SELECT * expands to columns, each judged on its own).",
        "SELECT COUNT(*) FROM visits",
        "SELECT SUM(*) FROM visits",
    ),
    RuleExample(
        "sql.parse",
        "The query is valid SQL.",
        "SELECT COUNT(*) FROM visits",
        "SELEC COUNT(*) FROM visits",
    ),
    RuleExample(
        "dp.private_group_key",
        "In dp mode GROUP BY keys have a public category list (every key is released).",
        "SELECT department, COUNT(*) AS n FROM visits GROUP BY department",
        "SELECT birth_year, COUNT(*) AS n FROM patients GROUP BY birth_year",
        mode="dp",
    ),
    RuleExample(
        "dp.unsupported",
        "dp mode reads one table with one SELECT (for now).",
        "SELECT sex, COUNT(*) AS n FROM patients GROUP BY sex",
        "WITH p AS (SELECT sex FROM patients) SELECT sex, COUNT(*) FROM p GROUP BY sex",
        mode="dp",
    ),
    RuleExample(
        "python.import_not_allowed",
        "Python jobs import pandas, numpy, scipy, statsmodels, scikit-learn, sandbox_job and "
        "harmless standard modules only.",
        "import sandbox_job\nimport statsmodels.api as sm",
        "import sandbox_job\nimport polars",
        language="python",
    ),
    RuleExample(
        "python.import_denied",
        "Escapes are named: os, sys, subprocess, socket, ctypes, importlib, pickle, duckdb ...",
        "import numpy as np",
        "import subprocess",
        language="python",
    ),
    RuleExample(
        "python.call_denied",
        "No `eval`, `exec`, `compile`, `__import__`, `open`, `globals`, `vars`; `getattr` only "
        "with a literal name.",
        "import sandbox_job\nv = sandbox_job.table('visits')\nn = getattr(v, 'shape')",
        "code = 'print(1)'\neval(code)",
        language="python",
    ),
    RuleExample(
        "python.dunder_access",
        "No dunder tricks (`__class__`, `__subclasses__`, `__globals__`, `__builtins__` ...).",
        "class Model:\n    def __init__(self):\n        self.k = 1",
        "x = ().__class__.__bases__[0].__subclasses__()",
        language="python",
    ),
    RuleExample(
        "python.syntax",
        "The code is valid Python.",
        "x = 1",
        "x = (1",
        language="python",
    ),
]


def render() -> str:
    lines = [
        "# Policy rules",
        "",
        "Generated from `tests/unit/policies/rule_examples.py`; the tests run every example",
        "and compare this page with the list, so it cannot drift. Column rules come from",
        "`policies/files/health.yaml` (see `policies/policy_file.py` for the defaults by",
        "column class).",
        "",
        "| rule | what it means | accepted | rejected |",
        "|---|---|---|---|",
    ]
    for example in EXAMPLES:
        mode = " (dp mode)" if example.mode == "dp" else ""
        mode += " (Python)" if example.language == "python" else ""
        lines.append(
            f"| `{example.rule}`{mode} | {example.meaning} | `{_cell(example.accepted)}` "
            f"| `{_cell(example.rejected)}` |"
        )
    return "\n".join(lines) + "\n"


def _cell(sql: str) -> str:
    return sql.replace("|", "\\|").replace("\n", "; ")


if __name__ == "__main__":
    print(render(), end="")
