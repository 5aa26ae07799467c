"""What every check returns: a decision with the findings that explain it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class PolicyError(Exception):
    """Base of this package's errors."""


@dataclass(frozen=True)
class Finding:
    rule: str
    message: str
    location: str | None = None
    suggestion: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"rule": self.rule, "message": self.message}
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
