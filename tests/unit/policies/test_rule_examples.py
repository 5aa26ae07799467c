"""Each rule's examples behave as documented, and the docs page matches them."""

from __future__ import annotations

from pathlib import Path

import pytest

from datasets.health_manifest import HEALTH
from sandbox.errors import PolicyRejected
from sandbox.jobs.planning import JobRequest, plan_job
from tests.unit.policies.rule_examples import EXAMPLES, RuleExample, render

DOC = Path(__file__).resolve().parents[3] / "docs" / "policy-rules.md"


def findings_of(code: str, mode: str, language: str = "sql") -> list[str]:
    try:
        plan_job(HEALTH, JobRequest(HEALTH.name, language, mode, code, epsilon=1.0))
    except PolicyRejected as rejection:
        return [f["rule"] for f in rejection.details["findings"]]
    return []


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.rule)
def test_rule_example_accepted(example: RuleExample) -> None:
    assert findings_of(example.accepted, example.mode, example.language) == []


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.rule)
def test_rule_example_rejected_by_its_rule(example: RuleExample) -> None:
    assert example.rule in findings_of(example.rejected, example.mode, example.language)


def test_rule_examples_page_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/policy-rules.md is stale: python -m tests.unit.policies.rule_examples > "
        "docs/policy-rules.md"
    )
