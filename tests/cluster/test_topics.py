"""Each node hears only what its sockets need (issue 20, item 1): a topic per channel and
per token, subscribed before AVAILABLE or INIT and dropped after the last socket leaves.
Three real nodes on one real Redis, real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from switchboard.server.broker.redis import RedisBroker
from tests.cluster.slow_link import slow_link
from tests.cluster.test_history import ok
from tests.conftest import RedisServer, Server, join_node, running_node
from tests.e2e.leap import Leap, leap

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def trio(redis_url: str, tmp_path: Path) -> AsyncIterator[list[Server]]:
    async with running_node(tmp_path / "a", redis_url=redis_url) as a:
        b = await join_node(a, tmp_path / "b", redis_url=redis_url)
        c = await join_node(a, tmp_path / "c", redis_url=redis_url)
        try:
            yield [a, b, c]
        finally:
            for server in (c, b):
                assert server.node is not None
                await server.node.stop()


def broker_of(server: Server) -> RedisBroker:
    assert server.node is not None
    broker = server.node.broker
    assert isinstance(broker, RedisBroker)
    return broker


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.02)


async def test_each_node_decodes_only_the_events_of_its_own_channels(trio: list[Server]) -> None:
    channels_per_node, messages = 10, 5
    async with AsyncExitStack() as stack:
        via = await stack.enter_async_context(
            httpx.AsyncClient(base_url=trio[0].api, headers=trio[0].headers)
        )
        sockets: dict[str, Leap] = {}
        for n, server in enumerate(trio):
            for i in range(channels_per_node):
                name = f"room-{n}-{i}"
                await ok(via.put(f"/channels/{name}", json={"type": "unprotected"}))
                client = await stack.enter_async_context(leap(server.ws_url, server.project_id))
                assert (await client.subscribe(name))["e"] == "AVAILABLE"
                sockets[name] = client
        before = [broker_of(s).events_received for s in trio]
        for i in range(messages):
            for name in sockets:
                await ok(via.post(f"/channels/{name}/messages", json={"e": "m", "d": i}))
        for name, client in sockets.items():
            assert [(await client.dispatch("MESSAGE"))["d"]["d"] for _ in range(messages)] == list(
                range(messages)
            ), name
        decoded = [broker_of(s).events_received - b for s, b in zip(trio, before, strict=True)]
        total = len(sockets) * messages
        print(f"events decoded per node: {decoded} of {total} published")
        # Each node decodes the messages of its own ten channels, and nothing else.
        assert decoded == [channels_per_node * messages] * 3
        assert [len(broker_of(s).topics) for s in trio] == [channels_per_node] * 3


async def test_a_node_drops_a_topic_after_its_last_socket_leaves(
    trio: list[Server], redis_url: str
) -> None:
    a, b, _ = trio
    topic = f"sb:c:{a.project_id}:lobby"
    admin = aioredis.from_url(redis_url)
    try:

        async def listeners() -> int:
            counts = dict(await admin.pubsub_numsub(topic))
            return int(counts.get(topic.encode(), 0))

        async with httpx.AsyncClient(base_url=a.api, headers=a.headers) as via:
            await ok(via.put("/channels/lobby", json={"type": "unprotected"}))
        async with leap(b.ws_url, b.project_id) as one, leap(b.ws_url, b.project_id) as two:
            await one.subscribe("lobby")
            await two.subscribe("lobby")
            assert await listeners() == 1  # one subscription per node, however many sockets
            await one.unsubscribe("lobby")
            await one.send({"op": 3, "d": {}})  # a round trip: the leave is carried out
            await one.recv()
            assert await listeners() == 1
        await eventually(lambda: len(broker_of(b).topics) == 0)
        for _ in range(100):
            if await listeners() == 0:
                break
            await asyncio.sleep(0.02)
        assert await listeners() == 0
    finally:
        await admin.aclose()


@pytest.fixture
async def far_pair(
    redis_url: str, redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[tuple[Server, Server]]:
    """Two nodes; the second talks to Redis over a link delayed 10 ms each way, so a race
    with Redis is wide enough to lose."""
    async with (
        running_node(tmp_path / "a", redis_url=redis_url) as a,
        slow_link(redis_server.port, 0.010) as slow_port,
    ):
        b = await join_node(a, tmp_path / "b", redis_url=f"redis://127.0.0.1:{slow_port}/0")
        try:
            yield a, b
        finally:
            assert b.node is not None
            await b.node.stop()


async def test_nothing_published_after_available_is_missed_under_a_stream(
    far_pair: tuple[Server, Server],
) -> None:
    """The far node takes sockets, one after another, on a channel the other node streams
    publishes into. Each socket leaves before the next comes, so the node starts hearing
    the channel anew each time. A publish begun after a socket got AVAILABLE must reach
    it: were AVAILABLE sent before Redis confirmed the subscription, the publishes of
    those 20 ms would be lost."""
    a, b = far_pair
    last = 500
    started_at: dict[int, float] = {}
    checked = 0
    published = asyncio.Event()

    async def publish(via: httpx.AsyncClient) -> None:
        loop = asyncio.get_running_loop()
        for i in range(1, last + 1):
            started_at[i] = loop.time()
            await ok(via.post("/channels/feed/messages", json={"e": "m", "d": i}))
        published.set()

    async def one_socket() -> None:
        nonlocal checked
        async with leap(b.ws_url, b.project_id) as client:
            assert (await client.subscribe("feed"))["e"] == "AVAILABLE"
            available_at = asyncio.get_running_loop().time()
            seen: list[int] = []
            while len(seen) < 10:
                # Once the stream is over, what is still to come comes at once.
                wait = 1.0 if published.is_set() else 10.0
                try:
                    seen.append((await client.dispatch("MESSAGE", timeout=wait))["d"]["d"])
                except TimeoutError:
                    break
        after = [i for i, t in started_at.items() if t > available_at]
        want = [i for i in after if i <= max(seen, default=0)]
        assert set(want) <= set(seen), (available_at, want, seen)
        checked += bool(want)

    async def sockets() -> None:
        while not published.is_set():
            await one_socket()
            await eventually(lambda: len(broker_of(b).topics) == 0)

    async with httpx.AsyncClient(base_url=a.api, headers=a.headers) as via:
        history = {"type": "unprotected", "history": {"size": 1000}}
        await ok(via.put("/channels/feed", json=history))
        await asyncio.gather(publish(via), sockets())
    print(f"{checked} subscriptions checked during the stream")
    assert checked >= 5


async def test_a_message_published_right_after_a_grant_reaches_a_socket_on_another_node(
    far_pair: tuple[Server, Server],
) -> None:
    """The backend's usual sequence, ``subscribeToken`` then ``publishMessage``, with the
    token's socket on the far node, which does not hear the channel yet: the grant
    returns only once that node has joined the socket, so the message arrives."""
    a, b = far_pair
    async with httpx.AsyncClient(base_url=a.api, headers=a.headers) as via:
        token = (await ok(via.post("/channels/tokens", json={})))["token"]["id"]
        async with leap(b.ws_url, b.project_id, token) as client:
            for _ in range(100):
                if (await ok(via.get(f"/channels/tokens/{token}")))["token"]["is_online"]:
                    break
                await asyncio.sleep(0.02)
            for n in range(15):
                channel = f"game-{n}"
                await ok(via.put(f"/channels/{channel}", json={"type": "private"}))
                await ok(via.put(f"/channels/{channel}/subscribers/{token}"))
                await ok(via.post(f"/channels/{channel}/messages", json={"e": "go", "d": n}))
                assert (await client.dispatch("AVAILABLE"))["c"] == channel
                message = await client.dispatch("MESSAGE")
                assert (message["c"], message["d"]["d"]) == (channel, n)
