"""Fixtures shared by every test: one per real service (see tests/services.py), a test
instance, and the portal over it with its clients (see tests/clients.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.services import drop_created_databases, unavailable

if TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient

    from sandbox.context import Sandbox
    from tests.clients import Bearer, Login, Token


@pytest.fixture(scope="session", autouse=True)
def _drop_test_databases() -> Iterator[None]:
    yield
    drop_created_databases()


@pytest.fixture(scope="session")
def docker_client() -> Iterator[object]:
    """A client of a reachable Docker engine that has the runner image."""
    try:
        import docker
        from docker.errors import DockerException, ImageNotFound
    except ImportError as error:  # pragma: no cover - docker is a dependency
        unavailable("Docker", str(error))
    from runners.image import IMAGE_TAG

    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except DockerException as error:
        unavailable("Docker engine", type(error).__name__)
    try:
        client.images.get(IMAGE_TAG)
    except ImageNotFound:
        unavailable("Docker runner image", f"{IMAGE_TAG} is not built (sandbox runner build-image)")
    yield client
    client.close()


@pytest.fixture(params=["runsc", "runc"])
def runtime(request: pytest.FixtureRequest, docker_client: object) -> str:
    """An engine runtime the isolation tests run under, each in turn: gVisor (runsc) and
    runc. One the engine does not list is skipped, and fails under
    SANDBOX_REQUIRE_SERVICES=1 (CI registers both with .ci/docker-up)."""
    from runners.runtimes import registered_runtimes

    name = str(request.param)
    if name not in registered_runtimes(docker_client):
        unavailable(f"Docker runtime {name}", "not registered with the engine (.ci/docker-up)")
    return name


@pytest.fixture(autouse=True)
def _close_idle_database_connections():  # type: ignore[no-untyped-def]
    """Each test instance has a database of its own (PostgreSQL in CI): its idle
    pooled connections are closed after the test, or they add up past the server's
    connection limit."""
    yield
    from sandbox.db import close_idle_connections

    close_idle_connections()


@pytest.fixture
def sandbox_instance(tmp_path):  # type: ignore[no-untyped-def]
    """A migrated instance (SQLite, development runner) with demo users, grants, data."""
    from tests.factories import make_sandbox

    return make_sandbox(tmp_path / "instance")


@pytest.fixture
def app(sandbox_instance: Sandbox) -> Flask:
    """The portal over the test instance, keeping the jobs it queues in app.config["QUEUED"].
    A module whose tests need another instance overrides this fixture with
    `make_app(that_instance)`; `client`, `login`, `token` and `bearer` then use it."""
    from tests.factories import make_app

    return make_app(sandbox_instance)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A client with no session and no token."""
    return app.test_client()


@pytest.fixture
def login(app: Flask) -> Login:
    """`login(username)` logs a demo user in through the login form and returns a client
    of its own holding that page session, so one test can have several users at once."""
    from tests.clients import log_in

    def logged_in(username: str) -> FlaskClient:
        client = app.test_client()
        log_in(client, username, app.config["SANDBOX"].credentials[username])
        return client

    return logged_in


@pytest.fixture
def token(app: Flask) -> Token:
    """`token(username)` is a bearer token the API issued to a demo user (a login, audited)."""
    from tests.clients import request_token

    def issued(username: str) -> str:
        password = app.config["SANDBOX"].credentials[username]
        return request_token(app.test_client(), username, password)

    return issued


@pytest.fixture
def bearer(token: Token) -> Bearer:
    """`bearer(username)` is the Authorization header of a fresh token of that user's."""
    return lambda username: {"Authorization": f"Bearer {token(username)}"}


@pytest.fixture(scope="module")
def live_portal(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The whole product on embedded defaults: portal on a free port and a real Celery
    worker process on the embedded SQLite broker, with the development runner."""
    from tests.live import start_live_portal

    live = start_live_portal(tmp_path_factory.mktemp("live") / "instance", runner="local")
    yield live
    live.stop()
