"""The broker's own subscription connection (broker/subscription.py) under faults, on real
redis-server processes: Redis killed and restarted, the connection killed, Redis frozen,
the subscription alone gone silent, a password, and order under load."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError

from switchboard.exceptions import Unavailable
from switchboard.server.broker.events import BrokerEvent, ChannelMessage
from switchboard.server.broker.redis import RedisBroker
from switchboard.server.broker.shards import HEARTBEAT_MISSED_S
from switchboard.server.broker.topics import TopicInterest, channel_topic
from switchboard.server.fanout import Hub
from switchboard.server.redis_pool.wire import RespProtocol, open_connection
from tests.conftest import RedisServer, free_port, wait_for_port

pytestmark = pytest.mark.timeout(90)

PREFIX = "sf:"


class Recorder:
    """An event handler that keeps what it is handed (the broker's EventHandler)."""

    def __init__(self) -> None:
        self.seen: dict[str, list[int]] = {}
        self.missed = 0

    def handle(self, event: BrokerEvent) -> None:
        assert isinstance(event, ChannelMessage)
        self.seen.setdefault(event.channel_id, []).append(msgspec.json.decode(event.data))

    def events_missed(self) -> None:
        self.missed += 1

    def node_gone(self, node_id: str) -> None:
        pass

    def last(self, channel_id: str) -> int:
        return (self.seen.get(channel_id) or [-1])[-1]

    def assert_in_order(self) -> None:
        """Each publisher's events in the order it published them, none twice."""
        for channel_id, numbers in self.seen.items():
            assert numbers == sorted(set(numbers)), f"{channel_id}: out of order or twice"


@contextlib.asynccontextmanager
async def listening_broker(
    url: str, channels: list[str]
) -> AsyncIterator[tuple[RedisBroker, Recorder]]:
    """A started broker that hears the topics of ``channels`` (project ``p``)."""
    hub = Hub(max_buffered_bytes=1 << 20, node_id="reader", topics=TopicInterest())
    recorder = Recorder()
    broker = RedisBroker(
        url, recorder, hub, hub.changes, hub.topics, prefix=PREFIX, node_id="reader"
    )
    await broker.start()
    try:
        async with hub.topics.listening([channel_topic("p", c) for c in channels], 10.0):
            yield broker, recorder
    finally:
        await broker.stop()


def event(channel_id: str, n: int) -> bytes:
    return msgspec.json.encode(ChannelMessage("p", channel_id, "e", msgspec.Raw(str(n).encode())))


class Publishers:
    """One task per channel, each publishing 0, 1, 2, … on the channel's topic through a
    client of its own, through faults (a publish that fails is skipped, not retried)."""

    def __init__(self, url: str, channels: list[str], *, batch: int = 1, pause_s: float = 0.002):
        self.url, self.channels, self.batch, self.pause_s = url, channels, batch, pause_s
        self.published = dict.fromkeys(channels, -1)
        self._tasks: list[asyncio.Task[None]] = []
        self._running = True

    async def _run(self, channel_id: str, count: int | None) -> None:
        client = aioredis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        topic = PREFIX + channel_topic("p", channel_id)
        n = 0
        try:
            while self._running and (count is None or n < count):
                pipe = client.pipeline(transaction=False)
                for k in range(n, n + self.batch):
                    pipe.publish(topic, event(channel_id, k))
                with contextlib.suppress(Exception):
                    await pipe.execute()
                    self.published[channel_id] = n + self.batch - 1
                n += self.batch
                await asyncio.sleep(self.pause_s)
        finally:
            await client.aclose()

    def start(self, count: int | None = None) -> None:
        self._tasks = [asyncio.create_task(self._run(c, count)) for c in self.channels]

    async def wait(self) -> None:
        await asyncio.gather(*self._tasks)

    async def stop(self) -> None:
        # A flag, not a cancellation: redis-py may swallow one (switchboard.server.aio).
        self._running = False
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def resumed(broker: RedisBroker, recorder: Recorder, publishers: Publishers) -> float:
    """Wait until every topic is heard again and a publish made after that reached the
    broker on every channel; the seconds it took."""
    started = time.monotonic()
    topics = [channel_topic("p", c) for c in publishers.channels]
    while not (broker.connected and all(broker.topics.is_heard(t) for t in topics)):
        assert time.monotonic() - started < 20, "never subscribed again"
        await asyncio.sleep(0.02)
    marks = dict(publishers.published)
    while any(recorder.last(c) <= marks[c] for c in publishers.channels):
        assert time.monotonic() - started < 20, "delivery did not resume"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


CHANNELS = [f"c{i}" for i in range(6)]


async def test_redis_killed_and_restarted_while_publishers_run(own_redis: RedisServer) -> None:
    async with listening_broker(own_redis.url, CHANNELS) as (broker, recorder):
        publishers = Publishers(own_redis.url, CHANNELS)
        publishers.start()
        try:
            await asyncio.sleep(0.5)
            assert all(recorder.last(c) > 0 for c in CHANNELS)
            own_redis.process.kill()  # kill -9
            await asyncio.to_thread(own_redis.process.wait)
            await asyncio.sleep(0.5)
            await asyncio.to_thread(own_redis.start)  # the same port
            took = await resumed(broker, recorder, publishers)
        finally:
            await publishers.stop()
        assert broker.reconnects >= 1 and recorder.missed >= 1
        assert took < 10
        recorder.assert_in_order()


async def test_the_subscription_killed_by_redis_is_made_again(redis_url: str) -> None:
    async with listening_broker(redis_url, CHANNELS) as (broker, recorder):
        publishers = Publishers(redis_url, CHANNELS)
        publishers.start()
        try:
            await asyncio.sleep(0.3)
            admin = aioredis.from_url(redis_url)
            try:
                killed = await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            finally:
                await admin.aclose()
            assert killed >= 1
            await resumed(broker, recorder, publishers)
        finally:
            await publishers.stop()
        assert broker.reconnects >= 1
        recorder.assert_in_order()


async def test_redis_frozen_past_the_heartbeat_limit(own_redis: RedisServer) -> None:
    async with listening_broker(own_redis.url, CHANNELS) as (broker, recorder):
        publishers = Publishers(own_redis.url, CHANNELS)
        publishers.start()
        try:
            await asyncio.sleep(0.3)
            os.kill(own_redis.process.pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(HEARTBEAT_MISSED_S + 1.5)
            finally:
                os.kill(own_redis.process.pid, signal.SIGCONT)
            took = await resumed(broker, recorder, publishers)
        finally:
            await publishers.stop()
        assert took < 10
        recorder.assert_in_order()


class FreezingLink:
    """A TCP proxy to Redis that can silence the subscription connections it carries
    (their sockets stay open; Redis's bytes to them are dropped), the others untouched."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.subscribers: set[asyncio.StreamWriter] = set()
        self.silenced: set[asyncio.StreamWriter] = set()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
        up: bool,
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if up and b"SUBSCRIBE" in data:
                    self.subscribers.add(client)
                if up or client not in self.silenced:
                    writer.write(data)
        writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        await asyncio.gather(
            self._pipe(reader, up_writer, writer, True),
            self._pipe(up_reader, writer, writer, False),
        )

    def silence(self) -> None:
        self.silenced |= self.subscribers

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[int]:
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            server.close()


async def test_a_subscription_gone_silent_is_dropped_and_made_again(redis_url: str) -> None:
    """Redis answers everyone but this node's subscription (a master cut off from it alone):
    the beats stop coming back, and the broker subscribes again within the limit."""
    link = FreezingLink(int(redis_url.rsplit(":", 1)[1].split("/")[0]))
    async with link.serving() as port:
        url = f"redis://127.0.0.1:{port}/0"
        async with listening_broker(url, CHANNELS) as (broker, recorder):
            publishers = Publishers(redis_url, CHANNELS)
            publishers.start()
            try:
                await asyncio.sleep(0.3)
                link.silence()
                silenced = time.monotonic()
                while broker.reconnects == 0:
                    assert time.monotonic() - silenced < HEARTBEAT_MISSED_S + 3, "still deaf"
                    await asyncio.sleep(0.05)
                assert time.monotonic() - silenced > HEARTBEAT_MISSED_S - 1.5
                await resumed(broker, recorder, publishers)
            finally:
                await publishers.stop()
            recorder.assert_in_order()


async def test_many_publishers_thousands_of_events_a_second_in_order(redis_url: str) -> None:
    channels = [f"p{i}" for i in range(16)]
    async with listening_broker(redis_url, channels) as (broker, recorder):
        publishers = Publishers(redis_url, channels, batch=50, pause_s=0.005)
        started = time.monotonic()
        publishers.start(count=2_000)
        await publishers.wait()
        while sum(len(v) for v in recorder.seen.values()) < 32_000:
            assert time.monotonic() - started < 30, "events lost"
            await asyncio.sleep(0.05)
        took = time.monotonic() - started
    assert {c: recorder.seen[c] for c in channels} == {c: list(range(2_000)) for c in channels}
    assert broker.reconnects == 0 and broker.events_received == 32_000
    print(f"32,000 events from 16 publishers in {took:.2f} s ({32_000 / took:,.0f}/s)")
    assert 32_000 / took > 2_000


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[int]:
    """A redis-server that wants a password (``requirepass``) and a user with its own."""
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
            "--requirepass",
            "s3cret",
            "--user",
            "ops",
            "on",
            ">ops-pass",
            "~*",
            "&*",
            "+@all",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("auth", [":s3cret", "ops:ops-pass"])
async def test_a_password_protected_redis_and_its_database(password_redis: int, auth: str) -> None:
    url = f"redis://{auth}@127.0.0.1:{password_redis}/3"
    async with listening_broker(url, ["a"]) as (_, recorder):
        publishers = Publishers(url, ["a"])
        publishers.start(count=20)
        await publishers.wait()
        while recorder.last("a") < 19:
            await asyncio.sleep(0.02)
        assert recorder.seen["a"] == list(range(20))
        # The subscription is on database 3's connection list, with the right user.
        admin = aioredis.from_url(url)
        try:
            clients = await admin.client_list(_type="pubsub")
        finally:
            await admin.aclose()
        assert [(c["db"], c["user"]) for c in clients] == [("3", auth.split(":")[0] or "default")]


async def test_a_wrong_password_is_a_clear_error_at_start(password_redis: int) -> None:
    hub = Hub(max_buffered_bytes=1 << 20, node_id="n", topics=TopicInterest())
    url = f"redis://:wrong@127.0.0.1:{password_redis}/0"
    broker = RedisBroker(url, Recorder(), hub, hub.changes, hub.topics, prefix=PREFIX)
    with pytest.raises(Unavailable, match="invalid username-password pair"):
        await broker.start()
    await broker.stop()
    # The subscription's own connection says the same, were the password changed later.
    client = aioredis.from_url(url)
    try:
        with pytest.raises(AuthenticationError, match="invalid username-password pair"):
            await open_connection(client, RespProtocol)
    finally:
        await client.aclose()


async def test_publishes_through_a_redis_killed_and_restarted(own_redis: RedisServer) -> None:
    """The broker's own PUBLISHes (redis_pool/pipeline.py): refused as Unavailable while Redis
    is away, none hangs, and delivered again once it is back."""
    async with listening_broker(own_redis.url, ["a"]) as (broker, recorder):
        await asyncio.gather(
            *(
                broker.publish(ChannelMessage("p", "a", "e", msgspec.Raw(str(n).encode())))
                for n in range(100)
            )
        )
        own_redis.process.kill()
        await asyncio.to_thread(own_redis.process.wait)
        started = time.monotonic()
        answers = await asyncio.gather(
            *(broker.publish(ChannelMessage("p", "a", "e", msgspec.Raw(b"-1"))) for _ in range(50)),
            return_exceptions=True,
        )
        assert all(isinstance(a, Unavailable) for a in answers)
        assert time.monotonic() - started < 3
        await asyncio.to_thread(own_redis.start)
        deadline = time.monotonic() + 20
        while not (broker.connected and broker.topics.is_heard(channel_topic("p", "a"))):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        await broker.publish(ChannelMessage("p", "a", "e", msgspec.Raw(b"100")))
        while recorder.last("a") != 100:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
    assert recorder.seen["a"] == [*range(100), 100]
