"""A headless Chromium for tests, driven through Playwright.

Playwright's own browser download needs the internet, so the browser is the system's Chromium
(Debian's ``chromium`` package, ``/usr/bin/chromium``; ``CRMKIT_CHROMIUM`` names another). When
it or the ``playwright`` package is missing the browser tests are skipped with the reason —
except under ``CI=true``, where they fail, like the database backends: CI must run them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from crmkit.testing import in_ci

DEFAULT_CHROMIUM = "/usr/bin/chromium"
#: Headless and quiet: no sandbox (containers run as root), no GPU, and none of the background
#: traffic (component updates, sync, QUIC probes) that would make "no network" untestable.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]


def unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"CI=true requires the browser tests; {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """A launched Chromium browser, shared by the session's browser tests."""
    executable = os.environ.get("CRMKIT_CHROMIUM", DEFAULT_CHROMIUM)
    if not Path(executable).is_file():
        unavailable(f"no Chromium at {executable} (install Debian's `chromium` package, or set CRMKIT_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install -r requirements-dev.txt)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
