"""A real browser for tests: headless Chromium from Debian's package, driven by Playwright.

Playwright's own browser download cannot work here, so it drives ``/usr/bin/chromium``
(``CHROMIUM_PATH`` names another). Without Chromium or the ``playwright`` package the browser
tests are skipped on a developer's machine and fail under ``CI=true``
(``tests/support/services.py``); ``.ci/run`` installs Chromium.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tests.support.services import unavailable

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Route

SUITE = "browser"
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium, closed afterwards (skipped, or failed in CI, when missing)."""
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(SUITE, f"{CHROMIUM} is missing (Debian: apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        unavailable(SUITE, "the playwright package is missing (pip install -e '.[test]')")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            await browser.close()


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (127.0.0.0/8, ::1 or localhost)."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def keep_offline(page: Page) -> list[str]:
    """Abort every request ``page`` makes to a host other than this machine, as a machine
    without internet would; the list fills with the addresses that were refused."""
    refused: list[str] = []

    async def route(route: Route) -> None:
        url = route.request.url
        if is_loopback(url):
            await route.continue_()
        else:
            refused.append(url)
            await route.abort("internetdisconnected")

    await page.route("**/*", route)
    return refused
