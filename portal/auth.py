"""Who is asking: bearer tokens for the API, the session for web pages; roles."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import current_app, g, request, session

from sandbox.access import users
from sandbox.context import Sandbox
from sandbox.errors import Forbidden, Unauthenticated

F = TypeVar("F", bound=Callable[..., Any])
SAFE_METHODS = frozenset({"GET", "HEAD"})


def sandbox() -> Sandbox:
    result: Sandbox = current_app.config["SANDBOX"]
    return result


def _current_user_id() -> int:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        with sandbox().tx() as db:
            user = users.user_for_token(db, header.removeprefix("Bearer ").strip())
            g.role, g.username = user.role, user.username
            return user.id
    # The browser's session cookie stands for the user on pages and on API
    # reads; an API call that changes something needs the bearer token, so a
    # forged cross-site request cannot ride on the cookie.
    cookie_allowed = not request.path.startswith("/api/") or request.method in SAFE_METHODS
    if "user_id" in session and cookie_allowed:
        g.role, g.username = session["role"], session["username"]
        return int(session["user_id"])
    raise Unauthenticated("Log in first: send Authorization: Bearer <token>.")


def requires(*roles: str) -> Callable[[F], F]:
    """Let the view run only for a logged-in user with one of these roles."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            g.user_id = _current_user_id()
            if roles and g.role not in roles:
                raise Forbidden(f"This needs the role {' or '.join(roles)}.")
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
