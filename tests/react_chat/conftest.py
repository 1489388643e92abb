"""examples/react-chat, built with Vite and driven in a real headless Chromium.

The app is built once per session (``vite build`` into a temporary directory) and served
by its own Python backend (``examples/react-chat/backend.py``, started as a process with
the README's command) against real Switchboard processes. Each test gets one Chromium
(Debian's, as in tests/console; Playwright never downloads one) with a fresh context per
user, so two users share nothing but the server. When a test fails, every user's page
is saved to test-artifacts/react-chat/TEST-USER.png.

Skipped on a developer's machine without Chromium, Playwright, node or the example's
``npm ci`` (``scripts/test`` does it); failed instead in CI (``CI`` set).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from pathlib import Path

import pytest

from tests.conftest import ROOT, Server, free_port
from tests.console.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.console.conftest import _missing as browser_missing
from tests.react_chat.chat import ChatBrowser

APP = ROOT / "examples" / "react-chat"
ARTIFACTS = ROOT / "test-artifacts" / "react-chat"
NODE = shutil.which("node")
BACKEND_READY = "Chat backend on "


def _missing() -> str | None:
    if NODE is None:
        return "the `node` binary is not on PATH"
    for package in ("vite", "@onehop/react", "@onehop/client", "react-dom"):
        if not (APP / "node_modules" / package / "package.json").is_file():
            return f"examples/react-chat/node_modules/{package} is missing: run `npm ci` there"
    return browser_missing()


def require_all() -> None:
    """Skip (or, in CI, fail) unless the browser, node and the example's packages are there."""
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the react-chat tests need their tools in CI: {missing}")
        pytest.skip(missing)


def vite(*args: str) -> list[str]:
    """The example's own pinned Vite (no npx: it would look for one on the registry)."""
    assert NODE is not None
    return [NODE, str(APP / "node_modules" / "vite" / "bin" / "vite.js"), *args]


@pytest.fixture(scope="session")
def built_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``vite build`` of the example, once per session, into a temporary dist/."""
    require_all()
    out = tmp_path_factory.mktemp("react-chat-dist")
    done = subprocess.run(
        vite("build", "--outDir", str(out), "--emptyOutDir", "--logLevel", "warn"),
        cwd=APP,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"vite build failed:\n{done.stdout}\n{done.stderr}"
    assert (out / "index.html").is_file()
    return out


class Backend:
    """A running ``backend.py`` process."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


StartBackend = Callable[..., Awaitable[Backend]]


@pytest.fixture
async def start_backend(built_app: Path, tmp_path: Path) -> AsyncIterator[StartBackend]:
    """``await start_backend(server, *extra, port=None)``: the README's one command."""
    started: list[Backend] = []

    async def start(server: Server, *extra: str, port: int | None = None) -> Backend:
        port = port or free_port()
        log = tmp_path / f"backend-{port}.log"
        with log.open("wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(APP / "backend.py"),
                "--switchboard",
                server.base_url,
                "--project-token",
                server.project_token,
                "--port",
                str(port),
                "--static",
                str(built_app),
                *extra,
                cwd=ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
        backend = Backend(proc, f"http://127.0.0.1:{port}", log)
        started.append(backend)
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 15)
        except TimeoutError:
            line = b""
        assert line.decode().startswith(BACKEND_READY), f"{line!r}\n{backend.output()}"
        return backend

    yield start
    for backend in started:
        await backend.stop()


_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so fixtures know at teardown if the test failed."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


@pytest.fixture
async def chromium(request: pytest.FixtureRequest) -> AsyncIterator[ChatBrowser]:
    """One headless Chromium; ``await chromium.user(name)`` opens a fresh context for one user."""
    require_all()
    from playwright.async_api import async_playwright, expect

    # Delivery is milliseconds; reconnects after a restart take the client's own 1 s retry
    # plus the server's start. Room for a loaded 2-core machine.
    expect.set_options(timeout=10_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        chat = ChatBrowser(browser)
        try:
            yield chat
        finally:
            reports = request.node.stash.get(_REPORTS, {})
            if any(report.failed for report in reports.values()):
                await chat.screenshots(ARTIFACTS, request.node.name)
            await browser.close()


@pytest.fixture
async def dev_server(tmp_path: Path) -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    """``await dev_server(backend_url)``: ``npm run dev`` (Vite's dev server) proxying /api there."""
    procs: list[asyncio.subprocess.Process] = []

    async def start(backend_url: str) -> str:
        require_all()
        port = free_port()
        log = tmp_path / f"vite-{port}.log"
        with log.open("wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                *vite("--host", "127.0.0.1", "--port", str(port), "--strictPort"),
                "--clearScreen",
                "false",
                cwd=APP,
                env={**os.environ, "BACKEND_URL": backend_url, "NO_COLOR": "1"},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
        procs.append(proc)
        assert proc.stdout is not None
        seen: list[str] = []
        # Vite prints its URLs once it listens.
        while not any(f":{port}/" in line for line in seen):
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), 30)
            except TimeoutError:
                line = b""
            assert line, f"vite exited or hung: {''.join(seen)}\n{log.read_text()}"
            seen.append(line.decode(errors="replace"))
        return f"http://127.0.0.1:{port}/"

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
