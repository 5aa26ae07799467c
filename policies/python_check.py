"""The Python checker: a guard rail in front of the runner, not a sandbox.

An analyst's Python job runs in the Docker runner (no network, read-only
root, no capabilities, limits); that container is the security boundary.
This check stands in front of it so that honest mistakes and the usual
escape attempts are refused early, with a message that says what, why and
where, and so that an auditor sees them refused instead of contained.

Rules (every finding is reported at once, each at "line L, column C"):

``python.too_long``
    more than MAX_PYTHON_CHARS characters;
``python.syntax``
    the code does not parse (or is nested too deeply to analyse);
``python.import_not_allowed``
    a module outside ALLOWED_MODULES (decided by the top-level package),
    a relative import; unknown modules are not allowed (fail closed);
``python.import_denied``
    a module of a denied family (processes, native code, files, network,
    code loading, code-running serialisation, engines), a denied submodule
    of an allowed package (``numpy.ctypeslib``), or one of these reached as
    an attribute of an imported module (``warnings.sys``, ``np.ctypeslib``);
``python.star_import``
    ``from x import *``;
``python.call_denied``
    a builtin that runs or loads code, reads files or the interpreter's
    namespaces (DENIED_BUILTINS), even when passed around uncalled;
    ``getattr``/``setattr``/``delattr``/``hasattr`` and
    ``operator.attrgetter``/``methodcaller`` with a name that is not a string
    literal; library functions that run code (DENIED_ATTRIBUTES:
    ``read_pickle``, ``allow_pickle=True``, ...);
``python.dunder_access``
    a dunder name or attribute (``__class__``, ``__globals__``,
    ``__builtins__``, ...), a string literal naming one, or a frame, code or
    traceback attribute (``gi_frame``, ``f_globals``, ...), which reach the
    same internals without underscores. Allowed: ``__name__``; dunder
    methods and class attributes defined in the job's own class, and
    ``__init__`` inside it (``super().__init__()``); ``__future__``;
``python.private_access``
    a private (``_``-prefixed) module or attribute of an imported module
    (``collections._sys``, ``sandbox_job._outputs``);
``python.file_read``
    a reader of files or URLs (``pd.read_csv``, ``np.load``/``fromfile``/
    ``loadtxt``/``genfromtxt``, ``scipy.io``, ``sklearn.datasets.fetch_*``,
    ``sm.datasets.get_rdataset``, ...): a job's data is its view, read with
    ``sandbox_job.table()``;
``python.runtime_value``
    a value whose safety depends on what it is, not known to this check: a
    formula or a ``query``/``eval`` expression that is not a string literal
    (nor a name bound once to one), ``**kwargs`` into a call that is not the
    job's own function unless the dict is a literal with string keys (or a
    name bound once to one and only ever unpacked), ``engine=``/``parser=``/
    ``eval_env=`` that are not literals, ``query``/``eval`` given namespaces
    (``local_dict``, ``resolvers``, ``level``, ...), a format string that is
    not a literal (its fields name attributes), a formula function or
    ``query``/``eval``/``format`` passed around uncalled or reached by name
    (``getattr(pd, "eval")``, ``df.apply("query", ...)``), and anything but a
    literal name or a function handed to ``agg``/``aggregate`` (pandas looks
    names up as attributes); a mixed model's ``re_formula``/``vc_formula``
    count as formulas, by keyword or by position;
``python.evaluated_denied``
    a formula or an expression literal that leaves its language
    (policies/python_evaluated.py): formulas call only patsy's transforms and
    NumPy's elementwise functions; expressions use columns, literals,
    comparisons, arithmetic, ``@name`` as it is and pandas' math functions.

A name "bound once to a literal" is bound in exactly one place in the whole
job (assignments, parameters, loops, imports, ``global`` ... all count), by a
plain ``name = "literal"``: nothing the check cannot see can change it.
Literals are checked as code as well (denied builtins, dunders, denied
attributes), and so are strings with ``~`` handed to any call and string
annotations (``typing.get_type_hints``, ``functools.singledispatch``
evaluate them).

Judgement calls:

- An allowed package's submodules are allowed unless listed:
  ``numpy.ctypeslib`` (loads native libraries), ``numpy.f2py`` (compiles and
  runs a compiler), ``pandas.io`` (below). Left allowed: ``numpy.testing``.
- Readers of files and URLs are refused (``pd.read_csv('/etc/passwd')``),
  and with them ``pandas.io``, ``scipy.io``, ``scipy.datasets``,
  ``statsmodels.iolib`` and ``numpy.lib.npyio``: the view is a job's only
  data. Writers (``np.save('/tmp/a.npy')``, ``df.to_csv``) stay allowed:
  only declared outputs leave the runner, and nothing can read them back.
- A module assigned to a name (``x = np``) is judged as that module in every
  use of the name (``x.load`` is ``np.load``).
- ``memoryview`` is refused: no analysis needs it, and it is a usual
  ingredient of interpreter memory-corruption exploits.
- ``csv``, ``json`` and ``hashlib`` are allowed for in-memory use; ``uuid``
  is not (``uuid1`` reads the host's MAC address).
- Escape module names reached as attributes are only checked on imported
  modules: a column called ``sys`` (systolic pressure) or ``os`` (overall
  survival) must stay usable as ``df.sys``. ``io``, ``select`` and
  ``signal`` are not checked as attributes at all: ``np.select`` and
  ``scipy.signal`` are public APIs (``pd.io`` is refused as ``pandas.io``).

``patsy``, ``formulaic``, ``numexpr``, ``pandas.core.computation`` and
``statsmodels.formula.formulatools`` are denied (``python.import_denied``),
also as attributes of modules that import them: they evaluate strings
handed to them directly.

``apply``/``transform`` also take data (scikit-learn's ``transform(X)``,
``apply(X)``), so there only a value that may be a string built at run time
is refused (one holding a string literal, chr(), a string method ..., or a
name assigned or looped over one; indexing data by column names is data).

Known limits: a string handed in through a function's parameter
(``def f(n): df.apply(n)``) is not followed to its callers. A
method of an object (``self.fit(**kw)``) is not known to be the job's own, so
``**`` into it is refused. A module reached other than by import or plain
assignment (``(np,)[0].load``) is not recognised. The container stays the
boundary.
"""

from __future__ import annotations

import ast
import builtins
import io
import re
import string
import tokenize
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from policies.decision import Decision, Finding, Phrase
from policies.python_evaluated import Names, dotted, expression_problems, formula_problems

MAX_PYTHON_CHARS = 100_000

# -- what a job may import ----------------------------------------------------

ANALYSIS_MODULES = frozenset({"pandas", "numpy", "scipy", "statsmodels", "sklearn"})
# The helper that reads the view and declares outputs (runners/harness).
HARNESS_MODULES = frozenset({"sandbox_job"})
# Standard library modules that compute and nothing else. csv and json are
# for in-memory use (the container bounds the rest); time is for timing.
STDLIB_MODULES = frozenset(
    {
        "__future__",
        "math",
        "statistics",
        "collections",
        "itertools",
        "functools",
        "operator",
        "datetime",
        "time",
        "calendar",
        "re",
        "json",
        "csv",
        "decimal",
        "fractions",
        "random",
        "string",
        "textwrap",
        "typing",
        "dataclasses",
        "enum",
        "copy",
        "heapq",
        "bisect",
        "numbers",
        "hashlib",
        "warnings",
    }
)
ALLOWED_MODULES = ANALYSIS_MODULES | HARNESS_MODULES | STDLIB_MODULES

# -- what a job may never import, by why ---------------------------------------

# Processes, signals, the environment, users, the interpreter itself.
PROCESS_MODULES = frozenset(
    {
        "os",
        "sys",
        "subprocess",
        "multiprocessing",
        "threading",
        "_thread",
        "concurrent",
        "signal",
        "resource",
        "pty",
        "tty",
        "termios",
        "fcntl",
        "posix",
        "pwd",
        "grp",
        "platform",
        "sysconfig",
        "atexit",
        "faulthandler",
    }
)
# Native code and raw memory: the way out of the interpreter.
NATIVE_CODE_MODULES = frozenset({"ctypes", "cffi", "mmap", "numpy.ctypeslib", "numpy.f2py"})
# The file system: jobs read their view through sandbox_job.
FILE_MODULES = frozenset(
    {
        "io",
        "pathlib",
        "shutil",
        "tempfile",
        "glob",
        "fnmatch",
        "fileinput",
        "filecmp",
        "zipfile",
        "tarfile",
        "linecache",
        # The libraries' own readers and downloaders of paths and URLs.
        "pandas.io",
        "numpy.lib.npyio",
        "scipy.io",
        "scipy.datasets",
        "statsmodels.iolib",
    }
)
# The network, and programs that talk to the desktop (the clipboard, a browser).
NETWORK_MODULES = frozenset(
    {
        "socket",
        "ssl",
        "select",
        "selectors",
        "asyncio",
        "socketserver",
        "urllib",
        "http",
        "requests",
        "httpx",
        "ftplib",
        "smtplib",
        "poplib",
        "imaplib",
        "telnetlib",
        "xmlrpc",
        "webbrowser",
        "pandas.io.clipboard",
        "pandas.io.clipboards",
    }
)
# Loading, compiling or inspecting code, and reaching frames and namespaces.
CODE_LOADING_MODULES = frozenset(
    {
        "importlib",
        "builtins",
        "inspect",
        "gc",
        "code",
        "codeop",
        "runpy",
        "site",
        "types",
        "ast",
        "dis",
        "traceback",
        "pdb",
        "pydoc",
        "pkgutil",
        "zipimport",
        "weakref",
    }
)
# Serialisation formats whose loading runs arbitrary code.
CODE_RUNNING_SERIALISATION_MODULES = frozenset(
    {"pickle", "marshal", "shelve", "copyreg", "dill", "cloudpickle", "joblib"}
)
# Engines with their own file and network access: the runner's SQL engine
# (analysts use pandas, or submit a SQL job) and PyArrow's file systems.
ENGINE_MODULES = frozenset({"duckdb", "sqlite3", "pyarrow.fs"})
# What statsmodels and pandas evaluate formulas and expressions with, reachable as
# attributes of their modules (a mixed model's module imports patsy): called
# directly, they take strings this check never sees. The public front doors
# (statsmodels.formula.api, DataFrame.query/eval) are checked instead.
EVALUATING_MODULES = frozenset(
    {"patsy", "formulaic", "numexpr", "pandas.core.computation", "statsmodels.formula.formulatools"}
)

_EVALUATES_STRINGS = Phrase("python.reason.evaluates_strings", "it evaluates strings as code")
_DENIAL_REASONS = {
    PROCESS_MODULES: Phrase(
        "python.reason.process",
        "it reaches the operating system (processes, environment, interpreter)",
    ),
    NATIVE_CODE_MODULES: Phrase(
        "python.reason.native_code", "it runs native code or touches raw memory"
    ),
    FILE_MODULES: Phrase(
        "python.reason.files",
        "it works on the file system; read your tables with sandbox_job.table()",
    ),
    NETWORK_MODULES: Phrase(
        "python.reason.network", "it opens network connections or starts desktop programs"
    ),
    CODE_LOADING_MODULES: Phrase(
        "python.reason.code_loading",
        "it loads, compiles or inspects code and the interpreter's state",
    ),
    CODE_RUNNING_SERIALISATION_MODULES: Phrase(
        "python.reason.serialisation", "loading its data runs arbitrary code"
    ),
    ENGINE_MODULES: Phrase(
        "python.reason.engine",
        "it has its own file and network access; use pandas on "
        "sandbox_job.table(), or submit a SQL job",
    ),
    EVALUATING_MODULES: _EVALUATES_STRINGS,
}
DENIED_MODULES = frozenset().union(*_DENIAL_REASONS)
# Escape modules that allowed modules re-export (warnings.sys,
# pandas.io.common.os): checked as attributes of imported modules. Left out
# where the name is a public API: pd.io, pd.api.types, np.select, scipy.signal.
ESCAPE_ATTRIBUTE_NAMES = frozenset(
    name for name in DENIED_MODULES if "." not in name and not name.startswith("_")
) - {"io", "types", "select", "signal"}
# Denied submodules whose names are distinctive enough to refuse on any object.
DENIED_SUBMODULE_NAMES = {"ctypeslib": "numpy.ctypeslib", "f2py": "numpy.f2py"}

# -- what a job may not call ----------------------------------------------------

# Builtins that run code from strings, read files or stdin, start a debugger
# or a pager, or hand out namespaces (which hold __builtins__), with why.
_RUNS_STRINGS = Phrase(
    "python.reason.runs_strings", "it runs code from a string, which this check cannot see"
)
_HANDS_OUT_NAMESPACE = Phrase(
    "python.reason.namespace", "it hands out the job's namespace, builtins included"
)
_BUILTIN_REASONS = {
    "eval": _RUNS_STRINGS,
    "exec": _RUNS_STRINGS,
    "compile": Phrase(
        "python.reason.compiles", "it turns a string into code, which this check cannot see"
    ),
    "__import__": Phrase(
        "python.reason.imports_by_name", "it imports modules by name, around this check"
    ),
    "open": Phrase("python.reason.open", "a job reads its tables through sandbox_job"),
    "input": Phrase("python.reason.input", "a job has no one to answer"),
    "breakpoint": Phrase("python.reason.debugger", "a job cannot be debugged interactively"),
    "help": Phrase("python.reason.help", "it starts the documentation browser"),
    "globals": _HANDS_OUT_NAMESPACE,
    "locals": _HANDS_OUT_NAMESPACE,
    "vars": Phrase("python.reason.object_namespace", "it hands out an object's namespace"),
    "memoryview": Phrase("python.reason.memoryview", "no analysis needs raw memory views"),
}
DENIED_BUILTINS = frozenset(_BUILTIN_REASONS)
# Attribute access by a computed name hides what is reached; allowed only
# called directly with a string literal, which is then checked as an attribute.
GETATTR_BUILTINS = frozenset({"getattr", "setattr", "delattr", "hasattr"})
ATTRGETTER_PATHS = frozenset({"operator.attrgetter", "operator.methodcaller"})
# Library functions, by attribute name on any object, that run code.
_UNPICKLING = Phrase("python.reason.unpickling", "unpickling runs code stored in the file")
_CLIPBOARD = Phrase("python.reason.clipboard", "it runs a clipboard program")
_NATIVE_ADDRESS = Phrase("python.reason.native_address", "it calls native functions by address")
DENIED_ATTRIBUTES = {
    "read_pickle": _UNPICKLING,
    "load_pickle": _UNPICKLING,
    "read_clipboard": _CLIPBOARD,
    "to_clipboard": _CLIPBOARD,
    "LowLevelCallable": _NATIVE_ADDRESS,
    "from_cython": _NATIVE_ADDRESS,
    "get_type_hints": _EVALUATES_STRINGS,
    "ForwardRef": _EVALUATES_STRINGS,
    "webdoc": Phrase("python.reason.browser", "it starts a web browser"),
}
# The same, by dotted path where the name alone is too common.
DENIED_PATHS = {
    "statsmodels.api.load": _UNPICKLING,
    "string.Formatter": Phrase(
        "python.reason.formatter", "it reads the attributes a format string names at run time"
    ),
}
# Keywords that make a loader unpickle.
DENIED_TRUE_KEYWORDS = {"allow_pickle": _UNPICKLING}

# Readers of files and URLs, by attribute name on any object: a job's data is its
# view, read with sandbox_job.table(); it has no other files to read.
FILE_READERS = frozenset(
    {
        *(
            f"read_{kind}"
            for kind in (
                "csv table fwf excel json html xml parquet feather orc sas spss stata hdf "
                "sql sql_query sql_table gbq"
            ).split()
        ),
        "HDFStore",
        "ExcelFile",
        "fromfile",
        "loadtxt",
        "genfromtxt",
        "fromregex",
        "recfromcsv",
        "recfromtxt",
        "memmap",
        "open_memmap",
        "DataSource",
        "load_npz",
        "loadmat",
        "loadarff",
        "mmread",
        "readsav",
        "netcdf_file",
        "FortranFile",
        "hb_read",
        "load_svmlight_file",
        "load_svmlight_files",
        "load_files",
        "get_rdataset",
        "webuse",
        "genfromdta",
    }
)
# The same by dotted path, where the name alone is too common (load).
FILE_READER_PATHS = frozenset({"numpy.load"})
# Within these packages any read_* and fetch_* reads or downloads (sklearn.datasets.fetch_openml).
FILE_READER_PACKAGES = frozenset({"pandas", "numpy", "scipy", "statsmodels", "sklearn"})
FILE_READER_PREFIXES = ("read_", "fetch_")
SUGGEST_VIEW = "Read your tables with sandbox_job.table('visits'); sandbox_job.tables() lists them."

# Calls whose arguments are evaluated as code or choose how: these must be known
# (literals, or names bound once to literals), or the call is refused.
FORMULA_API_PREFIXES = ("statsmodels.formula.api.", "statsmodels.api.formula.")
FORMULA_CONSTRUCTOR = "from_formula"
# The keywords a query()/eval() may take, each a literal; local_dict, global_dict,
# resolvers, level and target hand the expression values or frames this check cannot see.
EXPRESSION_KEYWORDS = frozenset({"engine", "parser", "inplace"})
# Keywords that choose an engine or a namespace for evaluation, on any call.
LITERAL_KEYWORDS = frozenset({"engine", "parser", "eval_env"})
FORMAT_METHODS = frozenset({"format", "format_map"})
# pandas methods that take a function or a method's name, looked up with getattr
# (df.agg("mean"), df.apply("query", expr=...)): literal names are checked as
# attributes. agg/aggregate take nothing else unknown (a function is a lambda, the
# job's own def, a library's np.mean or a builtin); apply/transform may, because
# scikit-learn's transform(X) and apply(X) take data under the same names.
NAMED_METHOD_CALLERS = frozenset({"agg", "aggregate", "apply", "transform"})
STRICT_METHOD_CALLERS = frozenset({"agg", "aggregate"})
# What builds a string at run time, for telling names from data in apply/transform.
STRING_MAKERS = frozenset({"chr", "str", "bytes", "bytearray", "format", "repr", "ascii"})
STRING_METHODS = frozenset(
    {"decode", "join", "format", "format_map", "replace", "lower", "upper", "strip", "lstrip"}
    | {"rstrip", "removeprefix", "removesuffix", "casefold", "swapcase", "title", "fromhex"}
)
NAMED_AGGREGATION = "pandas.NamedAgg"
CALLABLE_BUILTINS = (
    frozenset(
        name
        for name in dir(builtins)
        if not name.startswith("_") and callable(getattr(builtins, name))
    )
    - DENIED_BUILTINS
    - GETATTR_BUILTINS
)

# -- dunders and interpreter internals ------------------------------------------

DUNDER = re.compile(r"__[A-Za-z]\w*__", re.ASCII)
ALLOWED_DUNDERS = frozenset({"__name__"})
ALLOWED_DUNDER_STRINGS = frozenset({"__main__", "__name__"})
# Frame, code, generator and traceback attributes: the namespaces of running
# code (f_globals holds __builtins__) without a single underscore.
INTERNAL_ATTRIBUTES = frozenset(
    {
        "gi_frame",
        "gi_code",
        "gi_yieldfrom",
        "cr_frame",
        "cr_code",
        "cr_await",
        "ag_frame",
        "ag_code",
        "ag_await",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_back",
        "f_code",
        "f_trace",
        "tb_frame",
        "tb_next",
        "co_code",
        "co_consts",
        "co_names",
        "func_globals",
        "func_code",
    }
)

# Library calls that evaluate a string argument as an expression.
EXPRESSION_METHODS = frozenset({"query", "eval"})

SUGGEST_ALLOWED = (
    "Read tables with sandbox_job.table() and analyse them with pandas, numpy, scipy, "
    "statsmodels or scikit-learn (sklearn)."
)
SUGGEST_PUBLIC_API = "Use the library's public API instead."
SUGGEST_FORMULA = (
    "Use column names, ~ + - * / : ** and brackets, C(), I() with arithmetic, Q(), center(), "
    "standardize(), scale(), bs(), cr(), cc(), te() and numpy functions such as np.log(); "
    "compute anything else as a column first."
)
SUGGEST_EXPRESSION = (
    "Use column names, comparisons, arithmetic, literals, @name and functions such as log(); "
    "compute anything else before the expression."
)


def check_python(code: str) -> Decision:
    """Check an analyst's Python job before it is queued for the runner."""
    if len(code) > MAX_PYTHON_CHARS:
        return Decision.deny(
            Finding.of(
                "python.too_long",
                "The job is %(length)s characters long; the limit is %(limit)s.",
                suggestion="Keep the analysis in the job and the data in the view.",
                length=len(code),
                limit=MAX_PYTHON_CHARS,
            )
        )
    try:
        tree = ast.parse(code, filename="<job>")
    except SyntaxError as error:
        location = None
        if error.lineno:
            location = f"line {error.lineno}, column {max(1, error.offset or 1)}"
        return Decision.deny(
            Finding.of("python.syntax", "Syntax error: %(error)s.", location, error=error.msg)
        )
    except (RecursionError, MemoryError):
        return Decision.deny(
            Finding(
                "python.syntax",
                "The code is nested too deeply to be analysed.",
                message_id="python.syntax.too_deep",
            )
        )
    findings = _Checker(code, tree).run()
    if findings:
        return Decision.deny(*findings)
    return Decision.allow()


def tables_read(code: str) -> frozenset[str] | None:
    """The view tables a (checked) job reads with ``sandbox_job.table("name")``; None when it
    may read others (a name that is not a literal, or ``sandbox_job.tables()``)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, RecursionError, MemoryError):
        return None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("table", "tables"):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id == "sandbox_job"):
                continue
            call = next(
                (p for p in ast.walk(tree) if isinstance(p, ast.Call) and p.func is node), None
            )
            if node.attr == "tables" or call is None:
                return None  # listing tables, or the function passed around
            first = call.args[0] if call.args else None
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                return None
            names.add(first.value)
        elif isinstance(node, ast.Name) and node.id in ("table", "tables"):
            return None  # from sandbox_job import table: any name
    return frozenset(names)


def is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def allowed_module_list() -> str:
    return ", ".join(sorted(ALLOWED_MODULES - {"__future__"}))


@dataclass(frozen=True)
class _Scope:
    in_class: bool = False  # anywhere inside a class the job defines
    class_body: bool = False  # directly in that class's body


@dataclass(frozen=True)
class _Literal:
    """A string the check knows: its text, and the literal it was written as."""

    text: str
    node: ast.AST


@dataclass(frozen=True)
class _Issue:
    rule: str
    message: str
    suggestion: str | None = None


class _Checker:
    def __init__(self, code: str, tree: ast.Module) -> None:
        self.lines = code.splitlines()
        self.tree = tree
        self.found: list[tuple[int, int, Finding]] = []
        imports = _imported_modules(tree)
        self.modules = _with_aliases(tree, imports)
        # Every binding of every name, and the value of each plain assignment, so that
        # a name bound once to a literal counts as that literal.
        self.bindings = _bindings(tree)
        self.assigned = _assigned_values(tree)
        self.loads: dict[str, list[ast.Name]] = {}
        for name in ast.walk(tree):
            if isinstance(name, ast.Name) and isinstance(name.ctx, ast.Load):
                self.loads.setdefault(name.id, []).append(name)
        self.keyword_values = {id(k.value) for k in ast.walk(tree) if isinstance(k, ast.keyword)}
        self.loop_sources = _loop_sources(tree)
        self.string_names: dict[str, bool] = {}
        self.names = Names(
            imports={n: p for n, p in imports.items() if len(self.bindings.get(n, ())) == 1},
            bound=frozenset(self.bindings),
        )
        # Nodes already judged by their parent (a called getattr, a docstring).
        self.handled: set[int] = set()
        # Functions that are called where they appear (the func of a Call).
        self.called: set[int] = set()

    def run(self) -> list[Finding]:
        for node, scope in _walk(self.tree):
            self.visit(node, scope)
        ordered = sorted(self.found, key=lambda item: (item[0], item[1]))
        return list(dict.fromkeys(finding for _, _, finding in ordered))

    # -- reporting --------------------------------------------------------------

    def add(self, issue: _Issue, line: int, byte_offset: int) -> None:
        column = self.column(line, byte_offset)
        location = f"line {line}, column {column}"
        self.found.append(
            (line, column, Finding(issue.rule, issue.message, location, issue.suggestion))
        )

    def add_at(self, issue: _Issue, node: ast.AST) -> None:
        self.add(issue, getattr(node, "lineno", 1), getattr(node, "col_offset", 0))

    def column(self, line: int, byte_offset: int) -> int:
        """1-based character column of ast's 0-based UTF-8 byte offset."""
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        prefix = text.encode("utf-8")[: max(0, byte_offset)]
        return len(prefix.decode("utf-8", errors="replace")) + 1

    def add_at_attribute(self, issue: _Issue, node: ast.Attribute) -> None:
        # Point at the attribute's name, not at the start of the expression.
        line = node.end_lineno or node.lineno
        end = node.end_col_offset if node.end_col_offset is not None else node.col_offset
        self.add(issue, line, end - len(node.attr.encode("utf-8")))

    # -- nodes ------------------------------------------------------------------

    def visit(self, node: ast.AST, scope: _Scope) -> None:
        # ast.parse builds nodes of exactly these classes, so a node's class picks its visitor.
        visitor = _VISITORS.get(type(node))
        if visitor is not None:
            visitor(self, node, scope)

    def visit_import(self, node: ast.Import, scope: _Scope) -> None:
        for alias in node.names:
            for issue in _module_issues(alias.name):
                self.add_at(issue, alias)
            self.check_bound_name(alias.asname, alias)

    def visit_expression_statement(self, node: ast.Expr, scope: _Scope) -> None:
        if _is_str(node.value):
            self.handled.add(id(node.value))  # a docstring or a bare string: never used

    def visit_constant(self, node: ast.Constant, scope: _Scope) -> None:
        if isinstance(node.value, str) and id(node) not in self.handled:
            self.check_string(node.value, node)

    def visit_definition(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, scope: _Scope
    ) -> None:
        if is_dunder(node.name) and not scope.class_body:
            self.add(_dunder_issue(node.name), node.lineno, _name_offset(node))
        if not isinstance(node, ast.ClassDef) and node.returns is not None:
            self.check_annotation(node.returns)

    def visit_arg(self, node: ast.arg, scope: _Scope) -> None:
        self.check_bound_name(node.arg, node)
        if node.annotation is not None:
            self.check_annotation(node.annotation)

    def visit_annotated_assignment(self, node: ast.AnnAssign, scope: _Scope) -> None:
        self.check_annotation(node.annotation)

    def visit_declaration(self, node: ast.Global | ast.Nonlocal, scope: _Scope) -> None:
        for name in node.names:
            self.check_bound_name(name, node)

    def visit_named_capture(
        self, node: ast.ExceptHandler | ast.MatchAs | ast.MatchStar, scope: _Scope
    ) -> None:
        self.check_bound_name(node.name, node)

    def visit_match_mapping(self, node: ast.MatchMapping, scope: _Scope) -> None:
        self.check_bound_name(node.rest, node)

    def visit_match_class(self, node: ast.MatchClass, scope: _Scope) -> None:
        # case C(__class__=x) reads the attribute without an Attribute node.
        for attr in node.kwd_attrs:
            for issue in _attribute_issues(attr, None):
                self.add_at(issue, node)

    def check_bound_name(self, name: str | None, node: ast.AST) -> None:
        if name and is_dunder(name) and name not in ALLOWED_DUNDERS:
            self.add_at(_dunder_issue(name), node)

    def visit_import_from(self, node: ast.ImportFrom, scope: _Scope) -> None:
        if node.level:
            self.add_at(
                _Issue(
                    "python.import_not_allowed",
                    Phrase(
                        "python.import_not_allowed.relative",
                        "Relative imports are not allowed: a job is a single file.",
                    ),
                    SUGGEST_ALLOWED,
                ),
                node,
            )
            return
        module = node.module or ""
        module_issues = _module_issues(module)
        for issue in module_issues:
            self.add_at(issue, node)
        for alias in node.names:
            if alias.name == "*":
                self.add_at(
                    _Issue(
                        "python.star_import",
                        Phrase(
                            "python.star_import",
                            "'from %(module)s import *' hides which names the job uses.",
                            module=module,
                        ),
                        f"Import the module ('import {module}') or the names you need.",
                    ),
                    alias,
                )
                continue
            if module == "__future__":
                continue
            if not module_issues:
                for issue in _attribute_issues(alias.name, module):
                    self.add_at(issue, alias)
            elif f"{module}.{alias.name}" in DENIED_MODULES:
                # from pyarrow import fs: the denial says more than "not allowed".
                path = f"{module}.{alias.name}"
                self.add_at(_denied_module_issue(path, path), alias)
            self.check_bound_name(alias.asname, alias)

    def visit_name(self, node: ast.Name, scope: _Scope) -> None:
        if id(node) in self.handled:
            return
        name = node.id
        if name in DENIED_BUILTINS and not isinstance(node.ctx, ast.Load):
            self.add_at(
                _Issue(
                    "python.call_denied",
                    Phrase(
                        "python.call_denied.shadowed",
                        "'%(name)s' is the name of a denied builtin; a variable may not take it.",
                        name=name,
                    ),
                    f"Call the variable something else, e.g. '{name}_'.",
                ),
                node,
            )
        elif name in DENIED_BUILTINS:
            self.add_at(_builtin_issue(name), node)
        elif name in GETATTR_BUILTINS:
            self.add_at(_computed_name_issue(name, passed=True), node)
        elif self.modules.get(name) in ATTRGETTER_PATHS:
            self.add_at(_computed_name_issue(name, passed=True), node)
        elif (
            _is_formula_path(self.modules.get(name))
            and isinstance(node.ctx, ast.Load)
            and id(node) not in self.called
        ):
            self.add_at(_passed_evaluator_issue(name), node)
        elif is_dunder(name) and name not in ALLOWED_DUNDERS:
            if not (isinstance(node.ctx, ast.Store) and scope.class_body):
                self.add_at(_dunder_issue(name), node)

    def visit_attribute(self, node: ast.Attribute, scope: _Scope) -> None:
        if node.attr == "__init__" and scope.in_class:
            return  # super().__init__() in the job's own class
        root_path = _module_path(node.value, self.modules)
        for issue in _attribute_issues(node.attr, root_path):
            self.add_at_attribute(issue, node)
        path = f"{root_path}.{node.attr}" if root_path else None
        if path in ATTRGETTER_PATHS and id(node) not in self.handled:
            self.add_at_attribute(_computed_name_issue(path, passed=True), node)
        if id(node) not in self.called and (
            node.attr in EXPRESSION_METHODS
            or node.attr == FORMULA_CONSTRUCTOR
            or _is_formula_path(path)
            or (node.attr in FORMAT_METHODS and self.known_string(node.value) is None)
        ):
            self.add_at_attribute(_passed_evaluator_issue(node.attr), node)

    def visit_call(self, node: ast.Call, scope: _Scope) -> None:
        func = node.func
        self.called.add(id(func))
        if isinstance(func, ast.Name) and func.id in GETATTR_BUILTINS:
            self.handled.add(id(func))
            self.check_getattr(func.id, node)
        path = _module_path(func, self.modules)
        if path in ATTRGETTER_PATHS:
            self.handled.add(id(func))
            self.check_attrgetter(path, node)
        if (isinstance(func, ast.Attribute) and func.attr in EXPRESSION_METHODS) or (
            path is not None and path.rpartition(".")[2] in EXPRESSION_METHODS
        ):
            self.check_expression_call(path or "", node)
        if _is_formula_path(path) or (
            isinstance(func, ast.Attribute) and func.attr == FORMULA_CONSTRUCTOR
        ):
            self.check_formula_call(node)
        if isinstance(func, ast.Attribute) and func.attr in FORMAT_METHODS:
            self.check_format_call(func, node)
        if isinstance(func, ast.Attribute) and func.attr in NAMED_METHOD_CALLERS:
            self.check_method_names(func.attr, node)
        for argument in node.args:
            if _formula_text(argument) is not None:
                self.check_evaluated(argument, THE_FORMULA)
        for keyword in node.keywords:
            if keyword.arg is None:
                self.check_unpacked(node, keyword)
        for name, value in self.keywords_of(node):
            self.check_keyword(name, value)

    # -- values the check must know ---------------------------------------------------

    def bound_value(self, node: ast.AST) -> ast.expr | None:
        """The value a name is bound to, when its one binding is a plain assignment."""
        if not isinstance(node, ast.Name):
            return None
        bindings = self.bindings.get(node.id, [])
        if len(bindings) != 1:
            return None
        return self.assigned.get(id(bindings[0]))

    def known_string(self, node: ast.AST) -> _Literal | None:
        """The string literal that ``node`` is, or a name bound once to; None if unknown."""
        candidates: list[ast.AST | None] = [node, self.bound_value(node)]
        for candidate in candidates:
            if candidate is not None and (text := _str_value(candidate)) is not None:
                return _Literal(text, candidate)
        return None

    def known_dict(self, node: ast.AST) -> ast.Dict | None:
        """A dict literal with string keys, or a name bound once to one and used only as a
        keyword's value (so nothing can change it); None otherwise."""
        found = node if isinstance(node, ast.Dict) else self.bound_value(node)
        if not isinstance(found, ast.Dict):
            return None
        if isinstance(node, ast.Name) and any(
            id(use) not in self.keyword_values for use in self.loads.get(node.id, [])
        ):
            return None
        if not all(key is not None and _is_str(key) for key in found.keys):
            return None
        return found

    def keywords_of(self, node: ast.Call) -> list[tuple[str, ast.expr]]:
        """Every keyword a call is given: written out, or in a known ``**`` dict."""
        keywords: list[tuple[str, ast.expr]] = []
        for keyword in node.keywords:
            if keyword.arg is not None:
                keywords.append((keyword.arg, keyword.value))
                continue
            unpacked = self.known_dict(keyword.value)
            if unpacked is not None:
                for key, value in zip(unpacked.keys, unpacked.values, strict=True):
                    if key is not None and (text := _str_value(key)) is not None:
                        keywords.append((text, value))
        return keywords

    def is_job_function(self, func: ast.AST) -> bool:
        """A function the job defines once itself: what it does with ** is checked in it."""
        if not isinstance(func, ast.Name):
            return False
        bindings = self.bindings.get(func.id, [])
        return len(bindings) == 1 and isinstance(
            bindings[0], ast.FunctionDef | ast.AsyncFunctionDef
        )

    def check_unpacked(self, node: ast.Call, keyword: ast.keyword) -> None:
        if self.known_dict(keyword.value) is not None or self.is_job_function(node.func):
            return
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "(…)")
        self.add_at(
            _runtime_issue(
                Phrase(
                    "python.runtime_value.kwargs",
                    "The keywords handed to %(name)s() with ** cannot be checked: this check "
                    "sees neither their names nor their values.",
                    name=name,
                ),
                "Write the keywords out, f(sep=';'), or unpack a dict literal with string "
                "keys, f(**{'sep': ';'}).",
            ),
            keyword.value,
        )

    def check_formula_call(self, node: ast.Call) -> None:
        """A statsmodels formula function: its first argument (or formula=) is a formula, and
        a mixed model's third and fourth (re_formula, vc_formula) too."""
        func = node.func
        names = {dotted(func), dotted(getattr(func, "value", func))}
        mixed = any(n.rpartition(".")[2] in ("mixedlm", "MixedLM") for n in names if n)
        for position, argument in enumerate(node.args):
            if isinstance(argument, ast.Starred):
                if position == 0 or mixed:
                    self.check_formula_value(argument, allow_dict=False)
                break
            if position == 0 or (mixed and position in (2, 3)):
                self.check_formula_value(argument, allow_dict=position == 3)

    def check_formula_value(self, value: ast.expr, *, allow_dict: bool) -> None:
        if isinstance(value, ast.Constant) and value.value is None:
            return
        if allow_dict and (found := self.known_dict(value)) is not None:
            for item in found.values:
                self.check_formula_value(item, allow_dict=False)
            return
        literal = self.known_string(value)
        if literal is None:
            self.add_at(
                _runtime_issue(
                    Phrase(
                        "python.runtime_value.formula",
                        "The formula is not a string literal, so this check cannot read "
                        "what patsy will run.",
                    ),
                    'Write the formula as a string literal: smf.ols("y ~ x", data=df).',
                ),
                value,
            )
            return
        for problem in formula_problems(literal.text, self.names):
            self.add_at(_evaluated_issue(THE_FORMULA, problem, SUGGEST_FORMULA), literal.node)
        self.check_evaluated(literal.node, THE_FORMULA)

    def check_expression_call(self, path: str, node: ast.Call) -> None:
        """A DataFrame.query/eval or pandas.eval: its expression and its keywords."""
        func = node.func
        method = func.attr if isinstance(func, ast.Attribute) else path.rpartition(".")[2]
        keywords = self.keywords_of(node)
        expression = node.args[0] if node.args else dict(keywords).get("expr")
        the_expression = Phrase(
            "python.evaluated.expression", "the %(method)s() expression", method=method
        )
        literal = self.known_string(expression) if expression is not None else None
        if expression is not None and literal is None:
            self.add_at(
                _runtime_issue(
                    Phrase(
                        "python.runtime_value.expression",
                        "The %(method)s() expression is not a string literal, so this check "
                        "cannot read what pandas will run.",
                        method=method,
                    ),
                    f'Write the expression as a string literal: df.{method}("age > 60"), with '
                    "@name for a value computed before.",
                ),
                expression,
            )
        elif literal is not None:
            for problem in expression_problems(literal.text):
                self.add_at(
                    _evaluated_issue(the_expression, problem, SUGGEST_EXPRESSION), literal.node
                )
            self.check_evaluated(literal.node, the_expression)
        for name, value in keywords:
            if name != "expr" and name not in EXPRESSION_KEYWORDS:
                self.add_at(
                    _runtime_issue(
                        Phrase(
                            "python.runtime_value.expression_keyword",
                            "%(method)s() may not be given %(keyword)s=: it hands the "
                            "expression values or frames this check cannot see.",
                            method=method,
                            keyword=name,
                        ),
                        "Refer to values with @name in the expression, and call it on the "
                        "DataFrame itself.",
                    ),
                    value,
                )

    def check_format_call(self, func: ast.Attribute, node: ast.Call) -> None:
        """str.format reads the attributes its fields name ('{0.__class__}')."""
        receiver = func.value
        is_str_type = isinstance(receiver, ast.Name) and receiver.id == "str"
        template = node.args[0] if is_str_type and node.args else receiver
        literal = self.known_string(template)
        if literal is None:
            self.add_at_attribute(
                _runtime_issue(
                    Phrase(
                        "python.runtime_value.format",
                        "The format string is not a literal: its fields could name any attribute.",
                    ),
                    "Write the format string as a literal, or use an f-string.",
                ),
                func,
            )
            return
        try:
            fields = [
                part
                for _, field, spec, _ in string.Formatter().parse(literal.text)
                for part in (field or "", spec or "")
            ]
        except ValueError:
            return  # str.format fails the same way
        for field in fields:
            for attr in re.findall(r"\.([A-Za-z_]\w*)", field):
                for issue in _attribute_issues(attr, None, strings_checked=True):
                    self.add_at(issue, literal.node)
                if attr.startswith("_") and not is_dunder(attr):
                    self.add_at(_private_issue(attr, None), literal.node)

    def check_method_names(self, method: str, node: ast.Call) -> None:
        """The functions handed to agg/apply/transform: its first argument (or func=),
        and the function of each named aggregation (n=("cost", "size"))."""
        keywords = self.keywords_of(node)
        specs = node.args[:1] or [v for k, v in keywords if k == "func"]
        if method in STRICT_METHOD_CALLERS:
            specs += [
                v.elts[1]
                for k, v in keywords
                if k != "args" and isinstance(v, ast.Tuple) and len(v.elts) == 2
            ]
            specs += [v for _, v in keywords if self.is_named_aggregation(v)]
        stack = list(specs)
        while stack:
            spec = stack.pop()
            known = self.known_string(spec)
            if known is not None:
                self.check_method_name(known)
            elif isinstance(spec, ast.List | ast.Tuple | ast.Set):
                stack += spec.elts
            elif isinstance(spec, ast.Dict):
                stack += spec.values
            elif self.is_named_aggregation(spec):
                assert isinstance(spec, ast.Call)
                stack += spec.args[1:2] + [k.value for k in spec.keywords if k.arg == "aggfunc"]
            elif not self.is_function(spec) and (
                method in STRICT_METHOD_CALLERS or self.may_be_string(spec)
            ):
                self.add_at(
                    _runtime_issue(
                        Phrase(
                            "python.runtime_value.method_name",
                            "What %(method)s() is given to call is not known to this check: "
                            "pandas looks a name up as an attribute.",
                            method=method,
                        ),
                        'Write the names as literals (df.agg(["mean", "std"])), or pass '
                        "a function: a lambda, your own def, or np.mean.",
                    ),
                    spec,
                )

    def check_method_name(self, known: _Literal) -> None:
        for issue in _attribute_issues(known.text, None, strings_checked=True):
            self.add_at(issue, known.node)
        if known.text.startswith("_") and not is_dunder(known.text):
            self.add_at(_private_issue(known.text, None), known.node)
        if _evaluates(known.text, None):
            self.add_at(_passed_evaluator_issue(known.text), known.node)

    def may_be_string(self, node: ast.AST, depth: int = 0) -> bool:
        """Whether a value handed to apply/transform may be a string built at run time
        (an attribute name for pandas), not data (X for scikit-learn): a string literal or
        an f-string, what chr()/str()/format() or a string method returns, an operation,
        index or element of such a value, or a name assigned (or looped over) one.
        Indexing data by column names (X[["age"]]) is data."""
        if depth > 8:
            return True  # too long a chain to follow: fail closed
        deeper = depth + 1
        if isinstance(node, ast.Constant):
            return isinstance(node.value, str | bytes)
        if isinstance(node, ast.JoinedStr):
            return True
        if isinstance(node, ast.Call):
            return self.call_may_be_string(node, deeper)
        if isinstance(node, ast.Name):
            return isinstance(node.ctx, ast.Load) and self.name_may_be_string(node.id)
        if isinstance(node, ast.Lambda):
            return False
        if isinstance(node, ast.Subscript | ast.Attribute | ast.Starred | ast.NamedExpr):
            return self.may_be_string(node.value, deeper)
        children = [
            c for c in ast.iter_child_nodes(node) if isinstance(c, ast.expr | ast.comprehension)
        ]
        return any(self.may_be_string(c, deeper) for c in children)

    def name_may_be_string(self, name: str) -> bool:
        """Whether any value a name is assigned or looped over may be a string; each name
        is judged once (X = X.fillna(0) adds nothing to what X was)."""
        if name not in self.string_names:
            self.string_names[name] = False  # while it is judged: a cycle adds nothing
            try:
                self.string_names[name] = any(
                    self.may_be_string(value)
                    for binding in self.bindings.get(name, [])
                    if (value := self.assigned.get(id(binding), self.loop_sources.get(id(binding))))
                    is not None
                )
            except RecursionError:
                self.string_names[name] = True  # a chain too long to follow: fail closed
        return self.string_names[name]

    def call_may_be_string(self, node: ast.Call, depth: int) -> bool:
        func = node.func
        if isinstance(func, ast.Name):
            makes = func.id in STRING_MAKERS and func.id not in self.bindings
            return makes or any(self.may_be_string(a, depth) for a in node.args)
        if isinstance(func, ast.Attribute):
            return func.attr in STRING_METHODS or self.may_be_string(func.value, depth)
        return True

    def is_named_aggregation(self, node: ast.AST) -> bool:
        return isinstance(node, ast.Call) and (
            _module_path(node.func, self.modules) == NAMED_AGGREGATION
        )

    def is_function(self, node: ast.AST) -> bool:
        """A lambda, a function the job defines once, a library's function (np.mean) or a
        builtin one (len, str.upper) the job does not rebind."""
        if isinstance(node, ast.Lambda) or self.is_job_function(node):
            return True
        root = node
        while isinstance(root, ast.Attribute):
            root = root.value
        if (
            isinstance(root, ast.Name)
            and root.id in CALLABLE_BUILTINS
            and root.id not in self.bindings
        ):
            return True
        path = _module_path(node, self.modules) if isinstance(node, ast.expr) else None
        return path is not None and path.rpartition(".")[2] not in FORMAT_METHODS

    def check_keyword(self, name: str, value: ast.expr) -> None:
        if name.endswith("formula"):
            self.check_formula_value(value, allow_dict=True)
        elif _formula_text(value) is not None:
            self.check_evaluated(value, THE_FORMULA)
        if name in LITERAL_KEYWORDS and not isinstance(value, ast.Constant):
            self.add_at(
                _runtime_issue(
                    Phrase(
                        "python.runtime_value.keyword",
                        "%(keyword)s= must be a literal: it chooses how code is evaluated.",
                        keyword=name,
                    ),
                    f"Write the value out: {name}=... with a literal.",
                ),
                value,
            )
        if name in DENIED_TRUE_KEYWORDS and not _is_false(value):
            self.add_at(
                _Issue(
                    "python.call_denied",
                    Phrase(
                        "python.call_denied.keyword",
                        "%(keyword)s= may not be set: %(reason)s.",
                        keyword=name,
                        reason=DENIED_TRUE_KEYWORDS[name],
                    ),
                    "Save and load arrays and tables as .npy/.csv/.parquet "
                    "without pickled objects.",
                ),
                value,
            )

    def check_getattr(self, name: str, node: ast.Call) -> None:
        args = node.args
        literal = (
            self.known_string(args[1])
            if len(args) >= 2 and not isinstance(args[0], ast.Starred)
            else None
        )
        attr = literal.text if literal is not None else None
        if attr is None:
            self.add_at(_computed_name_issue(name, passed=False), node)
            return
        root_path = _module_path(args[0], self.modules)
        for issue in _attribute_issues(attr, root_path, strings_checked=True):
            self.add_at(issue, args[1])
        if attr.startswith("_") and not is_dunder(attr) and root_path is None:
            self.add_at(_private_issue(attr, None), args[1])
        if _evaluates(attr, f"{root_path}.{attr}" if root_path else None):
            self.add_at(_passed_evaluator_issue(attr), args[1])

    def check_attrgetter(self, path: str, node: ast.Call) -> None:
        name = path.rpartition(".")[2]
        names = node.args[:1] if name == "methodcaller" else node.args
        if not names:
            self.add_at(_computed_name_issue(name, passed=False), node)
            return
        for argument in names:
            known = self.known_string(argument)
            text = known.text if known is not None else None
            if text is None:
                self.add_at(_computed_name_issue(name, passed=False), argument)
                continue
            for attr in text.split("."):
                self.check_method_name(_Literal(attr, argument))

    def check_string(self, text: str, node: ast.AST) -> None:
        for match in DUNDER.finditer(text):
            if match.group() not in ALLOWED_DUNDER_STRINGS:
                self.add_at(_dunder_issue(match.group(), in_string=True), node)

    def check_annotation(self, annotation: ast.expr) -> None:
        # String annotations are evaluated by typing.get_type_hints and by
        # functools.singledispatch; a nested one ("list['x']") as well.
        for part in ast.walk(annotation):
            if _is_str(part):
                self.check_evaluated(part, THE_ANNOTATION)

    def check_evaluated(self, node: ast.AST, what: Phrase) -> None:
        """Check a literal string that a library evaluates as Python."""
        text = _formula_text(node, any_text=True)
        if text is None:
            return
        for chain, called in _name_chains(text):
            root = chain[0]
            if len(chain) == 1 and called and root in DENIED_BUILTINS:
                self.add_at(_in_evaluated(what, _builtin_issue(root)), node)
            if len(chain) == 1 and called and root in GETATTR_BUILTINS:
                self.add_at(_in_evaluated(what, _computed_name_issue(root, passed=False)), node)
            path = self.modules.get(root)
            for attr in chain[1:]:
                for issue in _attribute_issues(attr, path, strings_checked=True):
                    self.add_at(_in_evaluated(what, issue), node)
                path = f"{path}.{attr}" if path else None


THE_FORMULA = Phrase("python.evaluated.formula", "the formula")
THE_ANNOTATION = Phrase("python.evaluated.annotation", "the string annotation")


# What each kind of node is checked for; the other kinds hold nothing to check.
_VISITORS: dict[type[ast.AST], Callable[[_Checker, Any, _Scope], None]] = {
    ast.Import: _Checker.visit_import,
    ast.ImportFrom: _Checker.visit_import_from,
    ast.Name: _Checker.visit_name,
    ast.Attribute: _Checker.visit_attribute,
    ast.Call: _Checker.visit_call,
    ast.Expr: _Checker.visit_expression_statement,
    ast.Constant: _Checker.visit_constant,
    ast.FunctionDef: _Checker.visit_definition,
    ast.AsyncFunctionDef: _Checker.visit_definition,
    ast.ClassDef: _Checker.visit_definition,
    ast.arg: _Checker.visit_arg,
    ast.AnnAssign: _Checker.visit_annotated_assignment,
    ast.Global: _Checker.visit_declaration,
    ast.Nonlocal: _Checker.visit_declaration,
    ast.ExceptHandler: _Checker.visit_named_capture,
    ast.MatchAs: _Checker.visit_named_capture,
    ast.MatchStar: _Checker.visit_named_capture,
    ast.MatchMapping: _Checker.visit_match_mapping,
    ast.MatchClass: _Checker.visit_match_class,
}


def _in_evaluated(what: Phrase, issue: _Issue) -> _Issue:
    """An issue found in a string that a library evaluates as Python."""
    return _Issue(
        issue.rule,
        Phrase("python.in_evaluated", "In %(place)s: %(inner)s", place=what, inner=issue.message),
    )


# -- pure helpers ---------------------------------------------------------------


def _walk(tree: ast.AST) -> Iterator[tuple[ast.AST, _Scope]]:
    """Every node with its class scope, parents first, without recursion."""
    stack: list[tuple[ast.AST, _Scope]] = [(tree, _Scope())]
    while stack:
        node, scope = stack.pop()
        yield node, scope
        if isinstance(node, ast.ClassDef):
            body = {id(statement) for statement in node.body}
            inner = _Scope(in_class=True, class_body=True)
            children = [(c, inner if id(c) in body else scope) for c in ast.iter_child_nodes(node)]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            inner = _Scope(in_class=scope.in_class, class_body=False)
            children = [(c, inner) for c in ast.iter_child_nodes(node)]
        else:
            children = [(c, scope) for c in ast.iter_child_nodes(node)]
        stack.extend(reversed(children))


def _imported_modules(tree: ast.AST) -> dict[str, str]:
    """Local name -> dotted path, for every name an import binds."""
    modules: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    modules[alias.asname] = alias.name
                else:
                    top = alias.name.partition(".")[0]
                    modules[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if alias.name != "*":
                    modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return modules


def _with_aliases(tree: ast.AST, modules: dict[str, str]) -> dict[str, str]:
    """The import-bound names, and names assigned a module's path (``x = np``), so that
    ``x.load`` is judged as ``np.load``. A name assigned elsewhere too keeps the path:
    judged as the module in every use, which refuses more, never less."""
    aliased = dict(modules)
    for _ in range(3):  # aliases of aliases, a few levels deep
        changed = False
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AnnAssign | ast.NamedExpr) and node.value:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                path = _module_path(node.value, aliased)
                for target in targets:
                    if path and isinstance(target, ast.Name) and target.id not in aliased:
                        aliased[target.id] = path
                        changed = True
        if not changed:
            break
    return aliased


def _bindings(tree: ast.AST) -> dict[str, list[ast.AST]]:
    """Every place each name is bound: assigned, deleted, imported, defined, a parameter,
    caught, matched or declared global/nonlocal."""
    bound: dict[str, list[ast.AST]] = {}
    for node in ast.walk(tree):
        names: list[str | None] = []
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names = [node.id]
        elif isinstance(node, ast.arg):
            names = [node.arg]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names = [node.name]
        elif isinstance(node, ast.alias):
            names = [node.asname or node.name.partition(".")[0]]
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar):
            names = [node.name]
        elif isinstance(node, ast.MatchMapping):
            names = [node.rest]
        elif isinstance(node, ast.Global | ast.Nonlocal):
            names = list(node.names)
        for name in names:
            if name:
                bound.setdefault(name, []).append(node)
    return bound


def _assigned_values(tree: ast.AST) -> dict[int, ast.expr]:
    """id of a name's node in ``name = value`` (one plain target) -> the value."""
    values: dict[int, ast.expr] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                values[id(target)] = node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            if isinstance(node.target, ast.Name):
                values[id(node.target)] = node.value
    return values


def _evaluates(attr: str, path: str | None) -> bool:
    """Reached by name, a function that evaluates its argument hides that argument."""
    return (
        attr in EXPRESSION_METHODS
        or attr == FORMULA_CONSTRUCTOR
        or attr in FORMAT_METHODS
        or _is_formula_path(path)
    )


def _loop_sources(tree: ast.AST) -> dict[int, ast.expr]:
    """id of each name a for loop or a comprehension binds -> what it loops over."""
    sources: dict[int, ast.expr] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            for target in ast.walk(node.target):
                if isinstance(target, ast.Name):
                    sources[id(target)] = node.iter
    return sources


def _is_formula_path(path: str | None) -> bool:
    return path is not None and path.startswith(FORMULA_API_PREFIXES)


def _passed_evaluator_issue(name: str) -> _Issue:
    return _runtime_issue(
        Phrase(
            "python.runtime_value.passed",
            "%(name)s may only be called directly, so that this check sees what it evaluates.",
            name=name,
        ),
        'Call it where it is used: df.query("age > 60"), smf.ols("y ~ x", data=df).',
    )


def _module_path(node: ast.expr, modules: dict[str, str]) -> str | None:
    """The dotted path of name.attr.attr when name was bound by an import."""
    attrs: list[str] = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in modules:
        return None
    return ".".join([modules[node.id], *reversed(attrs)])


def _module_issues(module: str) -> list[_Issue]:
    """What is wrong with importing a module by its dotted name."""
    parts = module.split(".")
    for end in range(1, len(parts) + 1):
        prefix = ".".join(parts[:end])
        if prefix in DENIED_MODULES:
            return [_denied_module_issue(prefix, module)]
    top = parts[0]
    if top not in ALLOWED_MODULES:
        if top.startswith("_") and top != "__future__":
            internal = Phrase(
                "python.import_denied.internal",
                "'%(module)s' is denied: it is an interpreter-internal module.",
                module=module,
            )
            return [_Issue("python.import_denied", internal)]
        return [
            _Issue(
                "python.import_not_allowed",
                Phrase(
                    "python.import_not_allowed",
                    "'%(module)s' is not on the list of modules a job may import: %(allowed)s.",
                    module=module,
                    allowed=allowed_module_list(),
                ),
                SUGGEST_ALLOWED,
            )
        ]
    issues: list[_Issue] = []
    path = top
    for part in parts[1:]:
        issues += _attribute_issues(part, path)
        path = f"{path}.{part}"
    return issues[:1]


def _attribute_issues(
    attr: str, root_path: str | None, *, strings_checked: bool = False
) -> list[_Issue]:
    """What is wrong with reaching ``attr``, on a module's path or on any object.

    ``strings_checked``: the attribute came from a string literal, whose
    dunders the string rule reports already.
    """
    if is_dunder(attr):
        if attr in ALLOWED_DUNDERS or strings_checked:
            return []
        return [_dunder_issue(attr)]
    if attr in INTERNAL_ATTRIBUTES:
        return [
            _Issue(
                "python.dunder_access",
                Phrase(
                    "python.dunder_access.internal",
                    "'%(name)s' reaches the interpreter's frames and namespaces.",
                    name=attr,
                ),
                SUGGEST_PUBLIC_API,
            )
        ]
    path = f"{root_path}.{attr}" if root_path else None
    if path is not None:
        if path in DENIED_MODULES:
            return [_denied_module_issue(path, path)]
        if attr in ESCAPE_ATTRIBUTE_NAMES:
            return [_denied_module_issue(attr, path)]
        if path in DENIED_PATHS:
            denied = Phrase(
                "python.call_denied.path",
                "'%(path)s' is denied: %(reason)s.",
                path=path,
                reason=DENIED_PATHS[path],
            )
            return [_Issue("python.call_denied", denied)]
    if attr in DENIED_ATTRIBUTES:
        return [
            _Issue(
                "python.call_denied",
                Phrase(
                    "python.call_denied.attribute",
                    "'%(name)s' is denied: %(reason)s.",
                    name=attr,
                    reason=DENIED_ATTRIBUTES[attr],
                ),
                SUGGEST_PUBLIC_API if "pickle" not in attr else "Read .csv or .parquet files.",
            )
        ]
    if _reads_files(attr, path):
        return [_file_read_issue(path or attr)]
    if attr in DENIED_SUBMODULE_NAMES:
        return [_denied_module_issue(DENIED_SUBMODULE_NAMES[attr], path or attr)]
    if root_path and attr.startswith("_"):
        return [_private_issue(attr, root_path)]
    return []


def _reads_files(attr: str, path: str | None) -> bool:
    if attr in FILE_READERS or path in FILE_READER_PATHS:
        return True
    package = path.partition(".")[0] if path else None
    return package in FILE_READER_PACKAGES and attr.startswith(FILE_READER_PREFIXES)


def _file_read_issue(name: str) -> _Issue:
    return _Issue(
        "python.file_read",
        Phrase(
            "python.file_read",
            "'%(name)s' reads files or URLs: a job's data is its view, read with "
            "sandbox_job.table().",
            name=name,
        ),
        SUGGEST_VIEW,
    )


def _runtime_issue(message: Phrase, suggestion: str) -> _Issue:
    return _Issue("python.runtime_value", message, suggestion)


def _evaluated_issue(what: Phrase, problem: Phrase, suggestion: str) -> _Issue:
    return _in_evaluated(what, _Issue("python.evaluated_denied", problem, suggestion))


def _denied_module_issue(denied: str, reached: str) -> _Issue:
    family, reason = next((f, r) for f, r in _DENIAL_REASONS.items() if denied in f)
    if reached == denied:
        message = Phrase(
            "python.import_denied",
            "'%(module)s' is denied: %(reason)s.",
            module=denied,
            reason=reason,
        )
    else:
        message = Phrase(
            "python.import_denied.within",
            "'%(name)s' (module %(module)s) is denied: %(reason)s.",
            name=reached,
            module=denied,
            reason=reason,
        )
    # These families' reasons say what to use instead.
    suggestion = None if family in (FILE_MODULES, ENGINE_MODULES) else SUGGEST_ALLOWED
    return _Issue("python.import_denied", message, suggestion)


def _builtin_issue(name: str) -> _Issue:
    suggestions = {
        "open": "Read tables with sandbox_job.table(name).",
        "vars": "Use the object's attributes directly.",
        "eval": "Write the expression as code.",
        "exec": "Write the code in the job itself.",
        "compile": "For a regular expression, write re.compile(...).",
    }
    return _Issue(
        "python.call_denied",
        Phrase(
            "python.call_denied",
            "%(name)s() is denied: %(reason)s.",
            name=name,
            reason=_BUILTIN_REASONS[name],
        ),
        suggestions.get(name),
    )


def _computed_name_issue(name: str, *, passed: bool) -> _Issue:
    short = name.rpartition(".")[2]
    if passed:
        message = Phrase(
            "python.call_denied.computed_passed",
            "%(name)s may only be called directly, with the name as a string literal.",
            name=short,
        )
    else:
        message = Phrase(
            "python.call_denied.computed_name",
            "%(name)s() needs the attribute name as a string literal: "
            "a computed name hides what it reaches.",
            name=short,
        )
    return _Issue(
        "python.call_denied",
        message,
        "Write obj.name, or getattr(obj, 'name') with a literal name.",
    )


def _dunder_issue(name: str, *, in_string: bool = False) -> _Issue:
    if in_string:
        message = Phrase(
            "python.dunder_access.string",
            "A string names '%(name)s': dunder names reach Python's internals and are denied.",
            name=name,
        )
    else:
        message = Phrase(
            "python.dunder_access",
            "The job uses '%(name)s': dunder names reach Python's internals and are denied.",
            name=name,
        )
    return _Issue(
        "python.dunder_access",
        message,
        "Use type(x), isinstance(x, T) or the library's public API instead."
        if name in ("__class__", "__dict__")
        else SUGGEST_PUBLIC_API,
    )


def _private_issue(attr: str, module: str | None) -> _Issue:
    if module is None:
        message = Phrase(
            "python.private_access.object", "'%(name)s' is a private name of an object.", name=attr
        )
    else:
        message = Phrase(
            "python.private_access",
            "'%(name)s' is a private name of '%(module)s'.",
            name=attr,
            module=module,
        )
    return _Issue("python.private_access", message, SUGGEST_PUBLIC_API)


def _name_offset(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> int:
    # "def name" / "async def name" / "class name": the name after the keyword.
    keyword = {ast.FunctionDef: 4, ast.AsyncFunctionDef: 10, ast.ClassDef: 6}[type(node)]
    return node.col_offset + keyword


def _str_value(node: ast.AST) -> str | None:
    """The text of a string literal; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _is_str(node: ast.AST) -> bool:
    return _str_value(node) is not None


def _is_false(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value in (False, None, 0)


def _formula_text(node: ast.AST, *, any_text: bool = False) -> str | None:
    """The literal text of a string or f-string (holes as names), if it is one.

    Without ``any_text`` only a formula (a text with ``~``) counts.
    """
    text = _str_value(node)
    if isinstance(node, ast.JoinedStr):
        text = "".join(_str_value(v) or " hole " for v in node.values)
    if text is None:
        return None
    return text if any_text or "~" in text else None


def _name_chains(text: str) -> Iterator[tuple[list[str], bool]]:
    """Dotted name chains in an expression, and whether each one is called.

    Tokenized, not parsed: formulas (y ~ x:z) and pandas expressions
    (@local, `quoted column`) are not Python, but their names are.
    """
    text = re.sub(r"`[^`]*`", lambda m: " " * len(m.group()), text).replace("@", " ")
    tokens: list[tokenize.TokenInfo] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT):
                tokens.append(token)
    except (tokenize.TokenError, SyntaxError):
        pass  # what was read before the error is checked; the library fails the same way
    chain: list[str] = []
    for index, token in enumerate(tokens):
        after_dot = index > 0 and tokens[index - 1].string == "."
        if token.type == tokenize.NAME:
            if after_dot:
                # (expr).name: an attribute of something that is no module.
                chain = [*(chain or [""]), token.string]
            else:
                chain = [token.string]
            following = tokens[index + 1].string if index + 1 < len(tokens) else ""
            if following != ".":
                yield chain, following == "("
                chain = []
        elif token.string != ".":
            chain = []


# A contest submission's two entry points and the positional parameters each takes.
ENTRY_POINTS = {"fit": ("train",), "predict": ("model", "features")}


def check_submission(code: str) -> Decision:
    """Check a contest submission: a Python job's rules, and ``fit(train)`` and
    ``predict(model, features)`` defined at the top level of the code."""
    decision = check_python(code)
    if not decision.allowed:
        return decision
    tree = ast.parse(code, filename="<job>")  # check_python parsed it already
    defined = {
        node.name: node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    findings = []
    for name, parameters in ENTRY_POINTS.items():
        node = defined.get(name)
        signature = f"{name}({', '.join(parameters)})"
        if node is None:
            findings.append(
                Finding.of(
                    "submission.missing_function",
                    "The submission defines no %(signature)s at the top level.",
                    suggestion="Define both fit(train) -> model and predict(model, features).",
                    signature=signature,
                )
            )
        elif isinstance(node, ast.AsyncFunctionDef) or len(_positional(node)) != len(parameters):
            findings.append(
                Finding.of(
                    "submission.signature",
                    "%(name)s must be a plain function taking %(count)s positional "
                    "argument(s): %(signature)s.",
                    f"line {node.lineno}",
                    name=name,
                    count=len(parameters),
                    signature=signature,
                )
            )
    return Decision.deny(*findings) if findings else decision


def _positional(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.arg]:
    arguments = node.args
    if arguments.vararg or arguments.kwonlyargs and any(d is None for d in arguments.kw_defaults):
        return []  # *args or a required keyword: not callable as fit(train)
    required = len(arguments.posonlyargs) + len(arguments.args) - len(arguments.defaults)
    return [*arguments.posonlyargs, *arguments.args][:required]
