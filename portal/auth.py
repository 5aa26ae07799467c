"""Who is asking: bearer tokens for the API, the session for web pages.

Authentication only: what the person may do is decided by the action they
call (``policies.permissions``), so a view never holds a role list.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import current_app, g, request, session

from policies.permissions import Actor
from sandbox.access import users
from sandbox.context import Sandbox
from sandbox.errors import Forbidden, Unauthenticated

F = TypeVar("F", bound=Callable[..., Any])
SAFE_METHODS = frozenset({"GET", "HEAD"})


def sandbox() -> Sandbox:
    result: Sandbox = current_app.config["SANDBOX"]
    return result


def current_actor() -> Actor:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return users.actor_for_token(sandbox(), token=header.removeprefix("Bearer ").strip())
    # The browser's session cookie stands for the user on pages and on API
    # reads; an API call that changes something needs the bearer token, so a
    # forged cross-site request cannot ride on the cookie.
    cookie_allowed = not request.path.startswith("/api/") or request.method in SAFE_METHODS
    actor = session_actor() if cookie_allowed else None
    if actor is None:
        raise Unauthenticated("Log in first: send Authorization: Bearer <token>.")
    return actor


def session_actor() -> Actor | None:
    """Who the browser's session cookie stands for, if anyone."""
    if "user_id" not in session:
        return None
    return Actor(id=int(session["user_id"]), username=session["username"], role=session["role"])


def login_required(view: F) -> F:
    """Let the view run only for a logged-in person, known to it as ``g.actor``."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.actor = current_actor()
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def allowed(permission: Callable[[Actor], bool]) -> Callable[[F], F]:
    """A page only some may open (after ``login_required``): ``permission`` from
    ``policies.permissions`` decides, the same function the action asks."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not permission(g.actor):
                raise Forbidden("You may not open this page.")
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
