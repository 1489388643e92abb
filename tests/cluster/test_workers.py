"""``switchboard serve --workers N`` (issue 20, item 3): N worker processes on one port,
each a node of the cluster, supervised. Real processes, a real Redis, real sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
import websockets

from tests.cluster.test_topics import eventually
from tests.conftest import Server, launch, stop, switchboard_cmd
from tests.e2e.leap import Leap, leap

pytestmark = pytest.mark.timeout(120)

SOCKETS = 40


def workers_of(server: Server) -> list[int]:
    assert server.process is not None
    out = subprocess.run(
        ["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True, check=False
    )
    return sorted(int(pid) for pid in out.stdout.split())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_workers_serve_one_port_as_one_cluster_and_are_restarted(
    redis_url: str, tmp_path: Path
) -> None:
    server = launch(tmp_path / "data", "--workers", "2", "--redis", redis_url)
    try:
        assert "running with 2 workers" in "".join(server.output)
        assert len(workers_of(server)) == 2
        async with httpx.AsyncClient(base_url=server.api, headers=server.headers) as api:
            ready = (await api.get(server.api.removesuffix("/v1") + "/readyz")).json()
            assert ready["data"] == {"status": "ready", "workers": 2}
            await api.put("/channels/lobby", json={"type": "unprotected"})
            clients: list[Leap] = []
            opened = []
            for _ in range(SOCKETS):
                context = leap(server.ws_url, server.project_id)
                clients.append(await context.__aenter__())
                opened.append(context)
            for client in clients:
                assert (await client.subscribe("lobby"))["e"] == "AVAILABLE"
            # Published through whichever worker the REST connection reached: every
            # socket on either worker gets each message.
            for i in range(5):
                await api.post("/channels/lobby/messages", json={"e": "m", "d": i})
            for client in clients:
                got = [(await client.dispatch("MESSAGE"))["d"]["d"] for _ in range(5)]
                assert got == list(range(5))

            # kill -9 one worker: its sockets drop, the other worker's stay, and the
            # supervisor starts a new one.
            before = workers_of(server)
            subprocess.run(["kill", "-9", str(before[0])], check=True)
            closed = 0
            for client in clients:
                try:
                    await client.ws.ping()
                    await asyncio.wait_for(client.ws.recv(), 0.5)
                except TimeoutError:
                    pass  # alive, nothing to read
                except websockets.ConnectionClosed:
                    closed += 1
            assert 0 < closed < SOCKETS, closed
            await eventually(
                lambda: len(workers_of(server)) == 2 and workers_of(server) != before, 10.0
            )
            for context in opened:
                await context.__aexit__(None, None, None)
    finally:
        workers = workers_of(server)
        code = stop(server, signal.SIGTERM)
    assert code == 0  # drained
    assert not any(alive(pid) for pid in workers)


def test_workers_need_redis(tmp_path: Path) -> None:
    result = subprocess.run(
        switchboard_cmd("serve", "--workers", "2", "--port", "0", "--data", str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "--workers 2 needs --redis" in result.stderr
