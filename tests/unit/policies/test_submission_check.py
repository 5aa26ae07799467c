"""A contest submission is a Python job that also defines fit(train) and predict(model,
features) at its top level; anything else is refused with the rule it broke."""

from __future__ import annotations

import pytest

from policies.python_check import check_submission

GOOD = """
import pandas as pd

def fit(train):
    return train["visits"]["cost"].mean()

def predict(model, features):
    return [model] * len(features["visits"])
"""


def rules(code: str) -> list[str]:
    return [f.rule for f in check_submission(code).findings]


def test_a_submission_with_both_functions_passes() -> None:
    assert check_submission(GOOD).allowed


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ("def fit(train):\n    return 1\n", "submission.missing_function"),
        ("def predict(model, features):\n    return []\n", "submission.missing_function"),
        (GOOD.replace("def fit(train):", "def fit(train, extra):"), "submission.signature"),
        (
            GOOD.replace("def predict(model, features):", "def predict(*rows):"),
            "submission.signature",
        ),
        (GOOD.replace("def fit(train):", "async def fit(train):"), "submission.signature"),
        # Nested in a class or a condition is not the top level.
        ("class M:\n" + GOOD.replace("\n", "\n    "), "submission.missing_function"),
    ],
)
def test_missing_or_misshapen_functions_are_refused_by_name(code: str, rule: str) -> None:
    assert rule in rules(code)


def test_optional_parameters_keep_the_signature_callable() -> None:
    code = GOOD.replace("def fit(train):", "def fit(train, rounds=3, *, seed=0):")
    assert check_submission(code).allowed


def test_the_python_rules_still_apply_first() -> None:
    code = GOOD + "\nimport pickle\n"
    assert not check_submission(code).allowed
    assert all(not r.startswith("submission.") for r in rules(code))
