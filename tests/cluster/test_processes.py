"""Real `switchboard serve --redis` processes: a node killed with kill -9."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import launch, stop
from tests.e2e.leap import leap


async def test_kill_9_of_a_node(redis_url: str, tmp_path: Path) -> None:
    a = launch(tmp_path / "a", "--redis", redis_url)
    b = launch(tmp_path / "b", "--redis", redis_url, credentials=(a.project_id, a.project_token))
    try:
        with httpx.Client(base_url=a.api, headers=a.headers) as via_a:

            def ok(r: httpx.Response) -> Any:
                assert r.status_code == 200, r.text
                return r.json()["data"]

            ok(via_a.put("/channels/room", json={"type": "public", "state": {"x": 1}}))
            token = ok(via_a.post("/channels/tokens"))["token"]["id"]

            def online() -> bool:
                return bool(ok(via_a.get(f"/channels/tokens/{token}"))["token"]["is_online"])

            async with leap(b.ws_url, b.project_id, token) as client:
                assert (await client.subscribe("room"))["e"] == "AVAILABLE"
                deadline = time.monotonic() + 5
                while not online():
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
                assert stop(b, signal.SIGKILL) == -signal.SIGKILL
                assert (await client.closed())[0] in (1006, None)

            # The dead node's presence expires (TTL 15 s) with no cleanup by hand.
            deadline = time.monotonic() + 30
            while online():
                assert time.monotonic() < deadline, "a killed node still counts"
                await asyncio.sleep(0.5)

            # Its client reconnects to the other node and finds its subscription in INIT.
            async with leap(a.ws_url, a.project_id, token) as again:
                assert [c["id"] for c in again.init["channels"]] == ["room"]
                ok(via_a.post("/channels/room/messages", json={"e": "hi"}))
                assert (await again.dispatch("MESSAGE"))["d"] == {"e": "hi", "d": None}
    finally:
        for server in (a, b):
            if server.process is not None and server.process.poll() is None:
                stop(server)


async def test_order_of_sequential_publishes_seen_from_two_other_nodes(
    redis_url: str, tmp_path: Path
) -> None:
    a = launch(tmp_path / "a", "--redis", redis_url)
    others = [
        launch(tmp_path / n, "--redis", redis_url, credentials=(a.project_id, a.project_token))
        for n in "bc"
    ]
    count = 2000
    try:
        async with httpx.AsyncClient(base_url=a.api, headers=a.headers) as via_a:
            r = await via_a.put("/channels/feed", json={"type": "unprotected"})
            assert r.status_code == 200
            async with (
                leap(others[0].ws_url, a.project_id) as on_b,
                leap(others[1].ws_url, a.project_id) as on_c,
            ):
                for client in (on_b, on_c):
                    assert (await client.subscribe("feed"))["e"] == "AVAILABLE"
                for i in range(count):
                    r = await via_a.post("/channels/feed/messages", json={"e": "n", "d": i})
                    assert r.status_code == 200
                for client in (on_b, on_c):
                    got = [(await client.dispatch("MESSAGE"))["d"]["d"] for _ in range(count)]
                    assert got == list(range(count))
    finally:
        for server in (a, *others):
            stop(server)
