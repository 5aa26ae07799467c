"""The password rule: each refusal names its rule; the demo's passwords pass."""

from __future__ import annotations

import pytest

from sandbox.access.passwords import generated_password, password_problem


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("Short-1", "password.too_short"),
        ("x" * 257 + "A1", "password.too_long"),
        ("my-analyst-2026", "password.has_username"),
        ("MY-ANALYST-2026", "password.has_username"),
        ("Password1234", "password.common"),
        ("1q2w3e4r5t6y", "password.common"),
        ("abcdefghijklmnop", "password.one_class"),
        ("ABCDEFGHIJKLMNOP", "password.one_class"),
        ("1234567890123456789", "password.one_class"),
        ("!@#$%^&*()_+-=", "password.one_class"),
    ],
)
def test_password_problem_names_rule(password: str, rule: str) -> None:
    problem = password_problem(password, username="analyst")
    assert problem is not None and problem.details["rule"] == rule
    assert problem.details["field"] == "password" and password not in problem.message


@pytest.mark.parametrize(
    "password", ["correct-horse-battery", "Zq3-v9Lr_x2M", "数据可用不可见-2026"]
)
def test_password_problem_none_for_good_password(password: str) -> None:
    assert password_problem(password, username="analyst") is None


def test_password_problem_short_username_not_matched() -> None:
    assert password_problem("t0-team-password-9", username="t0") is None


def test_generated_password_passes_rule() -> None:
    for _ in range(200):
        password = generated_password("admin")
        assert len(password) == 12 and password_problem(password, username="admin") is None
