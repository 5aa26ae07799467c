"""Fixtures of the browser tests: Debian's Chromium, and a page that reaches the live portal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.live import LivePortal
from tests.services import unavailable

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        unavailable("Chromium", f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as error:  # pragma: no cover - playwright is a dev dependency
        unavailable("Playwright", str(error))
    manager = sync_playwright().start()
    try:
        launched = manager.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    except Error as error:
        manager.stop()
        unavailable("Chromium", str(error).splitlines()[0])
    yield launched
    launched.close()
    manager.stop()


@pytest.fixture
def page(browser: Any, live_portal: LivePortal) -> Iterator[Any]:
    """A fresh browser context (no cookies) that may reach the live portal and nothing else."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    offsite: list[str] = []

    def loopback_only(route: Any) -> None:
        if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            offsite.append(route.request.url)
            route.abort()

    context.route("**/*", loopback_only)
    opened = context.new_page()
    yield opened
    context.close()
    assert offsite == [], f"the pages asked for off-site resources: {offsite}"
