"""The sandbox's exceptions. Messages are meant for people and hold no data values."""

from __future__ import annotations

from typing import Any


class SandboxError(Exception):
    """Base of every error this package raises on purpose."""

    code = "error"
    status = 400

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


class NotFound(SandboxError):
    code = "not_found"
    status = 404


class Forbidden(SandboxError):
    code = "forbidden"
    status = 403


class NoActiveGrant(Forbidden):
    code = "no_active_grant"


class Unauthenticated(SandboxError):
    code = "unauthenticated"
    status = 401


class InvalidRequest(SandboxError):
    code = "invalid_request"
    status = 400


class PolicyRejected(SandboxError):
    """A policy rejected the job; ``findings`` say every rule it broke."""

    code = "policy_violation"
    status = 422


class BudgetExhausted(PolicyRejected):
    code = "budget_exhausted"


class TooManyRequests(SandboxError):
    """An analyst's fair share is used up for now; ``retry_after`` says when to try again."""

    code = "rate_limited"
    status = 429


class Conflict(SandboxError):
    code = "conflict"
    status = 409


class ConfigurationError(SandboxError):
    code = "configuration"
    status = 500
