"""Execution backends: one contract, a Docker runner and a development runner."""

from runners.contract import (
    JobFailed,
    JobSpec,
    OutputTable,
    Runner,
    RunnerError,
    RunnerUnavailable,
    RunResult,
)

__all__ = [
    "JobFailed",
    "JobSpec",
    "OutputTable",
    "Runner",
    "RunnerError",
    "RunnerUnavailable",
    "RunResult",
]
