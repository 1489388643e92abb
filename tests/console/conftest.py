"""A real headless Chromium for the console tests, driven by Playwright's async API.

The browser is Debian's ``chromium`` (``/usr/bin/chromium``, installed by
``scripts/test``); Playwright never downloads one. Each test gets a fresh profile.
Without Chromium or Playwright the tests are skipped on a developer's machine and fail
in CI (``CI`` set), where ``scripts/test`` must have installed both.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

CHROMIUM = os.environ.get("SWITCHBOARD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "console"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright (pip) is not installed"
    if not Path(CHROMIUM).exists():
        return f"chromium is not installed at {CHROMIUM}"
    return None


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Any]:
    """A fresh Chromium profile (a BrowserContext) at a desktop size."""
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the console tests need a browser in CI: {missing}")
        pytest.skip(missing)
    from playwright.async_api import async_playwright, expect

    # Live views poll every 2-3 s; leave room for a loaded CI machine.
    expect.set_options(timeout=10_000)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
            locale="en-US",
            timezone_id="UTC",
        )
        context.set_default_timeout(10_000)
        try:
            yield context
        finally:
            await context.close()


async def screenshot(page: Any, name: str, *, full_page: bool = True) -> None:
    """Save a screenshot to test-artifacts/console/NAME.png, without the notices."""
    await page.evaluate("document.getElementById('notices').hidden = true")
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)
    await page.evaluate("document.getElementById('notices').hidden = false")
