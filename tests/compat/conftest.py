"""Run Hop's official JS SDKs (tests/compat/*.cjs drivers) against a real server.

A driver is ``node SCRIPT SCENARIO`` with the server's URLs and project in its
environment. It prints one JSON object a line: ``{"step": NAME, "value": V}`` (or
``"undefined": true``, or ``"error": {...}`` when the SDK threw), ``{"done": SCENARIO}``
at the end, ``{"fatal": MESSAGE}`` when the driver itself failed (e.g. an event it waited
for did not come). pytest reads the lines as they come and may act between them.

Node runs as an asyncio subprocess: the in-process server of the ``node`` fixture lives
in the test's event loop and must keep answering while a driver runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server

HERE = Path(__file__).resolve().parent
NODE = shutil.which("node")
LINE_TIMEOUT = 20.0
"""How long pytest waits for the next line of a driver (drivers time out first, at 5 s a wait)."""


def skip_without_node() -> None:
    """Skip unless `node` and the pinned SDKs (`npm ci` in tests/compat) are installed."""
    if NODE is None:
        pytest.skip("the `node` binary is not on PATH (the compat tests drive Hop's npm SDKs)")
    for package in ("@onehop/js", "@onehop/client", "@onehop/leap-edge-js", "ws"):
        if not (HERE / "node_modules" / package / "package.json").is_file():
            pytest.skip(
                f"tests/compat/node_modules/{package} is missing: run `npm ci` in tests/compat"
            )


@pytest.fixture(autouse=True)
def _require_node() -> None:
    skip_without_node()


def driver_env(server: Server, **env: str) -> dict[str, str]:
    """A driver's environment: where the server is, and its project."""
    return {
        **os.environ,
        "SB_BASE_URL": server.base_url,
        "SB_WS_URL": server.ws_url,
        "SB_PROJECT_ID": server.project_id,
        "SB_PROJECT_TOKEN": server.project_token,
        **env,
    }


class DriverFailed(AssertionError):
    pass


class Steps:
    """What a driver recorded, by step name."""

    def __init__(self, lines: list[dict[str, Any]], describe: str, stderr: str = "") -> None:
        self.lines = lines
        self.describe = describe
        self.stderr = stderr
        self.by_step: dict[str, dict[str, Any]] = {}
        for line in lines:
            if "step" in line:
                assert line["step"] not in self.by_step, f"step {line['step']} recorded twice"
                self.by_step[line["step"]] = line

    def line(self, step: str) -> dict[str, Any]:
        assert step in self.by_step, f"no step {step!r} in {self.describe}: {sorted(self.by_step)}"
        return self.by_step[step]

    def __getitem__(self, step: str) -> Any:
        """The value the step recorded; fails if the SDK threw or returned undefined."""
        line = self.line(step)
        assert "error" not in line, f"{step}: the SDK threw {line['error']}"
        assert "value" in line, f"{step}: the SDK returned undefined"
        return line["value"]

    def undefined(self, step: str) -> bool:
        """True if the call succeeded and returned undefined (the SDK's void)."""
        line = self.line(step)
        assert "error" not in line, f"{step}: the SDK threw {line['error']}"
        return bool(line.get("undefined"))

    def error(self, step: str) -> dict[str, Any]:
        line = self.line(step)
        assert "error" in line, f"{step}: expected the SDK to throw, it returned {line}"
        error: dict[str, Any] = line["error"]
        return error


class Driver:
    """One running ``node`` driver."""

    def __init__(self, proc: asyncio.subprocess.Process, describe: str) -> None:
        self.proc = proc
        self.describe = describe
        self.lines: list[dict[str, Any]] = []
        self._stderr: list[bytes] = []
        assert proc.stderr is not None
        self._stderr_task = asyncio.ensure_future(self._drain(proc.stderr))

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self._stderr.append(chunk)

    @property
    def stderr(self) -> str:
        return b"".join(self._stderr).decode(errors="replace")

    def _fail(self, why: str) -> DriverFailed:
        tail = "\n".join(json.dumps(line)[:2000] for line in self.lines[-10:])
        return DriverFailed(
            f"{self.describe}: {why}\n--- last lines ---\n{tail}\n--- stderr ---\n{self.stderr[-6000:]}"
        )

    async def _read_line(self, timeout: float) -> dict[str, Any] | None:
        assert self.proc.stdout is not None
        try:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            raise self._fail(f"no output for {timeout} s") from None
        if not raw:
            return None
        try:
            line: dict[str, Any] = json.loads(raw)
        except ValueError:
            raise self._fail(f"not a JSON line: {raw!r}") from None
        self.lines.append(line)
        if "fatal" in line:
            raise self._fail(f"driver failed: {line['fatal']}")
        return line

    async def expect(self, step: str, timeout: float = LINE_TIMEOUT) -> dict[str, Any]:
        """Read lines until the one recording ``step``; returns that line."""
        while True:
            line = await self._read_line(timeout)
            if line is None:
                raise self._fail(f"exited before step {step!r}")
            if line.get("step") == step:
                return line

    async def finish(self, timeout: float = LINE_TIMEOUT) -> Steps:
        """Read to the end; the driver must report ``done`` and exit 0."""
        while await self._read_line(timeout) is not None:
            pass
        code = await self.wait(timeout)
        if code != 0 or not any("done" in line for line in self.lines):
            raise self._fail(f"exited with {code} without finishing")
        return Steps(self.lines, self.describe, self.stderr)

    async def wait(self, timeout: float = LINE_TIMEOUT) -> int:
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            raise self._fail(f"did not exit within {timeout} s") from None
        await self._stderr_task
        return code

    async def kill(self) -> None:
        """End the driver abruptly (as a closed browser tab would)."""
        if self.proc.returncode is None:
            self.proc.kill()
        with contextlib.suppress(DriverFailed):
            await self.wait()


class JS:
    """Starts drivers against a server; every driver is ended when the test ends."""

    def __init__(self) -> None:
        self.drivers: list[Driver] = []

    async def start(self, script: str, scenario: str, server: Server, **env: str) -> Driver:
        assert NODE is not None
        proc = await asyncio.create_subprocess_exec(
            NODE,
            str(HERE / script),
            scenario,
            cwd=HERE,
            env=driver_env(server, **env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        driver = Driver(proc, f"node {script} {scenario}")
        self.drivers.append(driver)
        return driver

    async def run(self, script: str, scenario: str, server: Server, **env: str) -> Steps:
        """Run a driver to the end and return what it recorded."""
        driver = await self.start(script, scenario, server, **env)
        return await driver.finish()

    async def close(self) -> None:
        for driver in self.drivers:
            await driver.kill()


@pytest.fixture
async def js() -> AsyncIterator[JS]:
    runner = JS()
    try:
        yield runner
    finally:
        await runner.close()


def run_blocking(script: str, scenario: str, server: Server, timeout: float = 40) -> Steps:
    """Run a driver to the end, blocking: only for a server in another process."""
    assert server.process is not None, "an in-process server must keep answering: use `js`"
    assert NODE is not None
    describe = f"node {script} {scenario}"
    proc = subprocess.run(
        [NODE, str(HERE / script), scenario],
        cwd=HERE,
        env=driver_env(server),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    fatal = [line["fatal"] for line in lines if "fatal" in line]
    if proc.returncode != 0 or fatal or not any("done" in line for line in lines):
        raise DriverFailed(
            f"{describe}: exited with {proc.returncode}: {fatal}\n--- stdout ---\n"
            f"{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return Steps(lines, describe, proc.stderr)
