"""A pybabel extractor for the message ids of policy and check findings (``babel.cfg``).

Findings are worded in ``policies/`` and ``sandbox/``, which never call gettext:
their English template sits at the call that makes the finding. This reads those
calls from the source (it imports nothing) and hands pybabel each message id,
with its English template as the comment translators see (``#.`` in the .po):

- ``Finding("rule", "literal text", ...)``: the id is ``message_id=`` or the rule;
- ``Finding.of("rule", "template %(x)s", ..., message_id=...)``: likewise;
- ``Phrase("id", "template")`` and ``template("id", "template")``: the first argument.

A call whose id or template is not a literal is skipped: the Phrase or template it
was made from is extracted where that is written.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator, Mapping
from typing import IO, Any, NamedTuple

CALLS = frozenset({"Finding", "Finding.of", "Phrase", "template"})


def extract_findings(
    fileobj: IO[bytes],
    keywords: Collection[str],
    comment_tags: Collection[str],
    options: Mapping[str, Any],
) -> Iterator[tuple[int, str | None, str, list[str]]]:
    """Babel's extractor interface: ``(line, function, message id, comments)``."""
    tree = ast.parse(fileobj.read(), filename=getattr(fileobj, "name", "<source>"))
    for found in finding_messages(tree):
        yield found.line, None, found.message_id, [found.template]


class FoundMessage(NamedTuple):
    """One message id written in the source, with its English template."""

    line: int
    message_id: str
    template: str


def finding_messages(tree: ast.AST) -> Iterator[FoundMessage]:
    """Every finding message id and English template written literally in ``tree``."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or _callee(node.func) not in CALLS:
            continue
        callee = _callee(node.func)
        first = _literal(node.args[0]) if node.args else None
        text = _literal(node.args[1]) if len(node.args) > 1 else None
        named = next((_literal(k.value) for k in node.keywords if k.arg == "message_id"), None)
        message_id = first if callee in ("Phrase", "template") else (named or first)
        if message_id and text is not None:
            yield FoundMessage(node.lineno, message_id, text)


def _callee(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    return None


def _literal(node: ast.expr) -> str | None:
    """A string literal's text (adjacent literals are one constant to ast); else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None
