"""The Python checker: what it accepts, what it rejects, and that it says why and where."""

from __future__ import annotations

import keyword
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.python_check import (
    ALLOWED_MODULES,
    DENIED_MODULES,
    ESCAPE_ATTRIBUTE_NAMES,
    MAX_PYTHON_CHARS,
    check_python,
)

README_EXAMPLE = (
    "import sandbox_job\nv = sandbox_job.table('visits')\nout = v.groupby('department')"
    ".agg(n=('cost', 'size'), mean_cost=('cost', 'mean')).reset_index()\n"
    "sandbox_job.output('by_department', out, kind='frequency', count_column='n')\n"
)


def found(code: str) -> list[tuple[str, str | None]]:
    """(rule, location) of every finding."""
    return [(f.rule, f.location) for f in check_python(textwrap.dedent(code)).findings]


def rules(code: str) -> set[str]:
    return {rule for rule, _ in found(code)}


# -- accepted --------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        README_EXAMPLE,
        """
        import pandas as pd
        import sandbox_job

        visits = sandbox_job.table("visits")
        patients = sandbox_job.table("patients")
        joined = visits.merge(patients, on="person_id")
        joined["band"] = pd.cut(joined.birth_year, bins=[1900, 1950, 1980, 2030])
        table = joined.pivot_table(index="band", columns="sex", values="cost", aggfunc="mean")
        counts = joined.groupby("band", observed=True).size().reset_index(name="n")
        older = visits.query("age > @threshold and `department` == '内科'")
        sandbox_job.output("by_band", counts, kind="frequency", count_column="n")
        """,
        """
        import numpy as np
        from scipy import stats
        import sandbox_job

        visits = sandbox_job.table("visits")
        cost = visits["cost"].to_numpy()
        log_cost = np.log1p(cost)
        t, p = stats.ttest_ind(log_cost[:10], log_cost[10:], equal_var=False)
        ci = stats.t.interval(0.95, len(cost) - 1, loc=np.mean(cost), scale=stats.sem(cost))
        rng = np.random.default_rng(7)
        boot = [rng.choice(cost, size=len(cost)).mean() for _ in range(200)]
        """,
        """
        import numpy as np
        import statsmodels.api as sm
        import statsmodels.formula.api as smf
        import sandbox_job

        visits = sandbox_job.table("visits")
        X = sm.add_constant(visits[["age", "length_of_stay"]])
        ols = sm.OLS(visits["cost"], X).fit()
        logit = smf.logit("readmitted ~ age + C(department) + I(age ** 2)", data=visits).fit()
        FORMULA = "cost ~ age + length_of_stay + np.log1p(age) + C(sex, Treatment('男'))"
        glm = smf.glm(FORMULA, data=visits, family=sm.families.Gamma()).fit()
        mixed = smf.mixedlm(
            "cost ~ age", visits, groups=visits["district"], re_formula="1",
            vc_formula={"hospital": "0 + C(hospital)"},
        )
        settings = {"maxiter": 50, "disp": False}
        probit = smf.probit("readmitted ~ center(age) + I(cost > 1000)", visits).fit(**settings)
        ratio = visits.eval("per_day = cost / length_of_stay", engine="python")
        summary_line = "{:.3f} ({})".format(ols.rsquared, "R²")
        summary = ols.params.rename("estimate").to_frame()
        """,
        """
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_score
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        import sandbox_job

        visits = sandbox_job.table("visits")
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200))
        scores = cross_val_score(model, visits[["age", "cost"]], visits["readmitted"], cv=5)
        """,
        """
        '''A job with its own helpers; this docstring may mention __init__.'''
        from __future__ import annotations

        import math
        import statistics
        from collections import Counter, defaultdict
        from dataclasses import dataclass, field
        from functools import reduce
        from itertools import combinations
        from operator import attrgetter, itemgetter
        from typing import Optional

        import pandas as pd

        @dataclass
        class Band:
            low: int
            high: int
            label: Optional["str"] = None
            members: list[int] = field(default_factory=list)

            def __post_init__(self) -> None:
                self.label = self.label or f"{self.low}-{self.high}"

            def __contains__(self, age: int) -> bool:
                return self.low <= age < self.high

        class Tally(Counter):
            __slots__ = ()

            def __init__(self, items: list[str]) -> None:
                super().__init__(items)

            def __repr__(self) -> str:
                return f"{type(self).__name__}({dict(self)})"

        def spread(frame: "pd.DataFrame", column: str) -> float:
            return statistics.pstdev(frame[column]) / math.sqrt(len(frame))

        ordered = sorted([Band(0, 18), Band(18, 65)], key=attrgetter("low"))
        pairs = list(combinations(range(4), 2))
        total = reduce(lambda a, b: a + b, map(itemgetter(0), pairs))
        width = getattr(ordered[0], "high") - getattr(ordered[0], "low")
        if __name__ == "__main__":
            print(hasattr(ordered[0], "label"), defaultdict(int))
        """,
        """
        import pandas as pd
        import numpy as np
        import sandbox_job

        # Writing is allowed (only declared outputs leave the runner); reading is not.
        visits = sandbox_job.table("visits")
        np.save("/tmp/a.npy", np.arange(3))
        visits.to_csv("/tmp/visits.csv")
        is_num = pd.api.types.is_numeric_dtype(visits["cost"])
        chosen = np.select([visits.cost > 1], [visits.cost], default=0)
        """,
        """
        import sandbox_job
        df = sandbox_job.table("visits")
        sys_bp = df.sys.mean() + df.os.mean()  # columns called sys and os
        open_ = df["open"]
        """,
    ],
)
def test_check_python_accepts_analysis_code(code: str) -> None:
    decision = check_python(textwrap.dedent(code))
    assert decision.allowed, decision.findings


# -- rejected, one rule at a time ----------------------------------------------------


@pytest.mark.parametrize(
    ("code", "rule", "location"),
    [
        ("import matplotlib.pyplot", "python.import_not_allowed", "line 1, column 8"),
        ("import uuid", "python.import_not_allowed", "line 1, column 8"),
        ("import pyarrow.parquet", "python.import_not_allowed", "line 1, column 8"),
        ("x = 1\nfrom . import helpers", "python.import_not_allowed", "line 2, column 1"),
        ("import os", "python.import_denied", "line 1, column 8"),
        ("import pandas, subprocess", "python.import_denied", "line 1, column 16"),
        ("import socket as s", "python.import_denied", "line 1, column 8"),
        ("from ctypes import CDLL", "python.import_denied", "line 1, column 1"),
        ("import duckdb", "python.import_denied", "line 1, column 8"),
        ("from pyarrow import fs", "python.import_denied", "line 1, column 21"),
        ("import pyarrow.fs", "python.import_denied", "line 1, column 8"),
        ("import numpy.ctypeslib", "python.import_denied", "line 1, column 8"),
        ("from numpy import f2py", "python.import_denied", "line 1, column 19"),
        ("import pandas.io.clipboards", "python.import_denied", "line 1, column 8"),
        ("import _thread", "python.import_denied", "line 1, column 8"),
        ("import warnings\nwarnings.sys.exit()", "python.import_denied", "line 2, column 10"),
        ("from dataclasses import builtins", "python.import_denied", "line 1, column 25"),
        ("from pandas import *", "python.star_import", "line 1, column 20"),
        ("eval('1 + 1')", "python.call_denied", "line 1, column 1"),
        ("y = 2\nexec(code)", "python.call_denied", "line 2, column 1"),
        ("compile('x', 'f', 'exec')", "python.call_denied", "line 1, column 1"),
        ("__import__('os')", "python.call_denied", "line 1, column 1"),
        ("f = open('/input/visits.parquet', 'rb')", "python.call_denied", "line 1, column 5"),
        ("x = input()", "python.call_denied", "line 1, column 5"),
        ("breakpoint()", "python.call_denied", "line 1, column 1"),
        ("g = globals()", "python.call_denied", "line 1, column 5"),
        ("l = locals()", "python.call_denied", "line 1, column 5"),
        ("v = vars(x)", "python.call_denied", "line 1, column 5"),
        ("m = memoryview(b'x')", "python.call_denied", "line 1, column 5"),
        ("getattr(x, name)", "python.call_denied", "line 1, column 1"),
        ("setattr(x, *names)", "python.call_denied", "line 1, column 1"),
        ("hasattr(x, f'{n}')", "python.call_denied", "line 1, column 1"),
        ("list(map(getattr, xs, names))", "python.call_denied", "line 1, column 10"),
        ("import operator\noperator.attrgetter(name)", "python.call_denied", "line 2, column 21"),
        ("import pandas as pd\npd.read_pickle('/tmp/x')", "python.call_denied", "line 2, column 4"),
        (
            "import numpy as np\nnp.load('x', allow_pickle=True)",
            "python.call_denied",
            "line 2, column 27",
        ),
        (
            "import statsmodels.api as sm\nsm.load('m.pickle')",
            "python.call_denied",
            "line 2, column 4",
        ),
        ("from typing import get_type_hints", "python.call_denied", "line 1, column 20"),
        ("open = 3", "python.call_denied", "line 1, column 1"),
        ("t = x.__class__", "python.dunder_access", "line 1, column 7"),
        ("d = frame.__dict__", "python.dunder_access", "line 1, column 11"),
        ("print(__builtins__)", "python.dunder_access", "line 1, column 7"),
        ("f.__code__", "python.dunder_access", "line 1, column 3"),
        ("type(x).__mro__", "python.dunder_access", "line 1, column 9"),
        ("getattr(x, '__getattribute__')", "python.dunder_access", "line 1, column 12"),
        ("'{0.__class__}'.format(x)", "python.dunder_access", "line 1, column 1"),
        ("def __getattr__(name):\n    pass", "python.dunder_access", "line 1, column 5"),
        ("x.__init__(1)", "python.dunder_access", "line 1, column 3"),
        ("g = (i for i in [])\ng.gi_frame", "python.dunder_access", "line 2, column 3"),
        (
            "try:\n    1 / 0\nexcept Exception as e:\n    e.__traceback__.tb_frame.f_globals",
            "python.dunder_access",
            "line 4, column 7",
        ),
        (
            "match x:\n    case object(__class__=c):\n        pass",
            "python.dunder_access",
            "line 2, column 10",
        ),
        ("import collections\ncollections._sys", "python.private_access", "line 2, column 13"),
        (
            "import sandbox_job\nsandbox_job._outputs.clear()",
            "python.private_access",
            "line 2, column 13",
        ),
        ("from pandas import _libs", "python.private_access", "line 1, column 20"),
        ("import numpy._core", "python.private_access", "line 1, column 8"),
        (
            "import statsmodels.formula.api as smf\nsmf.ols('y ~ I(exec(s))', data=d)",
            "python.call_denied",
            "line 2, column 9",
        ),
        ("df.query('@frame.gi_frame')", "python.dunder_access", "line 1, column 10"),
        ("def f(x: 'eval(s)'):\n    pass", "python.call_denied", "line 1, column 10"),
        ("x = 1 +", "python.syntax", "line 1, column 8"),
        ("if x:\npass", "python.syntax", "line 2, column 1"),
    ],
)
def test_check_python_rejects_with_rule_at_location(code: str, rule: str, location: str) -> None:
    assert (rule, location) in found(code)


def test_check_python_syntax_error_is_the_only_finding() -> None:
    decision = check_python("import os\nx = (1,\n")

    assert not decision.allowed
    assert [f.rule for f in decision.findings] == ["python.syntax"]
    assert decision.findings[0].message.startswith("Syntax error:")


def test_check_python_null_byte_is_syntax_error() -> None:
    assert rules("x = 1\0") == {"python.syntax"}


def test_check_python_too_long_rejected_before_parsing() -> None:
    code = "x = 1\n" * (MAX_PYTHON_CHARS // 6 + 1)

    decision = check_python(code)

    assert [f.rule for f in decision.findings] == ["python.too_long"]
    assert str(MAX_PYTHON_CHARS) in decision.findings[0].message


def test_check_python_at_length_limit_accepted() -> None:
    code = "x = 1\n" * (MAX_PYTHON_CHARS // 6)
    assert len(code) <= MAX_PYTHON_CHARS

    assert check_python(code).allowed


@pytest.mark.parametrize("code", ["-" * 50_000 + "1", "x = 1" + " + 1" * 20_000])
def test_check_python_too_deeply_nested_fails_closed(code: str) -> None:
    decision = check_python(code)

    assert not decision.allowed
    assert {f.rule for f in decision.findings} == {"python.syntax"}


# -- all at once, and where ------------------------------------------------------------


def test_check_python_reports_every_finding_at_once() -> None:
    code = """\
    import os
    import matplotlib
    from pandas import *
    x = eval("1")
    y = ().__class__
    import collections
    z = collections._sys
    """

    assert found(code) == [
        ("python.import_denied", "line 1, column 8"),
        ("python.import_not_allowed", "line 2, column 8"),
        ("python.star_import", "line 3, column 20"),
        ("python.call_denied", "line 4, column 5"),
        ("python.dunder_access", "line 5, column 8"),
        ("python.private_access", "line 7, column 17"),
    ]


def test_check_python_reports_each_place_once() -> None:
    code = "import os\nimport os\n"

    assert found(code) == [
        ("python.import_denied", "line 1, column 8"),
        ("python.import_denied", "line 2, column 8"),
    ]


def test_check_python_location_counts_characters_not_bytes() -> None:
    code = "label = '内科'; t = label.__class__"

    assert found(code) == [("python.dunder_access", "line 1, column 25")]


def test_check_python_import_not_allowed_lists_the_allowlist() -> None:
    (finding,) = check_python("import polars").findings

    assert finding.rule == "python.import_not_allowed"
    for module in ("pandas", "numpy", "scipy", "statsmodels", "sklearn", "sandbox_job", "math"):
        assert module in finding.message
    assert finding.suggestion and "sandbox_job.table()" in finding.suggestion


def test_check_python_duckdb_denied_with_pandas_suggestion() -> None:
    (finding,) = check_python("import duckdb").findings

    assert finding.rule == "python.import_denied"
    assert "pandas" in finding.message and "SQL job" in finding.message


def test_check_python_findings_have_messages_for_people() -> None:
    code = "import subprocess\nexec(x)\ny.__globals__\ngetattr(a, b)\n"

    for finding in check_python(code).findings:
        assert finding.location and finding.location.startswith("line ")
        assert finding.message.endswith(".")
        assert finding.to_dict()["rule"] == finding.rule


# -- tricky escapes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ("().__class__.__bases__[0].__subclasses__()", "python.dunder_access"),
        ("getattr(x, '__glob' + 'als__')", "python.call_denied"),
        ("getattr(getattr(x, '__init__'), g)", "python.call_denied"),
        ("__builtins__['eval']('1')", "python.dunder_access"),
        ("import importlib; importlib.import_module('os')", "python.import_denied"),
        ("from os import system", "python.import_denied"),
        ("import numpy.ctypeslib", "python.import_denied"),
        ("import numpy as np\nnp.ctypeslib.load_library('libc', '/lib')", "python.import_denied"),
        ("import pandas as pd\npd.io.common.os.system('id')", "python.import_denied"),
        ("import warnings\nwarnings.sys.modules['os']", "python.import_denied"),
        ("import sandbox_job\nsandbox_job.os.environ", "python.import_denied"),
        ("import functools\nfunctools.partial(eval, 's')()", "python.call_denied"),
        ("f = getattr\nf(x, 'y')", "python.call_denied"),
        ("from operator import attrgetter as ag\nag('__class__')(1)", "python.dunder_access"),
        ("from operator import methodcaller\nm = methodcaller", "python.call_denied"),
        ("import operator\noperator.attrgetter('_sys')(c)", "python.private_access"),
        ("x = [i for i in ()]\ny = (lambda: 0).__globals__", "python.dunder_access"),
        ("gen = (i for i in [1])\ngen.gi_frame.f_back.f_globals['x']", "python.dunder_access"),
        ("import pandas as pd\ndf.query('@pd.io.common.os.system(1)')", "python.import_denied"),
        ("df.eval('x = @s.__class__')", "python.dunder_access"),
        (
            "import statsmodels.formula.api as smf\nsmf.ols(f'y ~ I(eval({s}))', d)",
            "python.call_denied",
        ),
        (
            "import statsmodels.formula.api as smf\n"
            "smf.mixedlm('y ~ x', d, re_formula='getattr(a, b)')",
            "python.call_denied",
        ),
        (
            "from functools import singledispatch\n@singledispatch\ndef f(x: list['exec(c)']): ...",
            "python.call_denied",
        ),
        ("from typing import ForwardRef\nForwardRef('x')", "python.call_denied"),
        ("import typing\ntyping.get_type_hints(f)", "python.call_denied"),
        ("class A:\n    def f(self):\n        return __class__", "python.dunder_access"),
        ("class A:\n    x = __builtins__", "python.dunder_access"),
        ("global __builtins__", "python.dunder_access"),
        ("import pandas as __builtins__", "python.dunder_access"),
        ("from sandbox_job import __dict__", "python.dunder_access"),
        ("try:\n    import os\nexcept ImportError:\n    pass", "python.import_denied"),
        ("def f():\n    from subprocess import run\n    run(['id'])", "python.import_denied"),
        ("ｅｘｅｃ('x')", "python.call_denied"),  # NFKC: the parser reads exec
        ("from scipy import LowLevelCallable", "python.call_denied"),
        ("import pandas as pd\npd.read_clipboard()", "python.call_denied"),
        ("import pandas as pd\ndf.to_clipboard()", "python.call_denied"),
        ("import statsmodels.api as sm\nsm.webdoc()", "python.call_denied"),
    ],
)
def test_check_python_rejects_tricky_escapes(code: str, rule: str) -> None:
    assert rule in rules(code)


def test_check_python_refuses_file_readers_with_the_view_in_the_suggestion() -> None:
    (finding,) = check_python("import pandas as pd\npd.read_csv('/etc/passwd')").findings

    assert finding.rule == "python.file_read"
    assert finding.location == "line 2, column 4"
    assert "sandbox_job.table()" in finding.message
    assert finding.suggestion and "sandbox_job.table(" in finding.suggestion


def test_check_python_refuses_formulas_it_cannot_read() -> None:
    (finding,) = check_python("import statsmodels.formula.api as smf\nsmf.ols(f, data=d)").findings

    assert finding.rule == "python.runtime_value"
    assert finding.location == "line 2, column 9"
    assert finding.suggestion == 'Write the formula as a string literal: smf.ols("y ~ x", data=df).'


# -- the lists ---------------------------------------------------------------------------


def test_allowlist_and_denylist_disjoint() -> None:
    denied_tops = {name for name in DENIED_MODULES if "." not in name}
    assert not ALLOWED_MODULES & denied_tops
    assert "uuid" not in ALLOWED_MODULES


def test_escape_attribute_names_spare_public_apis() -> None:
    assert not {"io", "types", "select", "signal"} & ESCAPE_ATTRIBUTE_NAMES
    assert {"os", "sys", "subprocess", "builtins", "importlib"} <= ESCAPE_ATTRIBUTE_NAMES


# -- properties --------------------------------------------------------------------------

IDENTIFIERS = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True).filter(
    lambda name: not keyword.iskeyword(name)
)


@st.composite
def denied_import(draw: st.DrawFn) -> str:
    """One statement importing a denied module, in one of its syntactic forms."""
    module = draw(st.sampled_from(sorted(DENIED_MODULES)))
    alias, name, sub = draw(IDENTIFIERS), draw(IDENTIFIERS), draw(IDENTIFIERS)
    forms = [
        f"import {module}",
        f"import {module} as {alias}",
        f"import {module}.{sub}",
        f"import {module}.{sub} as {alias}",
        f"import pandas, {module}",
        f"from {module} import {name}",
        f"from {module} import {name} as {alias}",
        f"from {module} import ({name}, {alias})",
        f"from {module}.{sub} import {name}",
        f"from {module} import *",
    ]
    if "." in module:
        parent, _, last = module.rpartition(".")
        forms += [f"from {parent} import {last}", f"from {parent} import {last} as {alias}"]
    return draw(st.sampled_from(forms))


# (template, indentation of the nested block)
WRAPPERS = [
    ("def f():\n{}", 4),
    ("async def f():\n{}", 4),
    ("class C:\n{}", 4),
    ("try:\n{}\nexcept ImportError:\n    pass", 4),
    ("try:\n    pass\nexcept Exception:\n{}", 4),
    ("if flag:\n    pass\nelse:\n{}", 4),
    ("for i in range(3):\n{}", 4),
    ("while False:\n{}", 4),
    ("with context:\n{}", 4),
    ("match x:\n    case 1:\n{}", 8),
]


def nest(statement: str, wrappers: list[tuple[str, int]]) -> str:
    for template, indentation in wrappers:
        statement = template.format(textwrap.indent(statement, " " * indentation))
    return statement


@settings(max_examples=400, deadline=None)
@given(
    statement=denied_import(),
    wrappers=st.lists(st.sampled_from(WRAPPERS), max_size=3),
    before=st.sampled_from(["", "import pandas as pd\n", "x = 1\n"]),
    after=st.sampled_from(["", "\nimport numpy as np", "\nresult = pd.DataFrame()"]),
)
def test_check_python_rejects_denied_import_in_any_form(
    statement: str, wrappers: list[tuple[str, int]], before: str, after: str
) -> None:
    code = before + nest(statement, wrappers) + after

    decision = check_python(code)

    assert not decision.allowed
    assert "python.import_denied" in {f.rule for f in decision.findings}, code


@settings(max_examples=200, deadline=None)
@given(module=IDENTIFIERS.filter(lambda name: name not in ALLOWED_MODULES))
def test_check_python_rejects_unknown_modules(module: str) -> None:
    # Fail closed: a module nobody listed is not allowed.
    decision = check_python(f"import {module}")

    assert not decision.allowed
    assert {f.rule for f in decision.findings} <= {
        "python.import_not_allowed",
        "python.import_denied",
    }


@settings(max_examples=300, deadline=None)
@given(code=st.text(max_size=300))
def test_check_python_decides_any_text(code: str) -> None:
    decision = check_python(code)

    assert decision.allowed == (not decision.findings)


def test_tables_read_names_the_views_tables_only_when_every_name_is_literal() -> None:
    from policies.python_check import tables_read

    assert tables_read("import sandbox_job\nv = sandbox_job.table('visits')\n") == {"visits"}
    assert tables_read(
        "import sandbox_job\nv = sandbox_job.table('visits')\np = sandbox_job.table('patients')"
    ) == {"visits", "patients"}
    for any_table in (
        "import sandbox_job\nfor t in sandbox_job.tables():\n    sandbox_job.table(t)",
        "import sandbox_job\nname = 'visits'\nsandbox_job.table(name)",
        "import sandbox_job\nread = sandbox_job.table\nread('visits')",
        "from sandbox_job import table\ntable('visits')",
    ):
        assert tables_read(any_table) is None, any_table
