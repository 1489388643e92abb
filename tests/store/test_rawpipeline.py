"""The publish scripts' own connection (redis_pool/pipeline.py) under faults, on real
redis-server processes: scripts flushed mid-load, Redis killed or frozen mid-pipeline,
callers cancelled, a password and a database."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator

import msgspec
import pytest

from switchboard.exceptions import Unavailable
from switchboard.server.broker.events import ChannelMessage
from switchboard.server.history import HistoryPolicy, StreamPosition
from switchboard.server.models import Channel, ChannelType
from switchboard.server.redis_pool.pipeline import RawAutoPipeline
from switchboard.server.store.redis import RedisStore
from tests.broker.test_subscription import password_redis  # noqa: F401  (a fixture)
from tests.conftest import RedisServer
from tests.store.test_append_publish import broker

pytestmark = pytest.mark.timeout(60)


async def open_store(url: str, timeout: float = 2.0) -> RedisStore:
    store = RedisStore(url, prefix="rp:", timeout=timeout)
    await store.open()
    assert isinstance(store._pipeline, RawAutoPipeline)
    return store


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    impl = await open_store(redis_url)
    try:
        yield impl
    finally:
        await impl.close()


class Feed:
    """A channel with history, and its publish call as the REST route makes it."""

    def __init__(self, store: RedisStore, url: str, project_id: str) -> None:
        self.store, self.project_id = store, project_id
        self.routes = broker(url)

    @classmethod
    async def make(cls, store: RedisStore, url: str) -> Feed:
        project = await store.create_project("p")
        await store.create_channel(
            Channel(
                project.id, "h", ChannelType.PUBLIC, msgspec.Raw(b"{}"), "2026-01-01T00:00:00.000Z"
            )
        )
        await store.set_history_policy(project.id, "h", HistoryPolicy(100_000, 3600))
        return cls(store, url, project.id)

    async def publish(self, n: int) -> StreamPosition | None:
        data = msgspec.Raw(msgspec.json.encode(n))
        route = self.routes.store_route(ChannelMessage(self.project_id, "h", "e", data))
        return await self.store.append_and_publish(
            self.project_id, "h", "e", data, generation=None, route=route
        )

    async def kept(self) -> list[int]:
        page = await self.store.read_history(self.project_id, "h", 0, 100_000)
        assert page is not None
        return [msgspec.json.decode(m.data) for m in page.messages]


async def test_scripts_flushed_again_and_again_under_load(
    store: RedisStore, redis_url: str
) -> None:
    channel = await Feed.make(store, redis_url)

    async def publisher(first: int) -> list[StreamPosition | None]:
        return [await channel.publish(n) for n in range(first, first + 300)]

    async def flusher() -> None:
        for _ in range(5):
            await asyncio.sleep(0.05)
            await store.redis.script_flush()

    *positions, _ = await asyncio.gather(*(publisher(k * 1000) for k in range(8)), flusher())
    offsets = sorted(p.offset for run in positions for p in run if p is not None)
    assert offsets == list(range(1, 2401))  # every call ran exactly once
    assert sorted(await channel.kept()) == sorted(
        k * 1000 + n for k in range(8) for n in range(300)
    )


async def test_redis_killed_mid_pipeline_fails_every_caller(own_redis: RedisServer) -> None:
    store = await open_store(own_redis.url)
    try:
        channel = await Feed.make(store, own_redis.url)
        calls = [asyncio.ensure_future(channel.publish(n)) for n in range(2000)]
        await asyncio.sleep(0)  # their turn: the batch is written
        own_redis.process.kill()
        started = time.monotonic()
        _, pending = await asyncio.wait(calls, timeout=10)
        assert not pending, "a caller hangs"
        assert time.monotonic() - started < 5
        answers = [c.exception() or c.result() for c in calls]
        failed = [a for a in answers if isinstance(a, Exception)]
        assert failed and all(isinstance(a, Unavailable) for a in failed), {type(a) for a in failed}
        await asyncio.to_thread(own_redis.process.wait)
        with pytest.raises(Unavailable):
            await channel.publish(-1)  # Redis is down: refused at once, not hung
        await asyncio.to_thread(own_redis.start)
        assert await channel.publish(-2) is not None  # a new connection, the next turn
    finally:
        await store.close()


async def test_redis_frozen_fails_calls_within_the_store_timeout(own_redis: RedisServer) -> None:
    store = await open_store(own_redis.url, timeout=0.5)
    try:
        channel = await Feed.make(store, own_redis.url)
        assert await channel.publish(0) is not None
        os.kill(own_redis.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            answers = await asyncio.gather(
                *(channel.publish(n) for n in range(1, 50)), return_exceptions=True
            )
            waited = time.monotonic() - started
        finally:
            os.kill(own_redis.process.pid, signal.SIGCONT)
        assert all(isinstance(a, Unavailable) for a in answers)
        assert 0.4 < waited < 2.0
        assert await channel.publish(100) is not None  # connected anew
    finally:
        await store.close()


async def test_cancelled_callers_leave_the_others_answered(
    store: RedisStore, redis_url: str
) -> None:
    channel = await Feed.make(store, redis_url)
    pipeline = store._pipeline
    assert isinstance(pipeline, RawAutoPipeline)
    await channel.publish(-1)  # the pipeline's connection is made
    before = pipeline.calls
    calls = [asyncio.ensure_future(channel.publish(n)) for n in range(400)]
    await asyncio.sleep(0)  # each call is queued for this turn
    for call in calls[:100]:
        call.cancel()  # before their turn: never sent
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    for call in calls[100:200]:
        call.cancel()  # in flight, or already answered
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results[:100])
    assert all(isinstance(r, StreamPosition) for r in results[200:])
    assert pipeline.calls - before == 300
    kept = await channel.kept()
    assert set(range(200, 400)) <= set(kept) and not set(range(100)) & set(kept)
    assert await channel.publish(1000) is not None  # the connection is still good


async def test_a_password_protected_redis_and_its_database(password_redis: int) -> None:  # noqa: F811
    for db, auth in ((5, ":s3cret"), (6, "ops:ops-pass")):
        url = f"redis://{auth}@127.0.0.1:{password_redis}/{db}"
        store = await open_store(url)
        try:
            channel = await Feed.make(store, url)
            positions = await asyncio.gather(*(channel.publish(n) for n in range(50)))
            assert sorted(p.offset for p in positions if p is not None) == list(range(1, 51))
            clients = await store.redis.client_list()
            assert {c["db"] for c in clients} == {str(db)}
        finally:
            await store.close()
