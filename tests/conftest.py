"""Fixtures shared by every test: one per real service (see tests/services.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.services import unavailable


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
