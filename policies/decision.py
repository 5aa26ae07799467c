"""What every check returns: a decision with the findings that explain it.

A finding's ``message`` is English. It also carries a ``message_id`` and plain
``params`` (column names, numbers, never data values), so the portal can say it
in the reader's language: the catalogs (``portal/translations``) hold one
template per message id, with the same ``%(name)s`` fields as the English one.

A part of a message that is itself worded (a reason, a place) is a
:class:`Phrase`: English text that knows its own message id. In ``params`` it
is stored as ``<name>_id``, and the portal words it first, with the same
params, before it fills ``%(name)s``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Param = str | int | float


class PolicyError(Exception):
    """Base of this package's errors."""


class Phrase(str):
    """English text, made from a ``%(name)s`` template, that knows its message id and params.

    It is a ``str`` (the English text), so it goes wherever text goes; a
    :class:`Finding` made with one as its message, or a Phrase made with one as
    a param, keeps its id and params.
    """

    message_id: str
    params: dict[str, Param]

    def __new__(cls, message_id: str, template: str, /, **params: Param | Phrase) -> Phrase:
        plain = flat_params(params)
        english = {n: str(v) if isinstance(v, Phrase) else v for n, v in params.items()}
        phrase = super().__new__(cls, template % english if params else template)
        phrase.message_id = message_id
        phrase.params = plain
        return phrase

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as the plain English text: ids and params travel through to_dict().
        return (str, (str(self),))


def template(message_id: str, text: str) -> str:
    """``text``, marked as the English template of ``message_id`` for pybabel (a finding
    made later from a table of templates)."""
    return text


def flat_params(params: Mapping[str, Param | Phrase]) -> dict[str, Param]:
    """Plain params: a Phrase becomes ``<name>_id`` and brings its own params along."""
    plain: dict[str, Param] = {}
    for name, value in params.items():
        if isinstance(value, Phrase):
            _put(plain, f"{name}_id", value.message_id)
            for inner, inner_value in value.params.items():
                _put(plain, inner, inner_value)
        elif name.endswith("_id"):
            raise ValueError(f"a plain param may not end in _id (those name phrases): {name}")
        elif isinstance(value, bool) or not isinstance(value, str | int | float):
            raise TypeError(f"param {name} must be text or a number, not {type(value).__name__}")
        else:
            _put(plain, name, value)
    return plain


def _put(params: dict[str, Param], name: str, value: Param) -> None:
    if name in params and params[name] != value:
        raise ValueError(f"param {name} is given twice with different values")
    params[name] = value


@dataclass(frozen=True)
class Finding:
    rule: str
    message: str
    location: str | None = None
    suggestion: str | None = None
    # Which catalog entry words the message; the rule when one wording serves it.
    message_id: str = ""
    # Excluded from the hash (a dict is not hashable); equal findings still compare params.
    params: Mapping[str, Param] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if isinstance(self.message, Phrase):
            if not self.message_id:
                object.__setattr__(self, "message_id", self.message.message_id)
            if not self.params:
                object.__setattr__(self, "params", dict(self.message.params))
            object.__setattr__(self, "message", str(self.message))
        if not self.message_id:
            object.__setattr__(self, "message_id", self.rule)
        if self.suggestion is not None:
            object.__setattr__(self, "suggestion", str(self.suggestion))

    @classmethod
    def of(
        cls,
        rule: str,
        template: str,
        /,
        location: str | None = None,
        suggestion: str | None = None,
        *,
        message_id: str | None = None,
        **params: Param | Phrase,
    ) -> Finding:
        """The finding whose English message is ``template % params``, worded by its id
        (the rule unless ``message_id`` says otherwise)."""
        return cls(
            rule,
            Phrase(message_id or rule, template, **params),
            location,
            suggestion,
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "rule": self.rule,
            "message": self.message,
            "message_id": self.message_id,
            "params": dict(self.params),
        }
        if self.location:
            data["location"] = self.location
        if self.suggestion:
            data["suggestion"] = self.suggestion
        return data


@dataclass(frozen=True)
class Decision:
    allowed: bool
    findings: tuple[Finding, ...] = field(default=())

    @classmethod
    def allow(cls) -> Decision:
        return cls(True, ())

    @classmethod
    def deny(cls, *findings: Finding) -> Decision:
        return cls(False, tuple(findings))
