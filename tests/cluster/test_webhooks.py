"""Webhooks on a cluster: each event made and delivered once, whichever nodes see the
connections, and a killed node's tokens and channels going offline and vacated."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, node_pair, stop
from tests.e2e.leap import leap
from tests.webhooks.conftest import FAST, data
from tests.webhooks.receiver import Receiver, receiver

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def hooks() -> AsyncIterator[Receiver]:
    async with receiver() as got:
        yield got


@pytest.fixture(params=["redis", "redis-cluster"])
async def pair(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Server, Server]]:
    """Two nodes on one Redis, or on a Redis Cluster (the queue's keys share a slot; its
    reaper checks a dead node's key, on another slot, before its script)."""
    url = request.getfixturevalue("redis_url" if request.param == "redis" else "redis_cluster_url")
    async with node_pair(url, tmp_path, **FAST) as nodes:
        yield nodes


async def test_each_event_is_made_and_delivered_once_across_nodes(
    pair: tuple[Server, Server], hooks: Receiver
) -> None:
    a, b = pair
    async with httpx.AsyncClient(base_url=a.api, headers=a.headers) as api:
        await data(
            api.put(
                "/webhooks",
                json={
                    "url": hooks.url,
                    "events": [
                        "token.online",
                        "token.offline",
                        "channel.occupied",
                        "channel.vacated",
                        "message.published",
                    ],
                },
            )
        )
        await data(api.put("/channels/room", json={"type": "public"}))
        token = (await data(api.post("/channels/tokens", json={})))["token"]["id"]
        # The same token on both nodes, both subscribed to the same channel.
        async with leap(a.ws_url, a.project_id, token) as on_a:
            await hooks.wait_types("token.online")
            async with leap(b.ws_url, b.project_id, token) as on_b:
                await on_a.subscribe("room")
                await on_b.subscribe("room")
                await hooks.wait_types("channel.occupied")
                for n in range(20):
                    await data(api.post("/channels/room/messages", json={"e": "m", "d": n}))
                await on_b.publish("room", "from-b", n)
                published = await hooks.wait_types("message.published", count=21)
                # Read what came, so each client library reads on to the close frame.
                for client, count in ((on_a, 21), (on_b, 20)):
                    while count:
                        count -= (await client.dispatch())["e"] == "MESSAGE"
            # b's connection closed; a's holds the token and the channel.
            await asyncio.sleep(0.5)
            assert hooks.of_type("token.offline", "channel.vacated") == []
        await asyncio.gather(hooks.wait_types("token.offline"), hooks.wait_types("channel.vacated"))
        await asyncio.sleep(0.5)  # room for any duplicate to arrive
    counts = {
        t: len(hooks.of_type(t))
        for t in ("token.online", "token.offline", "channel.occupied", "channel.vacated")
    }
    assert counts == dict.fromkeys(counts, 1), counts
    assert len(hooks.of_type("message.published")) == 21
    assert len({p.json["id"] for p in published}) == 21
    assert sorted(
        p.json["data"]["data"] for p in published if p.json["data"]["source"] == "rest"
    ) == list(range(20))
    # Both nodes send (one consumer group): neither is idle while the other works.
    assert a.node is not None and b.node is not None
    sent = [n.webhooks.stats()["delivered"] for n in (a.node, b.node)]
    assert sum(sent) == 25, sent


@pytest.mark.parametrize("kind", ["redis", "redis-cluster"])
async def test_a_killed_nodes_tokens_go_offline(
    kind: str,
    request: pytest.FixtureRequest,
    spawn_server: Callable[..., Server],
    tmp_path: Path,
    hooks: Receiver,
) -> None:
    url = request.getfixturevalue("redis_url" if kind == "redis" else "redis_cluster_url")
    args = ("--redis", url, "--webhook-retry-base", "0.05")
    a = spawn_server(tmp_path / "a", *args)
    b = spawn_server(tmp_path / "b", *args, credentials=(a.project_id, a.project_token))
    async with httpx.AsyncClient(base_url=a.api, headers=a.headers) as api:
        await data(api.put("/webhooks", json={"url": hooks.url}))
        await data(api.put("/channels/room", json={"type": "public"}))
        token = (await data(api.post("/channels/tokens", json={})))["token"]["id"]
        async with leap(b.ws_url, b.project_id, token) as on_b:
            await on_b.subscribe("room")
            await hooks.wait_types("token.online")
            await hooks.wait_types("channel.occupied")
            started = asyncio.get_running_loop().time()
            stop(b, signal.SIGKILL)
            offline, vacated = await asyncio.gather(
                hooks.wait_types("token.offline", timeout=30),
                hooks.wait_types("channel.vacated", timeout=30),
            )
            took = asyncio.get_running_loop().time() - started
    assert offline[0].json["data"] == {"token_id": token}
    assert vacated[0].json["data"] == {"channel_id": "room"}
    # The presence TTL (15 s) plus the reaper's second, and the delivery.
    assert 10 < took < 25, took
    print(f"offline after a kill -9: {took:.1f} s")
    await asyncio.sleep(1.5)  # a second reaper round makes no repeat
    assert len(hooks.of_type("token.offline")) == 1
    stop(a)
