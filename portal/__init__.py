"""The portal: a thin Flask app (JSON API and web pages) over sandbox services."""

from __future__ import annotations

from typing import Any

from flask import Flask

from portal import request_checks, security
from sandbox.config import Settings
from sandbox.context import Sandbox, current


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    request_checks.init_app(app)  # before any route is added
    config = test_config or {}
    sandbox: Sandbox = config.get("SANDBOX") or current()
    app.config.update(
        SANDBOX=sandbox,
        SECRET_KEY=sandbox.secrets.session_key,
        MAX_CONTENT_LENGTH=1024 * 1024,
        JSON_AS_ASCII=False,
    )
    security.init_app(app, sandbox.settings)  # headers, cookie flags, a trusted proxy
    app.config.update(config)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]

    from portal import (
        api,
        api_contest,
        api_owners,
        api_submissions,
        errors,
        i18n,
        openapi,
        web,
        web_contest,
        web_owners,
    )
    from sandbox.worker.celery_app import make_celery
    from sandbox.worker.tasks import make_enqueue, make_submission_enqueue

    celery = make_celery(sandbox.settings)
    app.extensions["enqueue"] = config.get("ENQUEUE") or make_enqueue(celery)
    # Contest submissions, and their private scorings at the close, go to their own queue.
    app.extensions["enqueue_submission"] = config.get(
        "ENQUEUE_SUBMISSION"
    ) or make_submission_enqueue(celery)
    app.extensions["enqueue_final"] = config.get("ENQUEUE_FINAL") or make_submission_enqueue(
        celery, final=True
    )

    errors.init_app(app)
    i18n.init_app(app, time_zone=sandbox.settings.time_zone)
    app.register_blueprint(api.bp)
    app.register_blueprint(api_owners.bp)
    app.register_blueprint(api_contest.bp)
    app.register_blueprint(api_submissions.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(web.bp)
    app.register_blueprint(web_owners.bp)
    app.register_blueprint(web_contest.bp)
    return app


def settings_of(app: Flask) -> Settings:
    sandbox: Sandbox = app.config["SANDBOX"]
    return sandbox.settings
