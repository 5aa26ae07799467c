"""Strings that libraries evaluate as Python, read as the small languages they are.

A statsmodels formula is evaluated by patsy: every term between the formula's
operators is a Python expression, run in the job's namespace with the builtins
available (``y ~ I(__import__('os').system('id'))`` runs). A pandas
``query``/``eval`` expression is evaluated by pandas' own visitor, which calls
what it is told to (with ``engine="python"``) and resolves ``@name`` in the
caller's frame. The checker therefore reads both as languages of their own,
narrower than Python, and refuses anything outside them (fail closed):

- a formula: column names, the operators ``~ + - * / : **`` and brackets,
  numbers, and calls of known safe transforms only: patsy's ``C``, ``I``,
  ``Q``, ``center``, ``standardize``, ``scale``, ``bs``, ``cr``, ``cc``,
  ``te`` and contrasts (when the job binds none of those names itself), and
  NumPy's elementwise functions reached through a name the job bound only by
  importing numpy (``np.log``); arithmetic and comparisons inside them;
- an expression: column names (or `quoted names`), literals, comparisons,
  boolean and arithmetic operators, ``@name`` read as it is, pandas' math
  functions (``log(x)``), and ``name = ...`` assignments (``DataFrame.eval``).

Each function returns the problems found, as worded reasons (empty: none).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from policies.decision import Phrase

# patsy.builtins: the names a formula finds when the job binds none of them.
PATSY_TRANSFORMS = frozenset(
    {
        "C",
        "I",
        "Q",
        "center",
        "standardize",
        "scale",
        "bs",
        "cr",
        "cc",
        "te",
        "Treatment",
        "Poly",
        "Sum",
        "Helmert",
        "Diff",
    }
)
# NumPy functions that compute elementwise and nothing else, by dotted path.
NUMPY_TRANSFORMS = frozenset(
    f"numpy.{name}"
    for name in (
        "log",
        "log1p",
        "log2",
        "log10",
        "exp",
        "expm1",
        "sqrt",
        "cbrt",
        "square",
        "power",
        "abs",
        "absolute",
        "sign",
        "floor",
        "ceil",
        "round",
        "clip",
        "minimum",
        "maximum",
        "sin",
        "cos",
        "tan",
        "arcsin",
        "arccos",
        "arctan",
        "sinh",
        "cosh",
        "tanh",
        "isnan",
    )
)
# pandas.core.computation.ops.MATHOPS: what an expression may call.
EXPRESSION_FUNCTIONS = frozenset(
    {
        "sin",
        "cos",
        "tan",
        "exp",
        "log",
        "expm1",
        "log1p",
        "sqrt",
        "sinh",
        "cosh",
        "tanh",
        "arcsin",
        "arccos",
        "arctan",
        "arccosh",
        "arcsinh",
        "arctanh",
        "abs",
        "log10",
        "floor",
        "ceil",
        "arctan2",
    }
)
FORMULA_OPERATORS = frozenset({"~", "+", "-", "*", "/", ":", "**"})
_ARITHMETIC = (
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.operator,
    ast.unaryop,
    ast.boolop,
    ast.cmpop,
    ast.Load,
    ast.Constant,
    ast.List,
    ast.Tuple,
)
_COMPARISONS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)
_LOCAL = "_at_local_"
_QUOTED = "_quoted_name_"
_NOT_NAMES = frozenset({"eval", "exec", "compile", "open", "globals", "locals", "vars"})


@dataclass(frozen=True)
class Names:
    """What the job binds: ``imports`` maps a name the job binds only by an import to its
    module path; ``bound`` holds every name the job binds in any way."""

    imports: Mapping[str, str]
    bound: frozenset[str]


def formula_problems(text: str, names: Names) -> list[Phrase]:
    """What a formula (or a ``re_formula``) does outside the formula language."""
    try:
        atoms = list(_formula_atoms(text))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return [_UNREADABLE]
    problems: list[Phrase] = []
    for atom in atoms:
        try:
            tree = ast.parse(atom.strip(), mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            problems.append(_UNREADABLE)
            continue
        problems += _formula_node_problems(tree.body, names)
    return list(dict.fromkeys(problems))


def expression_problems(text: str) -> list[Phrase]:
    """What a ``DataFrame.query``/``eval`` expression does outside its language."""
    # `quoted column names` and @locals are not Python; names stand in for them.
    quoted = re.sub(r"`[^`]*`", lambda m: f" {_QUOTED}{m.start()} ", text)
    marked = re.sub(r"@(?=[A-Za-z_])", _LOCAL, quoted)
    try:
        tree = ast.parse(marked.strip(), mode="exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return [_UNREADABLE]
    problems: list[Phrase] = []
    for statement in tree.body:
        if isinstance(statement, ast.Expr):
            problems += _expression_node_problems(statement.value)
        elif (
            isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
        ):
            problems += _expression_node_problems(statement.targets[0])
            problems += _expression_node_problems(statement.value)
        else:
            problems.append(_construct(statement))
    return list(dict.fromkeys(problems))


# -- formulas ---------------------------------------------------------------------


def _formula_atoms(text: str) -> Iterator[str]:
    """The Python expressions between a formula's operators, as patsy reads them
    (patsy.parse_formula._read_python_expr): an expression runs on to the next
    operator outside brackets."""
    tokens = [
        t
        for t in tokenize.generate_tokens(io.StringIO(text).readline)
        if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER, tokenize.COMMENT)
        and not (t.type == tokenize.INDENT or t.type == tokenize.DEDENT)
    ]
    if any(t.type == tokenize.ERRORTOKEN for t in tokens):
        raise SyntaxError("not a formula token")
    depth = 0
    atom: list[str] = []
    for token in tokens:
        if depth == 0 and (token.string in FORMULA_OPERATORS or token.string in ("(", ")")):
            if token.string in ("(", ")") and not atom:
                continue  # grouping brackets of the formula itself
            if token.string == "(":
                atom.append(token.string)
                depth += 1
                continue
            if atom:
                yield " ".join(atom)
                atom = []
            continue
        if token.string in ("(", "[", "{"):
            depth += 1
        elif token.string in (")", "]", "}"):
            depth -= 1
            if depth < 0:
                raise SyntaxError("unmatched bracket")
        atom.append(token.string)
    if depth:
        raise SyntaxError("unclosed bracket")
    if atom:
        yield " ".join(atom)


def _formula_node_problems(node: ast.AST, names: Names) -> list[Phrase]:
    problems: list[Phrase] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, ast.Call):
            problems += _formula_call_problems(current, names)
            stack += current.args
            stack += [k.value for k in current.keywords]
            if any(k.arg is None for k in current.keywords):
                problems.append(_construct(current.keywords[0]))
        elif isinstance(current, ast.Name):
            problems += _name_problems(current.id)
        elif isinstance(current, ast.Starred):
            problems.append(_construct(current))
        elif isinstance(current, _ARITHMETIC):
            stack += list(ast.iter_child_nodes(current))
        else:
            problems.append(_construct(current))
    return problems


def _formula_call_problems(call: ast.Call, names: Names) -> list[Phrase]:
    func = call.func
    if isinstance(func, ast.Name) and func.id in PATSY_TRANSFORMS:
        if func.id in names.bound:
            return [
                Phrase(
                    "python.evaluated.shadowed",
                    "The job binds the name %(name)s, so the formula would call the job's "
                    "value instead of patsy's %(name)s().",
                    name=func.id,
                )
            ]
        return []
    path = dotted(func)
    if path is not None:
        root, _, rest = path.partition(".")
        module = names.imports.get(root)
        full = f"{module}.{rest}" if module and rest else module
        if full in NUMPY_TRANSFORMS:
            return []
    return [
        Phrase(
            "python.evaluated.call",
            "It calls %(name)s(), which is not one of the transforms a formula may use.",
            name=path or "(…)",
        )
    ]


def dotted(node: ast.AST) -> str | None:
    """name.attr.attr as written; None for anything else."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


# -- expressions --------------------------------------------------------------------


def _expression_node_problems(node: ast.AST) -> list[Phrase]:
    problems: list[Phrase] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, ast.Name):
            problems += _name_problems(current.id.removeprefix(_LOCAL))
        elif isinstance(current, ast.Call):
            found = _expression_call_problems(current)
            problems += found
            if not found:
                stack += current.args
        elif isinstance(current, ast.Attribute | ast.Subscript):
            problems.append(_looked_into(current))
        elif isinstance(current, ast.Compare):
            if not all(isinstance(op, _COMPARISONS) for op in current.ops):
                problems.append(_construct(current))
            stack += [current.left, *current.comparators]
        elif isinstance(current, (*_ARITHMETIC, ast.Store)):
            stack += list(ast.iter_child_nodes(current))
        else:
            problems.append(_construct(current))
    return problems


def _expression_call_problems(call: ast.Call) -> list[Phrase]:
    func = call.func
    if isinstance(func, ast.Name) and func.id in EXPRESSION_FUNCTIONS and not call.keywords:
        return []
    if isinstance(func, ast.Name) and func.id.startswith(_LOCAL):
        return [_local_problem(func.id)]
    return [
        Phrase(
            "python.evaluated.expression_call",
            "It calls %(name)s(); an expression may only call pandas' math functions "
            "(log, exp, sqrt, abs, ...).",
            name=(dotted(func) or "(…)").replace(_LOCAL, "@"),
        )
    ]


def _looked_into(node: ast.Attribute | ast.Subscript) -> Phrase:
    root = node.value
    while isinstance(root, ast.Attribute | ast.Subscript):
        root = root.value
    if isinstance(root, ast.Name) and root.id.startswith(_LOCAL):
        return _local_problem(root.id)
    return _construct(node)


def _local_problem(marked: str) -> Phrase:
    return Phrase(
        "python.evaluated.local",
        "@%(name)s may only be read as it is: compute what you need from it before the expression.",
        name=marked.removeprefix(_LOCAL),
    )


# -- both -----------------------------------------------------------------------------


def _name_problems(name: str) -> list[Phrase]:
    if (name.startswith("__") and name.endswith("__")) or name in _NOT_NAMES:
        return [
            Phrase(
                "python.evaluated.name",
                "It names %(name)s, which no formula or expression may use.",
                name=name,
            )
        ]
    return []


def _construct(node: ast.AST) -> Phrase:
    return Phrase(
        "python.evaluated.construct",
        "It uses '%(construct)s', which is outside the language this check allows there.",
        construct=_CONSTRUCTS.get(type(node), type(node).__name__),
    )


# Each construct written as code, which reads the same in every language.
_CONSTRUCTS: dict[type[ast.AST], str] = {
    ast.Attribute: "x.name",
    ast.Subscript: "x[i]",
    ast.Lambda: "lambda",
    ast.Dict: "{k: v}",
    ast.Set: "{x}",
    ast.ListComp: "[... for ...]",
    ast.GeneratorExp: "(... for ...)",
    ast.DictComp: "{... for ...}",
    ast.SetComp: "{... for ...}",
    ast.JoinedStr: "f'...'",
    ast.NamedExpr: ":=",
    ast.IfExp: "... if ... else ...",
    ast.Starred: "*x",
    ast.keyword: "**x",
    ast.Compare: "is",
    ast.Import: "import",
    ast.ImportFrom: "import",
}

_UNREADABLE = Phrase(
    "python.evaluated.unreadable",
    "It cannot be read in the language this check allows there.",
)
