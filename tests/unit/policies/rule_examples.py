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
        "python.file_read",
        "No readers of files or URLs (`pd.read_csv`, `np.load`, `np.fromfile`, `scipy.io`, "
        "`sklearn.datasets.fetch_*` ...): a job's data is its view, read with "
        "`sandbox_job.table()`.",
        "import sandbox_job\nvisits = sandbox_job.table('visits')",
        "import pandas as pd\nvisits = pd.read_csv('/input/visits.csv')",
        language="python",
    ),
    RuleExample(
        "python.runtime_value",
        "A value that decides what runs is known to the check: formulas and `query`/`eval` "
        "expressions are string literals (or names bound once to one), `**` unpacks a dict "
        "literal with string keys, format strings are literals.",
        "import statsmodels.formula.api as smf\nimport sandbox_job\n"
        "v = sandbox_job.table('visits')\nFORMULA = 'cost ~ age + C(department)'\n"
        "fit = smf.ols(FORMULA, data=v).fit()",
        "import statsmodels.formula.api as smf\nimport sandbox_job\n"
        "v = sandbox_job.table('visits')\nterms = ' + '.join(['age', 'sex'])\n"
        "fit = smf.ols('cost ~ ' + terms, data=v).fit()",
        language="python",
    ),
    RuleExample(
        "python.evaluated_denied",
        "Formulas use columns, operators and known transforms (`C`, `I`, `Q`, `center`, "
        "`standardize`, `scale`, `bs`, `cr`, `cc`, `te`, `np.log` ...); expressions use "
        "columns, literals, comparisons, arithmetic, `@name` and math functions.",
        "import sandbox_job\nv = sandbox_job.table('visits')\nold = v.query('age > 60')",
        "import sandbox_job\nv = sandbox_job.table('visits')\n"
        "old = v.query('age.astype(str) == \"60\"')",
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
    lines += ["", *PYTHON_GUIDE_START, "", "| instead of | write |", "|---|---|"]
    lines += [f"| {instead} | {write} |" for instead, write in WRITE_AROUND]
    return "\n".join([*lines, "", *PYTHON_GUIDE_END]) + "\n"


PYTHON_GUIDE_START = [
    "## Python jobs: writing around the rules",
    "",
    "The Python check (`policies/python_check.py`) judges what the code says, so it",
    "refuses what it cannot see: a value that decides what a library runs must be",
    "written where the check reads it. Every finding says where (line and column)",
    "and how to write it instead.",
]
WRITE_AROUND = [
    (
        "`pd.read_csv(path)`, `np.load(path)`, `np.loadtxt`, `scipy.io.loadmat`, `fetch_openml`",
        '`sandbox_job.table("visits")`; `sandbox_job.tables()` lists the view\'s tables',
    ),
    (
        '`smf.ols("cost ~ " + terms, data=v)`, `smf.ols(f"y ~ {x}", v)`',
        '`smf.ols("cost ~ age + sex", data=v)`, or `FORMULA = "cost ~ age + sex"` once and '
        "`smf.ols(FORMULA, data=v)`",
    ),
    (
        "`y ~ my_function(x)`, `y ~ x.values`, `y ~ x[0]` in a formula",
        'compute the column first (`v["z"] = my_function(v.x)`), then `y ~ z`',
    ),
    (
        '`v.query(condition)`, `v.query("@f(x)")`, `v.query("s.str.len() > 3")`',
        "`v.query(\"age > 60 and sex == '女'\")`; a value computed before: "
        '`limit = v.cost.mean()` and `v.query("cost > @limit")`',
    ),
    (
        "`v.query(q, local_dict=ns)`, `level=`, `resolvers=`, `engine=choice`",
        '`@name` in the literal expression; `engine="python"` written out',
    ),
    (
        "`f(**options)` where `options` is built or changed at run time",
        'keywords written out, `f(sep=";")`, or a dict literal with string keys unpacked '
        '(`f(**{"sep": ";"})`, or `options = {...}` once and used only as `**options`)',
    ),
    (
        "`getattr(x, name)` with a computed name, `vars(x)[name]`, `x.__dict__`",
        '`x.shape`, or `getattr(x, "shape")` with a literal (or a name bound once to one)',
    ),
    (
        '`v.agg(stat)` with a computed name, `v.apply("query", expr=q)`',
        '`v.agg(["mean", "std"])`, or a function: `v.agg(np.mean)`, a lambda, your own `def`',
    ),
    (
        "`template.format(x)` with a computed template",
        'a literal `"{:.2f}".format(x)`, or an f-string',
    ),
]
PYTHON_GUIDE_END = [
    "A name counts as a literal when it is bound in exactly one place in the whole",
    "job (an assignment, a loop, a parameter, an import, `global` all count) by a",
    'plain `name = "literal"`. The literal itself is then checked: a formula may',
    "call only patsy's `C`, `I`, `Q`, `center`, `standardize`, `scale`, `bs`,",
    "`cr`, `cc`, `te` and contrasts (when the job binds none of those names",
    "itself) and NumPy's elementwise functions through a name bound only by",
    "`import numpy as np`; a `query`/`eval` expression holds column names (or",
    "`` `quoted names` ``), literals, comparisons, `and`/`or`/`not`, `&`/`|`/`~`,",
    "arithmetic, `@name` read as it is, pandas' math functions (`log`, `exp`,",
    "`sqrt`, `abs` ...) and `name = ...` assignments. Writing files (`np.save`,",
    "`df.to_csv` to `/tmp`) is allowed: only declared outputs leave the runner.",
]


def _cell(sql: str) -> str:
    return sql.replace("|", "\\|").replace("\n", "; ")


if __name__ == "__main__":
    print(render(), end="")
