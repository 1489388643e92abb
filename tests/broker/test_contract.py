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
from switchboard.server.broker.events import NodePresence
from switchboard.server.broker.redis import RedisBroker
from switchboard.server.broker.topics import TopicInterest
from switchboard.server.fanout import Connection, Dispatch, Hub
from switchboard.server.history import NoHistoryCache
from switchboard.server.ids import member_id

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


async def connect(
    hub: Hub,
    cid: str,
    token: str | None = None,
    channels: tuple[str, ...] = (),
    scope: str = "token",
) -> RecordingTransport:
    transport = RecordingTransport()
    conn = Connection(
        hub.writer,
        transport,
        cid=cid,
        project_id="p",
        token_id=token,
        scope=scope,
        compressed=False,
    )
    hub.attach(conn)
    for channel in channels:
        hub.join(conn, channel)
    # As the edge does before it answers: the node hears the topics of what it joined.
    await hub.topics.ready(hub.topics.wanted(), 5.0)
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


@pytest.fixture(params=["local", "redis", "redis-cluster"])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[], Any]]:
    """``await make()`` returns a started (hub, broker); all are stopped afterwards.

    ``redis-cluster``: a real Redis Cluster, with sharded pub/sub (``broker/shards.py``)."""
    started: list[Broker] = []
    kind = request.param
    url = {
        "redis": lambda: request.getfixturevalue("redis_url"),
        "redis-cluster": lambda: request.getfixturevalue("redis_cluster_url"),
        "local": lambda: "",
    }[kind]()
    if kind == "local":
        # One process has one hub: a local "cluster" is a single node.
        shared = Hub(max_buffered_bytes=1 << 20)

    async def make() -> tuple[Hub, Broker]:
        if kind == "local":
            if started:
                pytest.skip("an in-process broker has exactly one node")
            hub = shared
            broker: Broker = LocalBroker(Dispatch(hub, NoHistoryCache()), hub, hub.changes)
        else:
            node_id = f"node{len(started)}"
            hub = Hub(max_buffered_bytes=1 << 20, node_id=node_id, topics=TopicInterest())
            dispatch = Dispatch(hub, NoHistoryCache())
            broker = RedisBroker(
                url, dispatch, hub, hub.changes, hub.topics, prefix="bt:", ttl=3.0, node_id=node_id
            )
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
    a = await connect(hub, "a", channels=("game",))
    b = await connect(hub, "b", channels=("other",))
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
    t = await connect(hub2, "t", token="leap_token_1", channels=("game",))
    await broker1.publish(ev.DirectMessage("p", "leap_token_1", "dm", msgspec.Raw(b"1")))
    await broker1.publish(ev.ChannelStateChanged("p", "game", msgspec.Raw(b'{"s":1}')))
    await broker1.publish(ev.TokenDeleted("p", "leap_token_1"))

    async def arrived() -> bool:
        return len(payloads(t)) == 2

    await eventually(arrived)
    assert [f["d"]["e"] for f in payloads(t)] == ["DIRECT_MESSAGE", "STATE_UPDATE"]
    assert hub1.connections == {}


async def test_publish_many_keeps_order_across_topics(cluster: Any) -> None:
    """A batch's events (``publish_many``): each channel and token gets its own in order,
    past the broker's chunk size, and an empty batch publishes nothing."""
    hub, broker = await cluster()
    a = await connect(hub, "a", token="leap_token_1", channels=("game",))
    b = await connect(hub, "b", token="leap_token_2")
    events: list[ev.BrokerEvent] = []
    for i in range(1200):
        raw = msgspec.Raw(str(i).encode())
        events.append(ev.ChannelMessage("p", "game", "n", raw))
        events.append(ev.DirectMessage("p", f"leap_token_{1 + i % 2}", "dm", raw))
    await broker.publish_many([])
    await broker.publish_many(events)

    async def arrived() -> bool:
        return len(payloads(a)) == 1800 and len(payloads(b)) == 600

    await eventually(arrived)
    got = payloads(a)
    assert [f["d"]["d"]["d"] for f in got if f["d"]["e"] == "MESSAGE"] == list(range(1200))
    assert [f["d"]["d"]["d"] for f in got if f["d"]["e"] == "DIRECT_MESSAGE"] == list(
        range(0, 1200, 2)
    )
    assert [f["d"]["d"]["d"] for f in payloads(b)] == list(range(1, 1200, 2))


async def test_direct_messages_in_bulk_keep_each_token_s_order(cluster: Any) -> None:
    """``DirectMessages`` (a broadcast's tokens) between single ``DirectMessage``s, through
    ``publish`` and ``publish_many``: each token gets its messages once, in order, on
    the publishing node and on another."""
    hub1, broker1 = await cluster()
    hub2 = (await cluster())[0] if broker1.clustered else hub1
    here = await connect(hub1, "a", token="leap_token_1")
    there = await connect(hub2, "b", token="leap_token_2")
    tokens = ["leap_token_1", "leap_token_2", "leap_token_3"]
    for n in range(0, 60, 3):
        for token in tokens[:2]:
            await broker1.publish(ev.DirectMessage("p", token, "dm", msgspec.Raw(b"%d" % n)))
        await broker1.publish_many(
            [
                ev.DirectMessages("p", tokens, "dm", msgspec.Raw(b"%d" % (n + 1))),
                ev.DirectMessage("p", "leap_token_2", "dm", msgspec.Raw(b"%d" % (n + 2))),
                ev.DirectMessage("p", "leap_token_1", "dm", msgspec.Raw(b"%d" % (n + 2))),
            ]
        )

    async def arrived() -> bool:
        return len(payloads(here)) == 60 and len(payloads(there)) == 60

    await eventually(arrived)
    for conn in (here, there):
        assert [f["d"]["d"]["d"] for f in payloads(conn)] == list(range(60))


async def test_presence_counts_every_node(cluster: Any) -> None:
    hub1, broker1 = await cluster()
    await connect(hub1, "a", token="leap_token_1", channels=("game",))
    await connect(hub1, "console", scope="project", channels=("game",))
    assert await broker1.token_connections("leap_token_1") == 1
    assert await broker1.channel_connections("p", "game") == 1  # the console is not counted
    hub2, broker2 = await cluster()
    await connect(hub2, "b", token="leap_token_1", channels=("game",))

    async def both_counted() -> bool:
        tokens = await broker1.token_connections("leap_token_1")
        channels = await broker1.channel_connections("p", "game")
        return bool(tokens == 2 and channels == 2)

    await eventually(both_counted)
    assert await broker2.token_connections("leap_token_1") == 2


async def test_a_stopped_node_stops_counting_at_once(cluster: Any) -> None:
    _hub1, broker1 = await cluster()
    hub2, broker2 = await cluster()
    await connect(hub2, "b", token="leap_token_1")

    async def counted() -> bool:
        return bool(await broker1.token_connections("leap_token_1") == 1)

    await eventually(counted)
    await broker2.stop()
    assert await broker1.token_connections("leap_token_1") == 0


async def test_a_grant_returns_once_the_token_sockets_are_on_the_channel(cluster: Any) -> None:
    hub1, broker1 = await cluster()
    hub2, _ = await cluster()
    here = await connect(hub1, "here", token="leap_token_g")
    there = await connect(hub2, "there", token="leap_token_g")

    async def counted() -> bool:
        return bool(await broker1.token_connections("leap_token_g") == 2)

    await eventually(counted)
    grant = ev.TokenSubscribed("p", "leap_token_g", "vault", "private", msgspec.Raw(b"{}"))
    await broker1.publish_grant(grant)
    # On every node, when the grant returns: a message published now reaches both.
    await broker1.publish(ev.ChannelMessage("p", "vault", "m", msgspec.Raw(b"1")))

    async def both_got_it() -> bool:
        return all(
            [f["d"]["e"] for f in payloads(t)] == ["AVAILABLE", "MESSAGE"] for t in (here, there)
        )

    await eventually(both_got_it)


async def test_ping(cluster: Any) -> None:
    _, broker = await cluster()
    await broker.ping()


# Presence: who is subscribed, and the join/leave events behind the opt-in dispatches.


async def test_presence_of_a_channel_is_every_nodes_share(cluster: Any) -> None:
    hub1, broker1 = await cluster()
    await connect(hub1, "a1", token="leap_token_a", channels=("game",))
    await connect(hub1, "a2", token="leap_token_a", channels=("game", "other"))
    await connect(hub1, "anon", token=None, scope="noauth", channels=("game",))
    await connect(hub1, "console", scope="project", channels=("game",))
    shares = await broker1.channel_presence("p", "game")
    assert list(shares.values()) == [NodePresence({"leap_token_a": 2}, 1)]
    hub2, broker2 = await cluster()
    await connect(hub2, "a3", token="leap_token_a", channels=("game",))
    await connect(hub2, "b", token="leap_token_b", channels=("game",))

    async def both() -> bool:
        return len(await broker1.channel_presence("p", "game")) == 2

    await eventually(both)
    for broker in (broker1, broker2):
        shares = await broker.channel_presence("p", "game")
        assert shares[hub1.node_id] == NodePresence({"leap_token_a": 2}, 1)
        assert shares[hub2.node_id] == NodePresence({"leap_token_a": 1, "leap_token_b": 1}, 0)
    await broker2.stop()
    assert list((await broker1.channel_presence("p", "game")).values()) == [
        NodePresence({"leap_token_a": 2}, 1)
    ]


async def watch(hub: Hub, broker: Broker, channel: str) -> RecordingTransport:
    """A connection of ``hub`` that watches ``channel``'s presence, as the gateway makes one."""
    transport = RecordingTransport()
    conn = Connection(
        hub.writer,
        transport,
        cid="w",
        project_id="p",
        token_id=None,
        scope="project",
        compressed=False,
    )
    hub.attach(conn)
    hub.join(conn, channel)
    key = ("p", channel)
    _watch, new = hub.presence.watch(key)
    assert new
    hub.presence.seed(key, await broker.channel_presence(*key), {})
    hub.presence.add_watcher(conn, key)
    return transport


def presence_events(transport: RecordingTransport) -> list[tuple[str, str]]:
    return [
        (f["d"]["e"], f["d"]["d"]["member_id"])
        for f in payloads(transport)
        if f["d"]["e"].startswith("PRESENCE_")
    ]


async def test_joins_and_leaves_cross_nodes_once_per_token(cluster: Any) -> None:
    hub1, broker1 = await cluster()
    hub2, _broker2 = await cluster()
    watcher = await watch(hub1, broker1, "game")
    a = await connect(hub2, "a1", token="leap_token_a")
    hub2.join(hub2.connections["a1"], "game")
    await connect(hub1, "a2", token="leap_token_a", channels=("game",))  # the same token, elsewhere
    joined = [("PRESENCE_JOIN", member_id("leap_token_a"))]

    async def arrived() -> bool:
        return presence_events(watcher) == joined

    await eventually(arrived)
    hub2.leave(hub2.connections["a1"], "game")
    await asyncio.sleep(0.2)
    assert presence_events(watcher) == joined  # still there, on node 1
    hub1.detach(hub1.connections["a2"])

    async def left() -> bool:
        return presence_events(watcher) == [*joined, ("PRESENCE_LEAVE", member_id("leap_token_a"))]

    await eventually(left)
    assert a.frames == []  # who did not ask hears nothing


async def test_a_watch_starts_from_who_is_there(cluster: Any) -> None:
    hub1, broker1 = await cluster()
    hub2, _broker2 = await cluster()
    await connect(hub2, "b", token="leap_token_b", channels=("game",))

    async def counted() -> bool:
        return len(await broker1.channel_presence("p", "game")) == 2

    await eventually(counted)
    watcher = await watch(hub1, broker1, "game")
    members = hub1.presence.add_watcher(hub1.connections["w"], ("p", "game"))
    assert [m["member_id"] for m in members] == [member_id("leap_token_b")]
    hub2.detach(hub2.connections["b"])

    async def left() -> bool:
        return presence_events(watcher) == [("PRESENCE_LEAVE", member_id("leap_token_b"))]

    await eventually(left)
