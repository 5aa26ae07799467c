"""The Python checker fails closed on values it cannot see: formulas, expressions, keywords,
attribute names and format strings must be literals it reads (or names bound once to them),
their contents are read as the small languages they are, and readers of files are refused."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.python_check import check_python
from policies.python_evaluated import Names, expression_problems, formula_problems
from tests.unit.policies.test_python_check import found

SMF = "import statsmodels.formula.api as smf\n"
PD = "import pandas as pd\n"
NP = "import numpy as np\n"

# -- known values are accepted ------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        SMF + "m = smf.ols('cost ~ age + C(department) + I(age ** 2) - 1', data=d)",
        SMF + NP + "FORMULA = 'np.log(cost) ~ np.sqrt(age) + standardize(los)'\n"
        "m = smf.ols(FORMULA, data=d)",
        SMF + "m = smf.ols(formula='y ~ x:z + (a + b) ** 2', data=d)",
        SMF + "m = smf.ols(**{'formula': 'y ~ x', 'data': d})",
        SMF + "vc = {'school': '0 + C(school)'}\n"
        "m = smf.mixedlm('y ~ x', d, groups=g, re_formula='1 + x', vc_formula=vc)",
        SMF + 'm = smf.logit(\'y ~ C(dept, Treatment(reference="内科")) + Q("my col")\', d)',
        "import statsmodels.api as sm\nm = sm.OLS.from_formula('y ~ x', data=d)",
        "df.query('age > 60 and `department` == \"内科\" or cost in [1, 2]')",
        "threshold = 3\ndf.query('age > @threshold', engine='python', parser='pandas')",
        "df.eval('per_day = cost / length_of_stay\\nlog_cost = log(cost)', inplace=True)",
        PD + "pd.eval('a + b * 2')",
        PD + "options = {'index': 'band', 'columns': 'sex'}\ntable = d.pivot_table(**options)",
        PD + "table = d.pivot_table(**{'index': 'band', 'aggfunc': 'mean'})",
        "def helper(frame, **options):\n    return frame.head(5)\nhelper(d, **extra)",
        NP + PD + "def spread(x):\n    return x.max() - x.min()\n"
        "a = d.groupby('g').agg(n=('cost', 'size'), m=('cost', np.mean), s=('cost', spread),"
        " k=pd.NamedAgg(column='cost', aggfunc='median'))\n"
        "b = d.agg(['mean', 'std', len])\nc = d.agg({'cost': ['sum', sum]})\n"
        "e = d.apply(lambda row: row.sum(), axis=1)\nf = d.x.apply(str.upper)\n"
        "g = d.groupby('g').transform('mean')\nh = scaler.transform(X)\ni = forest.apply(X)",
        "name = 'shape'\nsize = getattr(d, name)",
        "label = '{:.1f} ({name})'.format(3.14159, name='pi')",
        "TEMPLATE = '{0} of {1}'\nline = TEMPLATE.format(1, 2)\nother = str.format('{}', 1)",
        NP + "np.save('/tmp/a.npy', np.arange(3))\nd.to_parquet('/tmp/d.parquet')",
    ],
)
def test_check_python_accepts_values_it_knows(code: str) -> None:
    decision = check_python(code)
    assert decision.allowed, decision.findings


# -- unknown values are refused, each with its rule and place ---------------------------


@pytest.mark.parametrize(
    ("code", "rule", "location"),
    [
        # Formulas and expressions built at run time.
        (SMF + "smf.ols(f'y ~ {x}', data=d)", "python.runtime_value", "line 2, column 9"),
        (SMF + "smf.ols('y ~ ' + x, data=d)", "python.runtime_value", "line 2, column 9"),
        (
            SMF + "f = 'y ~ x'\nf += ' + z'\nsmf.ols(f, d)",
            "python.runtime_value",
            "line 4, column 9",
        ),
        (SMF + "smf.ols(*args)", "python.runtime_value", "line 2, column 9"),
        (SMF + "smf.ols(formula=f, data=d)", "python.runtime_value", "line 2, column 17"),
        (
            SMF + "smf.mixedlm('y ~ x', d, re_formula=r)",
            "python.runtime_value",
            "line 2, column 36",
        ),
        (SMF + "smf.ols(**{'formula': f})", "python.runtime_value", "line 2, column 23"),
        (SMF + "fit = smf.ols", "python.runtime_value", "line 2, column 11"),
        ("import statsmodels.api as sm\nsm.OLS.from_formula(f, d)", "python.runtime_value", None),
        ("d.query(q)", "python.runtime_value", "line 1, column 9"),
        ("d.eval(expr=e)", "python.runtime_value", "line 1, column 13"),
        (PD + "pd.eval(' + '.join(cols))", "python.runtime_value", "line 2, column 9"),
        ("d.query('a > 1', local_dict=ns)", "python.runtime_value", "line 1, column 29"),
        ("d.query('a > 1', resolvers=[ns])", "python.runtime_value", "line 1, column 28"),
        ("d.query('a > 1', level=2)", "python.runtime_value", "line 1, column 24"),
        ("d.query('a > 1', engine=choice)", "python.runtime_value", "line 1, column 25"),
        ("run = d.query", "python.runtime_value", "line 1, column 9"),
        # Keywords handed over with **.
        (PD + "pd.DataFrame(**options)", "python.runtime_value", "line 2, column 16"),
        (PD + "pd.DataFrame(**dict(data=x))", "python.runtime_value", "line 2, column 16"),
        (PD + "pd.DataFrame(**{key: x})", "python.runtime_value", "line 2, column 16"),
        (PD + "o = {'data': x}\no['copy'] = c\npd.DataFrame(**o)", "python.runtime_value", None),
        ("class M:\n    def f(self, **k):\n        self.g(**k)", "python.runtime_value", None),
        (NP + "np.array(x, **{'allow_pickle': True})", "python.call_denied", "line 2, column 32"),
        # Attribute names, method names and format strings.
        ("d.agg(stat)", "python.runtime_value", "line 1, column 7"),
        ("for s in ['mean']:\n    d.agg(s)", "python.runtime_value", "line 2, column 11"),
        ("d.groupby('g').agg(n=('cost', f))", "python.runtime_value", "line 1, column 31"),
        ("d.apply('query', expr=q)", "python.runtime_value", "line 1, column 9"),
        ("d.transform('read_csv')", "python.file_read", "line 1, column 13"),
        ("d.agg(['mean', '_sources'])", "python.private_access", "line 1, column 16"),
        (SMF + "smf.mixedlm('y ~ x', d, re)", "python.runtime_value", "line 2, column 25"),
        (SMF + "smf.mixedlm('y ~ x', d, '1', {'a': v})", "python.runtime_value", None),
        ("import patsy", "python.import_denied", "line 1, column 8"),
        (
            "import statsmodels.api as sm\nsm.regression.mixed_linear_model.patsy",
            "python.import_denied",
            None,
        ),
        (PD + "pd.core.computation.eval.eval(s)", "python.import_denied", "line 2, column 9"),
        ("n = 'shape'\nn = other\ngetattr(d, n)", "python.call_denied", "line 3, column 1"),
        (PD + "getattr(pd, 'eval')(s)", "python.runtime_value", "line 2, column 13"),
        ("fmt.format(x)", "python.runtime_value", "line 1, column 5"),
        ("('{0.' + a + '}').format(x)", "python.runtime_value", None),
        ("'{0._sources}'.format(x)", "python.private_access", "line 1, column 1"),
        ("import string\nstring.Formatter()", "python.call_denied", "line 2, column 8"),
        # Formula and expression literals outside their languages.
        (SMF + "smf.ols('y ~ helper(x)', d)", "python.evaluated_denied", "line 2, column 9"),
        (SMF + "smf.ols('y ~ x.values', d)", "python.evaluated_denied", "line 2, column 9"),
        (SMF + "smf.ols('y ~ x[0]', d)", "python.evaluated_denied", "line 2, column 9"),
        (SMF + "smf.ols('y ~ np.log(x)', d)", "python.evaluated_denied", "line 2, column 9"),
        (SMF + "C = 1\nsmf.ols('y ~ C(x)', d)", "python.evaluated_denied", "line 3, column 9"),
        (SMF + "smf.ols('y ~ I(open(p))', d)", "python.call_denied", "line 2, column 9"),
        (SMF + "smf.ols('y ~ {x}', d)", "python.evaluated_denied", "line 2, column 9"),
        (
            SMF + "f = 'y ~ (lambda: 1)()'\nsmf.ols(f, d)",
            "python.evaluated_denied",
            "line 2, column 5",
        ),
        ("d.query('@frame.shape[0] > 1')", "python.evaluated_denied", "line 1, column 9"),
        ("d.query('@check(age)')", "python.evaluated_denied", "line 1, column 9"),
        ("d.query('age.astype(str) == \"1\"')", "python.evaluated_denied", "line 1, column 9"),
        ("d.eval('[x for x in a]')", "python.evaluated_denied", "line 1, column 8"),
        ("d.query('a is None')", "python.evaluated_denied", "line 1, column 9"),
        # Readers of files and URLs.
        (PD + "pd.read_csv('/etc/passwd')", "python.file_read", "line 2, column 4"),
        (PD + "pd.read_parquet('/input/visits.parquet')", "python.file_read", "line 2, column 4"),
        ("from pandas import read_json", "python.file_read", "line 1, column 20"),
        (PD + "pd.io.parsers.read_csv('x')", "python.import_denied", "line 2, column 4"),
        (NP + "np.load('/tmp/a.npy')", "python.file_read", "line 2, column 4"),
        (NP + "np.fromfile('/dev/mem')", "python.file_read", "line 2, column 4"),
        (NP + "np.loadtxt('x')\nnp.genfromtxt('x')", "python.file_read", "line 3, column 4"),
        (NP + "alias = np\nalias.load('x')", "python.file_read", "line 3, column 7"),
        (NP + "np.lib.npyio.loadtxt('x')", "python.import_denied", "line 2, column 8"),
        ("import scipy.io", "python.import_denied", "line 1, column 8"),
        ("from scipy.io import loadmat", "python.import_denied", "line 1, column 1"),
        ("import scipy.datasets", "python.import_denied", "line 1, column 8"),
        ("from sklearn.datasets import fetch_openml", "python.file_read", "line 1, column 30"),
        (
            "from sklearn import datasets\ndatasets.load_svmlight_file('x')",
            "python.file_read",
            None,
        ),
        ("import statsmodels.api as sm\nsm.datasets.get_rdataset('x')", "python.file_read", None),
        ("import joblib", "python.import_denied", "line 1, column 8"),
        ("import pathlib", "python.import_denied", "line 1, column 8"),
        ("from urllib.request import urlopen", "python.import_denied", "line 1, column 1"),
        ("t = open('/input/visits.parquet')", "python.call_denied", "line 1, column 5"),
    ],
)
def test_check_python_refuses_unknown_values_with_rule_at_location(
    code: str, rule: str, location: str | None
) -> None:
    findings = found(code)
    if location is None:
        assert rule in {r for r, _ in findings}, findings
    else:
        assert (rule, location) in findings, findings


def test_check_python_runtime_findings_say_how_to_write_it() -> None:
    code = SMF + "smf.ols(f, data=d)\nd.query(q)\npd.DataFrame(**kw)\ns.format(1)\n"

    findings = check_python(code).findings

    assert {f.rule for f in findings} == {"python.runtime_value"}
    assert all(f.message.endswith(".") and f.suggestion for f in findings)
    by_id = {f.message_id: f for f in findings}
    assert 'smf.ols("y ~ x", data=df)' in by_id["python.runtime_value.formula"].suggestion
    assert "@name" in by_id["python.runtime_value.expression"].suggestion
    assert "dict literal" in by_id["python.runtime_value.kwargs"].suggestion
    assert by_id["python.runtime_value.kwargs"].params == {"name": "DataFrame"}


def test_check_python_evaluated_findings_name_their_place_and_reason() -> None:
    (finding,) = check_python(SMF + "smf.ols('y ~ helper(x)', d)").findings

    assert finding.rule == "python.evaluated_denied"
    assert finding.message == (
        "In the formula: It calls helper(), which is not one of the transforms a formula may use."
    )
    assert finding.params == {
        "place_id": "python.evaluated.formula",
        "inner_id": "python.evaluated.call",
        "name": "helper",
    }


# -- the two languages, on their own ---------------------------------------------------

NUMPY = Names(imports={"np": "numpy"}, bound=frozenset({"np"}))


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ x",
        "y ~ 0 + x",
        "y ~ x - 1",
        "~ x",
        "y ~ x * z + x:z + (a + b + c) ** 2 + a / b",
        "np.log(y) ~ np.log1p(x) + np.power(x, 2)",
        "y ~ C(dept, levels=['a', 'b']) + C(sex, Sum)",
        "y ~ bs(age, df=4) + cr(x, df=3) + te(cr(a, df=3), cc(b, df=3))",
        "y ~ I(x > 5) + I((x - 3) ** 2) + I(-x)",
        "y ~ center(x) + standardize(z) + scale(w)",
    ],
)
def test_formula_language_accepts_patsy_formulas(formula: str) -> None:
    assert formula_problems(formula, NUMPY) == []


@pytest.mark.parametrize(
    ("formula", "message_id"),
    [
        ("y ~ eval('1')", "python.evaluated.call"),
        ("y ~ I(__import__('os'))", "python.evaluated.call"),
        ("y ~ np.load('x')", "python.evaluated.call"),
        ("y ~ math.log(x)", "python.evaluated.call"),
        ("y ~ x.real", "python.evaluated.construct"),
        ("y ~ x[0]", "python.evaluated.construct"),
        ("y ~ I(lambda: 1)", "python.evaluated.construct"),
        ("y ~ I([a for a in x])", "python.evaluated.construct"),
        ("y ~ I(__builtins__)", "python.evaluated.name"),
        ("y ~ C(x, **k)", "python.evaluated.construct"),
        ("y ~ (x", "python.evaluated.unreadable"),
        ("y ~ x)", "python.evaluated.unreadable"),
        ("y ~ `x`", "python.evaluated.unreadable"),
        ("y ~ {x + 1}", "python.evaluated.construct"),
    ],
)
def test_formula_language_refuses_the_rest(formula: str, message_id: str) -> None:
    assert message_id in {p.message_id for p in formula_problems(formula, NUMPY)}


def test_formula_language_refuses_transforms_the_job_rebinds() -> None:
    problems = formula_problems("y ~ C(x)", Names(imports={}, bound=frozenset({"C"})))

    assert [p.message_id for p in problems] == ["python.evaluated.shadowed"]


@pytest.mark.parametrize(
    "expression",
    [
        "age > 60",
        "age > 60 and sex == '女' or not (cost < 10)",
        "(a > 1) & ~(b <= 2) | (c != 3)",
        "dept in ['内科', '外科'] and x not in (1, 2)",
        "`length of stay` > 3",
        "cost > @threshold",
        "c = a + b * 2 - d / e // f % g ** h",
        "c = log(a)\nd = sqrt(abs(b))",
    ],
)
def test_expression_language_accepts_pandas_expressions(expression: str) -> None:
    assert expression_problems(expression) == []


@pytest.mark.parametrize(
    ("expression", "message_id"),
    [
        ("a.str.contains('x')", "python.evaluated.expression_call"),
        ("__import__('os')", "python.evaluated.expression_call"),
        ("a.shape", "python.evaluated.construct"),
        ("a[0] > 1", "python.evaluated.construct"),
        ("@f(1)", "python.evaluated.local"),
        ("@frame.shape", "python.evaluated.local"),
        ("@frame['x']", "python.evaluated.local"),
        ("a is b", "python.evaluated.construct"),
        ("lambda: 1", "python.evaluated.construct"),
        ("x if a else y", "python.evaluated.construct"),
        ("__class__ > 1", "python.evaluated.name"),
        ("import os", "python.evaluated.construct"),
        ("a >", "python.evaluated.unreadable"),
        ("log(a, base=2)", "python.evaluated.expression_call"),
    ],
)
def test_expression_language_refuses_the_rest(expression: str, message_id: str) -> None:
    assert message_id in {p.message_id for p in expression_problems(expression)}


# -- properties: no obfuscated form of a denied name or call is accepted -----------------------


def obfuscations(text: str) -> st.SearchStrategy[tuple[list[str], str]]:
    """Ways to write ``text`` as an expression whose value is known only at run time
    (plus the literal itself): (statements before, expression)."""
    cut = st.integers(min_value=0, max_value=len(text))

    def pieces(at: int) -> tuple[str, str]:
        return repr(text[:at]), repr(text[at:])

    codes = ", ".join(str(ord(c)) for c in text)
    return st.one_of(
        st.just(([], repr(text))),
        cut.map(lambda at: ([], "{} + {}".format(*pieces(at)))),
        cut.map(lambda at: ([], "''.join([{}, {}])".format(*pieces(at)))),
        cut.map(lambda at: ([], "str.join('', ({}, {}))".format(*pieces(at)))),
        cut.map(lambda at: ([], "'%s%s' % ({}, {})".format(*pieces(at)))),
        cut.map(lambda at: ([], "'{{}}{{}}'.format({}, {})".format(*pieces(at)))),
        cut.map(lambda at: ([f"head, tail = {pieces(at)[0]}, {pieces(at)[1]}"], "f'{head}{tail}'")),
        cut.map(lambda at: ([f"head = {pieces(at)[0]}"], f"f'{{head}}' + {pieces(at)[1]}")),
        cut.map(lambda at: ([f"a = {pieces(at)[0]}", f"b = {pieces(at)[1]}"], "a + b")),
        st.just(([], f"{('x' + text + 'y')!r}[1:-1]")),
        st.just(([], f"{text[::-1]!r}[::-1]")),
        st.just(([], f"''.join(reversed({text[::-1]!r}))")),
        st.just(([], f"bytes.fromhex({text.encode().hex()!r}).decode()")),
        st.just(([], f"''.join(map(chr, [{codes}]))")),
        st.just(([], " + ".join(f"chr({ord(c)})" for c in text) or "''")),
        st.just(([], f"{text.upper()!r}.lower()" if text.islower() else f"{text!r}.strip()")),
        st.just(([], f"{{'k': {text!r}}}['k']")),
        st.just(([], f"{text.replace('_', '_X')!r}.replace('X', '')")),
        st.just(([f"name = {text!r}", "if flag:", "    name = 'shape'"], "name")),
        st.just(([f"for name in [{text!r}]:", "    pass"], "name")),
    )


@dataclass(frozen=True)
class Sink:
    """A way of using a string, with the strings it must not be given."""

    before: str
    template: str  # {e}: the obfuscated expression
    targets: tuple[str, ...]


ATTRIBUTES = (
    "__class__",
    "__globals__",
    "__builtins__",
    "__subclasses__",
    "__import__",
    "f_globals",
    "gi_frame",
    "_outputs",
    "read_csv",
    "read_pickle",
    "fromfile",
    "query",
    "eval",
    "format",
    "to_clipboard",
)
BUILTINS = ("eval", "exec", "open", "compile", "__import__", "getattr", "vars", "globals")
MODULES = ("os", "subprocess", "socket", "ctypes", "importlib", "pickle", "builtins", "sys")
SINKS = (
    Sink("import sandbox_job\n", "x = getattr(sandbox_job, {e})", ATTRIBUTES),
    Sink(PD, "x = getattr(getattr(pd, 'DataFrame'), {e})", ATTRIBUTES),
    Sink("", "x = getattr(getattr(frame, {e}), {e})", ATTRIBUTES),
    Sink("", "setattr(frame, {e}, None)", ATTRIBUTES),
    Sink("", "ok = hasattr(frame, {e})", ATTRIBUTES),
    Sink("import operator\n", "x = operator.attrgetter({e})(frame)", ATTRIBUTES),
    Sink("from operator import methodcaller\n", "x = methodcaller({e})(frame)", ATTRIBUTES),
    Sink("", "x = vars(frame)[{e}]", ATTRIBUTES + BUILTINS),
    Sink("", "x = globals()[{e}]", BUILTINS),
    Sink("", "x = locals()[{e}]", BUILTINS),
    Sink("", "x = frame.__dict__[{e}]", ATTRIBUTES),
    Sink("import sandbox_job\n", "x = sandbox_job.__dict__[{e}]", ATTRIBUTES + BUILTINS),
    Sink("", "x = __builtins__[{e}]", BUILTINS),
    Sink("import importlib\n", "m = importlib.import_module({e})", MODULES),
    Sink("", "m = __import__({e})", MODULES),
    Sink(PD, "t = pd.read_csv(**{{{e}: '/etc/passwd'}})", ("filepath_or_buffer",)),
    Sink(NP, "a = np.asarray(x, **{{{e}: True}})", ("allow_pickle",)),
    Sink("", "t = frame.query('a > 1', **{{{e}: {{}}}})", ("local_dict", "resolvers")),
    Sink(SMF, "m = smf.ols(**{{{e}: formula, 'data': frame}})", ("formula",)),
    Sink(PD, "t = pd.DataFrame(**{{{e}: True}})", ("allow_pickle",)),
    Sink(
        SMF,
        "m = smf.ols({e}, data=frame)",
        ("y ~ I(eval('1'))", "y ~ I(__import__('os'))", "y ~ helper(x)", "y ~ x.__class__"),
    ),
    Sink(
        "",
        "t = frame.query({e})",
        ("@frame.__class__", "@run(1)", "a.__class__ > 1", "__import__('os')"),
    ),
    Sink(PD, "t = pd.eval({e})", ("a.__class__", "@run()", "open('/etc/passwd')")),
    Sink("", "s = ({e}).format(frame)", ("{0.__class__}", "{0.__globals__}", "{0._sources}")),
    Sink("", "t = frame.apply({e}, expr=q)", ("query", "eval", "read_csv", "__class__")),
    Sink("", "t = frame.agg({e})", ATTRIBUTES),
    Sink("", "t = frame.groupby('d').agg(n=('cost', {e}))", ATTRIBUTES),
    Sink(SMF, "m = smf.mixedlm('y ~ x', frame, {e})", ("1 + eval('1')", "1 + helper(x)")),
    Sink(
        "import statsmodels.api as sm\n",
        "m = sm.regression.mixed_linear_model.patsy.dmatrix({e}, frame)",
        ("y ~ x", "eval('1')"),
    ),
)


@st.composite
def obfuscated_program(draw: st.DrawFn) -> str:
    sink = draw(st.sampled_from(SINKS))
    target = draw(st.sampled_from(sink.targets))
    before, expression = draw(obfuscations(target))
    return (
        sink.before + "".join(f"{line}\n" for line in before) + sink.template.format(e=expression)
    )


@settings(max_examples=2000, deadline=None)
@given(code=obfuscated_program())
def test_check_python_accepts_no_obfuscated_denied_name_or_call(code: str) -> None:
    compile(code, "<job>", "exec")  # the generated job is valid Python

    decision = check_python(code)

    assert not decision.allowed, code
