"""The password rule, for every new user and every password change.

At least 12 characters (and at most 256, so hashing one stays cheap), not the
username nor holding it, not a well-known password, and not all of one character
class (only lower-case letters, only digits, ...). A refusal names the rule it broke.
The demo's generated passwords (``secrets.token_urlsafe(9)``, 12 characters) pass.
"""

from __future__ import annotations

import secrets
import string

from sandbox.errors import InvalidRequest

MIN_CHARS = 12
MAX_CHARS = 256
# Passwords of 12 characters or more that lists of leaked passwords start with (the
# shorter ones fail the length rule anyway), compared without case.
COMMON = frozenset(
    {
        "123456789012",
        "1234567890123",
        "12345678901234",
        "123456123456",
        "123123123123",
        "111111111111",
        "000000000000",
        "1q2w3e4r5t6y",
        "1qaz2wsx3edc",
        "qwertyuiop12",
        "qwertyuiopas",
        "qwerty123456",
        "qwe123qwe123",
        "asdfghjkl123",
        "zxcvbnm12345",
        "password1234",
        "password123!",
        "passw0rd1234",
        "p@ssw0rd1234",
        "iloveyou1234",
        "administrator",
        "admin1234567",
        "admin@123456",
        "welcome12345",
        "changeme1234",
        "letmein12345",
        "woaini1314520",
        "woaini131452",
        "5201314520131",
        "abc123456789",
        "abcd12345678",
        "a12345678910",
        "aa1234567890",
        "abcdefghijkl",
        "abcdefg12345",
        "sandbox12345",
    }
)
CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits)


def password_problem(password: str, *, username: str) -> InvalidRequest | None:
    """What is wrong with this password for this user, naming the rule; None: nothing."""
    if len(password) < MIN_CHARS:
        return _broken("password.too_short", f"A password needs at least {MIN_CHARS} characters.")
    if len(password) > MAX_CHARS:
        return _broken("password.too_long", f"A password may have at most {MAX_CHARS} characters.")
    folded = password.casefold()
    # A name of one or two letters would rule out too much to be worth it.
    if len(username) >= 3 and username.casefold() in folded:
        return _broken("password.has_username", "A password may not hold the username.")
    if folded in COMMON:
        return _broken(
            "password.common", "This password is on lists of common passwords: choose another."
        )
    if any(all(c in chars for c in password) for chars in CLASSES) or not any(
        c in chars for chars in CLASSES for c in password
    ):
        return _broken(
            "password.one_class",
            "A password needs characters of at least two kinds (lower-case and upper-case "
            "letters, digits, other signs).",
        )
    return None


def require_good_password(password: str, *, username: str) -> None:
    problem = password_problem(password, username=username)
    if problem is not None:
        raise problem


def generated_password(username: str) -> str:
    """A fresh password that passes the rule (the demo users')."""
    while True:
        password = secrets.token_urlsafe(9)
        if password_problem(password, username=username) is None:
            return password


def _broken(rule: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, rule=rule, field="password")
