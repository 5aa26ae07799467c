"""Every error is JSON (API) or a friendly page (web): never a stack trace."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from sandbox.errors import SandboxError

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    @app.errorhandler(SandboxError)
    def _sandbox_error(error: SandboxError):  # type: ignore[no-untyped-def]
        response = jsonify(error=error.to_dict())
        retry_after = error.details.get("retry_after")
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response, error.status

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):  # type: ignore[no-untyped-def]
        if not request.path.startswith("/api/"):
            # A page outside the web views (an unknown path): the error page, in the
            # reader's language, not Werkzeug's English one.
            status = error.code or 500
            return render_template("error.html", status=status, message=None), status
        code = (error.name or "error").lower().replace(" ", "_")
        return jsonify(error={"code": code, "message": error.description}), error.code

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):  # type: ignore[no-untyped-def]
        # The detail goes to the server log only; it may hold values from the data.
        log.exception("unexpected error on %s %s", request.method, request.path)
        body = {"code": "internal", "message": "Something went wrong; it has been logged."}
        return jsonify(error=body), 500
