"""Two nodes on one real Redis act as one service (first steps of the cluster)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, join_node, node_pair
from tests.e2e.leap import leap


@pytest.fixture
async def pair(redis_url: str, tmp_path: Path) -> AsyncIterator[tuple[Server, Server]]:
    async with node_pair(redis_url, tmp_path) as nodes:
        yield nodes


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.02)


async def test_everything_crosses_nodes(pair: tuple[Server, Server]) -> None:
    a, b = pair
    async with httpx.AsyncClient(base_url=a.api, headers=a.headers) as via_a:

        async def ok(call: Awaitable[httpx.Response]) -> Any:
            r = await call
            assert r.status_code == 200, r.text
            return r.json()["data"]

        await ok(via_a.put("/channels/game", json={"type": "private", "state": {"n": 0}}))
        token = (await ok(via_a.post("/channels/tokens", json={"state": {"u": 1}})))["token"]["id"]
        async with leap(b.ws_url, b.project_id, token) as client:

            async def online() -> bool:
                got = await ok(via_a.get(f"/channels/tokens/{token}"))
                return bool(got["token"]["is_online"])

            await eventually(online)
            await ok(via_a.put(f"/channels/game/subscribers/{token}"))
            available = await client.dispatch("AVAILABLE")
            assert available["d"]["channel"]["state"] == {"n": 0}

            async def counted() -> bool:
                stats = await ok(via_a.get("/channels/game/stats"))
                return bool(stats["stats"]["online_count"] == 1)

            await eventually(counted)
            for i in range(300):
                await ok(via_a.post("/channels/game/messages", json={"e": "n", "d": i}))
            got = [(await client.dispatch("MESSAGE"))["d"]["d"] for _ in range(300)]
            assert got == list(range(300))
            await ok(via_a.patch("/channels/game/state", json={"n": 1}))
            assert (await client.dispatch("STATE_UPDATE"))["d"] == {"state": {"n": 1}}
            await ok(via_a.post(f"/channels/tokens/{token}/messages", json={"e": "dm"}))
            assert (await client.dispatch("DIRECT_MESSAGE"))["d"] == {"e": "dm", "d": None}
            await ok(via_a.patch(f"/channels/tokens/{token}", json={"state": {"u": 2}}))
            assert (await client.dispatch("TOKEN_STATE_UPDATE"))["d"] == {"state": {"u": 2}}
            await ok(via_a.delete(f"/channels/game/subscribers/{token}"))
            assert (await client.dispatch("UNAVAILABLE"))["d"] == {"graceful": True}
            await ok(via_a.delete(f"/channels/tokens/{token}"))
            assert (await client.closed())[0] == 4001


async def test_a_stopped_node_stops_counting(
    pair: tuple[Server, Server], redis_url: str, tmp_path: Path
) -> None:
    a, _ = pair
    async with httpx.AsyncClient(base_url=a.api, headers=a.headers) as via_a:
        r = await via_a.post("/channels/tokens")
        token = r.json()["data"]["token"]["id"]
        c = await join_node(a, tmp_path / "c", redis_url=redis_url)
        assert c.node is not None
        try:
            async with leap(c.ws_url, a.project_id, token):

                async def online() -> bool:
                    got = await via_a.get(f"/channels/tokens/{token}")
                    return bool(got.json()["data"]["token"]["is_online"])

                await eventually(online)
        finally:
            await c.node.stop()
        got = await via_a.get(f"/channels/tokens/{token}")
        assert got.json()["data"]["token"]["is_online"] is False


async def test_a_storm_of_connections_all_get_in(pair: tuple[Server, Server]) -> None:
    # A node restart sends every client back at once: far more IDENTIFY and SUBSCRIBE
    # frames in flight than Redis connections in the pool. They wait their turn for a
    # connection; none is refused.
    a, b = pair
    async with httpx.AsyncClient(base_url=a.api, headers=a.headers) as via_a:
        r = await via_a.put("/channels/storm", json={"type": "unprotected"})
        assert r.status_code == 200, r.text
        tokens = []
        for _ in range(100):
            r = await via_a.post("/channels/tokens", json={})
            tokens.append(r.json()["data"]["token"]["id"])

    async def one(i: int) -> bool:
        async with leap(b.ws_url, b.project_id, tokens[i % len(tokens)]) as client:
            return (await client.subscribe("storm"))["e"] == "AVAILABLE"

    results = await asyncio.gather(*(one(i) for i in range(400)))
    assert all(results)
