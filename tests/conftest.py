"""Fixtures shared by every test: one per real service (see tests/services.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.services import drop_created_databases, unavailable


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


@pytest.fixture(scope="module")
def live_portal(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The whole product on embedded defaults: portal on a free port and a real Celery
    worker process on the embedded SQLite broker, with the development runner."""
    from tests.live import start_live_portal

    live = start_live_portal(tmp_path_factory.mktemp("live") / "instance", runner="local")
    yield live
    live.stop()
