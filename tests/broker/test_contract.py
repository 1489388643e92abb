"""The Broker contract: every implementation passes this same suite.

A broker carries events to the hub of every node and counts connections across nodes.
Each test builds a small "cluster" of one or two brokers, each with its own hub.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest

from switchboard.server.broker import Broker, LocalBroker
from switchboard.server.broker import events as ev
from switchboard.server.broker.redis import RedisBroker
from switchboard.server.hub import Connection, Hub

pytestmark = pytest.mark.timeout(30)


class RecordingTransport:
    """A transport that keeps what is written: the hub's only contact with a socket."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def write(self, data: bytes | bytearray) -> None:
        self.frames.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


def connect(
    hub: Hub,
    cid: str,
    token: str | None = None,
    channels: tuple[str, ...] = (),
    scope: str = "token",
) -> RecordingTransport:
    transport = RecordingTransport()
    conn = Connection(
        hub, transport, cid=cid, project_id="p", token_id=token, scope=scope, compressed=False
    )
    hub.attach(conn)
    for channel in channels:
        hub.join(conn, channel)
    return transport


def payloads(transport: RecordingTransport) -> list[Any]:
    # Server frames here are short unmasked text frames: a 2- or 4-byte header. One
    # write may hold several frames (the hub coalesces a loop turn's frames).
    out = []
    data = b"".join(transport.frames)
    while data:
        n = data[1] & 0x7F
        start = 2
        if n == 126:
            n, start = int.from_bytes(data[2:4], "big"), 4
        out.append(msgspec.json.decode(data[start : start + n]))
        data = data[start + n :]
    return out


Factory = Callable[[Hub], Broker]


@pytest.fixture(params=["local", "redis"])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[], Any]]:
    """``await make()`` returns a started (hub, broker); all are stopped afterwards."""
    started: list[Broker] = []
    kind = request.param
    url = request.getfixturevalue("redis_url") if kind == "redis" else ""
    if kind == "local":
        # One process has one hub: a local "cluster" is a single node.
        shared = Hub(max_buffered_bytes=1 << 20)

    async def make() -> tuple[Hub, Broker]:
        if kind == "local":
            if started:
                pytest.skip("an in-process broker has exactly one node")
            broker: Broker = LocalBroker(shared)
            hub = shared
        else:
            hub = Hub(max_buffered_bytes=1 << 20)
            broker = RedisBroker(url, hub, prefix="bt:", ttl=3.0)
        await broker.start()
        started.append(broker)
        return hub, broker

    yield make
    for broker in started:
        await broker.stop()


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.01)


async def test_a_message_reaches_subscribers_in_order(cluster: Any) -> None:
    hub, broker = await cluster()
    a = connect(hub, "a", channels=("game",))
    b = connect(hub, "b", channels=("other",))
    for i in range(100):
        await broker.publish(ev.ChannelMessage("p", "game", "n", msgspec.Raw(str(i).encode())))

    async def all_arrived() -> bool:
        return len(payloads(a)) == 100

    await eventually(all_arrived)
    assert [f["d"]["d"]["d"] for f in payloads(a)] == list(range(100))
    assert b.frames == []


async def test_events_cross_to_another_node(cluster: Any) -> None:
    hub1, broker1 = await cluster()
    hub2, _broker2 = await cluster()
    t = connect(hub2, "t", token="leap_token_1", channels=("game",))
    await broker1.publish(ev.DirectMessage("p", "leap_token_1", "dm", msgspec.Raw(b"1")))
    await broker1.publish(ev.ChannelStateChanged("p", "game", msgspec.Raw(b'{"s":1}')))
    await broker1.publish(ev.TokenDeleted("p", "leap_token_1"))

    async def arrived() -> bool:
        return len(payloads(t)) == 2

    await eventually(arrived)
    assert [f["d"]["e"] for f in payloads(t)] == ["DIRECT_MESSAGE", "STATE_UPDATE"]
    assert hub1.connections == {}


async def test_presence_counts_every_node(cluster: Any) -> None:
    hub1, broker1 = await cluster()
    connect(hub1, "a", token="leap_token_1", channels=("game",))
    connect(hub1, "console", scope="project", channels=("game",))
    assert await broker1.token_connections("leap_token_1") == 1
    assert await broker1.channel_connections("p", "game") == 1  # the console is not counted
    hub2, broker2 = await cluster()
    connect(hub2, "b", token="leap_token_1", channels=("game",))

    async def both_counted() -> bool:
        tokens = await broker1.token_connections("leap_token_1")
        channels = await broker1.channel_connections("p", "game")
        return bool(tokens == 2 and channels == 2)

    await eventually(both_counted)
    assert await broker2.token_connections("leap_token_1") == 2


async def test_a_stopped_node_stops_counting_at_once(cluster: Any) -> None:
    _hub1, broker1 = await cluster()
    hub2, broker2 = await cluster()
    connect(hub2, "b", token="leap_token_1")

    async def counted() -> bool:
        return bool(await broker1.token_connections("leap_token_1") == 1)

    await eventually(counted)
    await broker2.stop()
    assert await broker1.token_connections("leap_token_1") == 0


async def test_ping(cluster: Any) -> None:
    _, broker = await cluster()
    await broker.ping()
