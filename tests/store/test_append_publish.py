"""On Redis a REST publish is one script: the generation check, the history append and
the PUBLISH of the event on the broker's own topic (issue 21.3, one round trip)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
import redis.asyncio as aioredis

from switchboard.exceptions import NotFound, StaleAccess
from switchboard.server.broker import BrokerEvent
from switchboard.server.broker.events import ChannelMessage
from switchboard.server.broker.redis import RedisBroker
from switchboard.server.broker.topics import TopicInterest
from switchboard.server.fanout import Dispatch, Hub
from switchboard.server.history import HistoryPolicy, NoHistoryCache, StreamPosition
from switchboard.server.models import Channel, ChannelType
from switchboard.server.store.redis import RedisStore

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    impl = RedisStore(redis_url, prefix="ap:")
    await impl.open()
    try:
        yield impl
    finally:
        await impl.close()


def broker(redis_url: str) -> RedisBroker:
    """A broker that is not started: its route to a topic needs no connection."""
    hub = Hub(max_buffered_bytes=1 << 20, node_id="n", topics=TopicInterest())
    return RedisBroker(
        redis_url, Dispatch(hub, NoHistoryCache()), hub, hub.changes, hub.topics, prefix="ap:"
    )


async def test_the_append_script_publishes_the_event_the_broker_would(
    store: RedisStore, redis_url: str
) -> None:
    project = await store.create_project("p")
    for channel_id in ("c", "h"):
        await store.create_channel(
            Channel(
                project.id,
                channel_id,
                ChannelType.PUBLIC,
                msgspec.Raw(b"{}"),
                "2026-01-01T00:00:00.000Z",
            )
        )
    epoch = await store.set_history_policy(project.id, "h", HistoryPolicy(10, 60))
    info = await store.add_project_token(project.id, "hash1", "ptk_ab…")
    await store.add_project_token(project.id, "hash2", "ptk_cd…")
    access = await store.find_project_by_token("hash2")
    assert access is not None
    routes = broker(redis_url)
    client = aioredis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe("ap:c:" + project.id + ":c", "ap:c:" + project.id + ":h")
    await pubsub.get_message(timeout=1)
    await pubsub.get_message(timeout=1)

    async def publish(channel_id: str, n: int, generation: int) -> StreamPosition | None:
        data = msgspec.Raw(msgspec.json.encode({"n": n, "quote": '"'}))
        route = routes.store_route(ChannelMessage(project.id, channel_id, "e", data))
        return await store.append_and_publish(
            project.id, channel_id, "e", data, generation=generation, route=route
        )

    async def heard() -> list[ChannelMessage]:
        got = []
        while (m := await pubsub.get_message(timeout=0.3)) is not None:
            event = msgspec.json.decode(m["data"], type=BrokerEvent)
            assert isinstance(event, ChannelMessage)
            got.append(event)
        return got

    try:
        now = access.generation
        assert await publish("c", 1, now) is None
        first, second = await publish("h", 2, now), await publish("h", 3, now)
        events = await heard()
        assert [(e.channel_id, e.offset, e.epoch) for e in events] == [
            ("c", None, None),
            ("h", 1, epoch),
            ("h", 2, epoch),
        ]
        assert [msgspec.json.decode(e.data) for e in events] == [
            {"n": n, "quote": '"'} for n in (1, 2, 3)
        ]
        assert (first, second) == (StreamPosition(1, epoch), StreamPosition(2, epoch))
        with pytest.raises(NotFound):
            await publish("nope", 4, now)
        await store.revoke_project_token(info.id)
        for channel_id in ("c", "h", "nope"):
            with pytest.raises(StaleAccess):
                await publish(channel_id, 5, now)
        assert await heard() == []  # nothing published by a refused call
        page = await store.read_history(project.id, "h", 0, 10)
        assert page is not None and [m.offset for m in page.messages] == [1, 2]
    finally:
        await pubsub.aclose()
        await client.aclose()
        await asyncio.sleep(0)


async def test_concurrent_publishes_share_pipelines_and_survive_a_script_flush(
    store: RedisStore, redis_url: str
) -> None:
    project = await store.create_project("p")
    await store.create_channel(
        Channel(project.id, "h", ChannelType.PUBLIC, msgspec.Raw(b"{}"), "2026-01-01T00:00:00.000Z")
    )
    await store.set_history_policy(project.id, "h", HistoryPolicy(1000, 60))
    routes = broker(redis_url)

    async def publish(n: int) -> StreamPosition | None:
        data = msgspec.Raw(msgspec.json.encode(n))
        route = routes.store_route(ChannelMessage(project.id, "h", "e", data))
        return await store.append_and_publish(
            project.id, "h", "e", data, generation=None, route=route
        )

    pipeline = store._pipeline
    assert pipeline is not None
    positions = await asyncio.gather(*(publish(n) for n in range(200)))
    assert sorted(p.offset for p in positions if p is not None) == list(range(1, 201))
    assert pipeline.calls == 200 and pipeline.pipelines < 20  # calls of a turn went together
    await store.redis.script_flush()  # Redis forgot every script (a restart, a failover)
    positions = await asyncio.gather(*(publish(n) for n in range(200, 300)))
    assert sorted(p.offset for p in positions if p is not None) == list(range(201, 301))
    page = await store.read_history(project.id, "h", 0, 1000)
    assert page is not None and len(page.messages) == 300
    assert {msgspec.json.decode(m.data) for m in page.messages} == set(range(300))
    missing = ChannelMessage(project.id, "nope", "e", msgspec.Raw(b"1"))
    answers = await asyncio.gather(
        publish(300),
        store.append_and_publish(
            project.id,
            "nope",
            "e",
            missing.data,
            generation=None,
            route=routes.store_route(missing),
        ),
        publish(301),
        return_exceptions=True,
    )
    # In one pipeline, an error answers its own call alone.
    assert [type(a) for a in answers] == [StreamPosition, NotFound, StreamPosition]
