"""``GET /v1/stats`` → ``process``: the server's own memory, descriptors, tasks and uptime."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from switchboard.server.observability import process_stats
from tests.conftest import Server, launch, stop
from tests.e2e.leap import leap


def proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def figures(http: httpx.AsyncClient) -> dict[str, Any]:
    r = await http.get("/stats")
    assert r.status_code == 200, r.text
    process: dict[str, Any] = r.json()["data"]["process"]
    return process


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


linux_only = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")


@linux_only
def test_open_fds_counts_exactly_this_process_descriptors() -> None:
    before = process_stats.open_fds()
    with open(__file__, "rb"):
        assert process_stats.open_fds() == (before or 0) + 1
    assert process_stats.open_fds() == before


@linux_only
def test_rss_and_uptime_of_this_process() -> None:
    rss = process_stats.rss_bytes()
    assert rss is not None and abs(rss - proc_rss(os.getpid())) < 16 * 2**20
    uptime = process_stats.uptime_s()
    assert uptime is not None and 0 <= uptime < 24 * 3600


async def test_asyncio_tasks_counts_live_tasks() -> None:
    before = process_stats.process_figures()["asyncio_tasks"]
    task = asyncio.create_task(asyncio.sleep(10))
    assert process_stats.process_figures()["asyncio_tasks"] == before + 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert process_stats.process_figures()["asyncio_tasks"] == before


async def test_without_proc_the_figures_are_null(monkeypatch: pytest.MonkeyPatch) -> None:
    # A system with no /proc/self (macOS, Windows) is a path that does not exist.
    monkeypatch.setattr(process_stats, "_PROC", "/nonexistent-proc/self")
    got = process_stats.process_figures()
    assert got["rss_bytes"] is None and got["open_fds"] is None and got["uptime_s"] is None
    assert isinstance(got["asyncio_tasks"], int)


@pytest.fixture
def server(tmp_path: Path) -> Any:
    started = launch(tmp_path / "data", "--log-level", "warning")
    try:
        yield started
    finally:
        if started.process is not None and started.process.poll() is None:
            stop(started, signal.SIGKILL)


@linux_only
async def test_stats_reports_the_server_process_figures(server: Server) -> None:
    assert server.process is not None
    pid = server.process.pid
    async with httpx.AsyncClient(base_url=server.api, headers=server.headers) as http:
        got = await figures(http)
        assert set(got) == {"rss_bytes", "open_fds", "asyncio_tasks", "uptime_s"}
        # Read from outside right after, with the same keep-alive connection open.
        assert abs(got["open_fds"] - proc_fds(pid)) <= 2, got
        assert abs(got["rss_bytes"] - proc_rss(pid)) < 16 * 2**20, got
        # The request's own handler, the activity sampler, the gateway's sweeper.
        assert got["asyncio_tasks"] >= 3
        assert 0 < got["uptime_s"] < 120
        r = await http.get("/stats", headers={"Authorization": "ptk_wrong"})
        assert r.status_code == 401 and "process" not in r.text


@linux_only
async def test_sockets_raise_fds_and_tasks_and_closing_them_brings_both_back(
    server: Server,
) -> None:
    async with httpx.AsyncClient(base_url=server.api, headers=server.headers) as http:
        assert (await http.put("/channels/room", json={"type": "unprotected"})).status_code == 200
        base = await figures(http)
        count = 20
        async with contextlib.AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(leap(server.ws_url, server.project_id))
                for _ in range(count)
            ]
            assert (await clients[0].subscribe("room"))["e"] == "AVAILABLE"
            busy = await figures(http)
            assert busy["open_fds"] >= base["open_fds"] + count
            assert busy["asyncio_tasks"] >= base["asyncio_tasks"] + count
        # A socket dropped without a close handshake is cleaned up too.
        raw = await websockets.connect(server.ws_url)
        await raw.recv()
        assert raw.transport is not None
        raw.transport.abort()

        async def back() -> bool:
            now = await figures(http)
            return (
                now["open_fds"] == base["open_fds"]
                and now["asyncio_tasks"] == base["asyncio_tasks"]
            )

        await until(back)
