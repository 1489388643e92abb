"""Topics on a Redis Cluster: sharded pub/sub, one reader per master (issue 19).

Classic ``PUBLISH`` on a Redis Cluster is copied to every node of the cluster; sharded
pub/sub (``SPUBLISH``/``SSUBSCRIBE``, Redis 7) sends a message only to the master that
owns its channel's hash slot (and that master's subscribers). So each topic
(``broker/topics.py``) becomes a *shard channel* in one of :data:`PARTITIONS`
partitions, each partition a hash tag whose slot is set in advance:

- The tags are searched for in advance so that partition ``i``'s slot is the middle
  of the ``i``-th of :data:`PARTITIONS` equal ranges of the 16,384 slots
  (:func:`balanced_tag`, as Centrifugo does). Slots are handed to masters in
  contiguous ranges, so the partitions spread evenly over any number of masters;
  naive tags (``{0}``…``{31}``) hash to random slots and leave shards idle.
- A topic's partition is the CRC32 of its name: ``{prefix}{{tag}}{topic}``.
- ``SSUBSCRIBE`` takes channels of one slot per command, so a batch of topic changes
  is one command per partition touched, sent on the connection of the master that
  owns the partition.

:class:`ShardReaders` keeps one sharded pub/sub connection per master, each
subscribed to the wanted topics of the partitions its master owns, and mends them:

- A reader whose connection fails, or that heard none of its heartbeats for
  :data:`HEARTBEAT_MISSED_S` (a failover that left its socket open to a master that no
  longer gets the publishes), is closed; the slot map is read again and a reader is
  started on whichever master owns those partitions now, subscribing to all their
  topics in one batch.
- When slots move (``redis-cli --cluster reshard``), Redis unsubscribes the moved
  slot's channels itself (a ``sunsubscribe`` nobody asked for) or answers ``MOVED`` to
  a subscription: the partitions concerned are handed to their new owner's reader,
  the other partitions' subscriptions untouched.

A topic counts as heard only once its master confirmed its ``SSUBSCRIBE``
(``TopicInterest.confirmed``), so a client gets ``AVAILABLE`` or ``INIT`` only after
its events can reach this node, as on a single Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError, ResponseError

from switchboard.server.aio import cancel_and_wait
from switchboard.server.broker.topics import TopicInterest

log = logging.getLogger("switchboard.broker")

PARTITIONS = 128
"""Hash tags the topics are spread over: many more than masters, so that each master
gets an even share, few enough that a full resubscription is a short batch."""

HEARTBEAT_MISSED_S = 3.5
"""A subscription that heard no beat (one a second) for this long is dropped and made
again: a Redis failover can leave its socket open to a server that no longer gets the
publishes (both brokers' readers)."""

_RECONNECT_MAX_S = 1.0

FAULTS = (RedisConnectionError, ResponseError, OSError, TimeoutError)


def balanced_tag(partition: int, count: int) -> str:
    """A hash tag whose slot is the middle of the ``partition``-th of ``count`` equal
    ranges of the cluster's slots (a search: about 16,384 tries)."""
    middle = partition * REDIS_CLUSTER_HASH_SLOTS // count + REDIS_CLUSTER_HASH_SLOTS // count // 2
    n = 0
    while key_slot(f"{partition}.{n}".encode()) != middle:
        n += 1
    return f"{partition}.{n}"


# fmt: off
TAGS = [
    "0.9449", "1.18167", "2.5478", "3.3024", "4.2503", "5.10504", "6.16269", "7.11047",
    "8.6199", "9.43273", "10.5813", "11.105985", "12.542", "13.7093", "14.22111", "15.7492",
    "16.1447", "17.2769", "18.5099", "19.990", "20.614", "21.1600", "22.13742", "23.8143",
    "24.7619", "25.1245", "26.29808", "27.8506", "28.2969", "29.19057", "30.8306",
    "31.67821", "32.23507", "33.12098", "34.5922", "35.72988", "36.17830", "37.8835",
    "38.5120", "39.20515", "40.6081", "41.40850", "42.5927", "43.69374", "44.12394",
    "45.26179", "46.4688", "47.22348", "48.13430", "49.43572", "50.9516", "51.10411",
    "52.11606", "53.1373", "54.120", "55.1772", "56.944", "57.1736", "58.9951", "59.63962",
    "60.362", "61.11989", "62.8232", "63.48631", "64.20300", "65.43281", "66.123",
    "67.48927", "68.69139", "69.1462", "70.68444", "71.29547", "72.2382", "73.18925",
    "74.2783", "75.44961", "76.30898", "77.5871", "78.8164", "79.41690", "80.46293",
    "81.20460", "82.56791", "83.427", "84.2747", "85.1469", "86.4993", "87.29540",
    "88.12810", "89.42952", "90.3025", "91.5479", "92.29400", "93.17808", "94.14099",
    "95.20274", "96.49647", "97.19705", "98.12374", "99.10628", "100.2477", "101.1759",
    "102.13610", "103.43752", "104.2032", "105.13763", "106.1994", "107.12220", "108.340",
    "109.16892", "110.26870", "111.18478", "112.2833", "113.15583", "114.19485",
    "115.58586", "116.9979", "117.12877", "118.2430", "119.28999", "120.29358", "121.7943",
    "122.58287", "123.1797", "124.24049", "125.23267", "126.20278", "127.14095",
]
# fmt: on
"""``balanced_tag(i, PARTITIONS)`` for each partition, found once (a second's work at
every start otherwise); ``tests/broker/test_shards.py`` checks them."""
_SLOTS = [key_slot(tag.encode()) for tag in TAGS]


def partition_of(topic: str) -> int:
    return zlib.crc32(topic.encode()) % PARTITIONS


def shard_channel(prefix: str, topic: str) -> str:
    """The shard channel of ``topic``: ``{prefix}{{tag}}{topic}``."""
    return f"{prefix}{{{TAGS[partition_of(topic)]}}}{topic}"


def topic_of_channel(prefix: str, channel: str) -> str:
    return channel[len(prefix) :].partition("}")[2]


def _ping_channel(prefix: str, partition: int, node_id: str) -> str:
    """A reader's heartbeat channel: on the slot of one of its partitions."""
    return f"{prefix}{{{TAGS[partition]}}}\0ping:{node_id}"


class _Moved(Exception):
    """Slots of this reader's master moved elsewhere."""


class _Reader:
    """One sharded pub/sub connection to one master, for some partitions."""

    def __init__(self, address: tuple[str, int], partitions: set[int]) -> None:
        self.address = address
        self.partitions = partitions
        self.pubsub: Any = None
        self.ping = ""
        self.heard_at = 0.0
        self.dropping: set[str] = set()
        """Channels this node unsubscribes from: their ``sunsubscribe`` is no slot move."""
        self.task: asyncio.Task[None] | None = None


class ShardReaders:
    """See the module docstring. ``on_message`` gets each event's bytes; ``on_gap`` is
    called when a reader starts over (events on its topics may have been missed)."""

    def __init__(
        self,
        cluster: Any,
        topics: TopicInterest,
        *,
        prefix: str,
        node_id: str,
        password: str | None,
        timeout: float,
        on_message: Callable[[bytes], None],
        on_gap: Callable[[], None],
    ) -> None:
        self._cluster = cluster
        self.topics = topics
        self.prefix = prefix
        self.node_id = node_id
        self._password = password
        self._timeout = timeout
        self._on_message = on_message
        self._on_gap = on_gap
        self._readers: dict[tuple[str, int], _Reader] = {}
        self._owner: list[tuple[str, int] | None] = [None] * PARTITIONS
        self._remap = asyncio.Event()
        self._unsure: set[int] = set()
        """Partitions Redis said moved (a ``sunsubscribe`` or ``MOVED``): subscribed
        again at the next map, on whichever master it names."""
        self.remaps = 0
        """How often the slot map was read again (a failover, a slot move)."""

    # The supervisor.

    async def run(self, subscribed: asyncio.Event) -> None:
        """Keep a reader on every master that owns partitions; mend them (docstring)."""
        delay = 0.1
        must_map = True
        while True:
            if must_map:
                self._remap.clear()
                try:
                    await self._map()
                except FAULTS as exc:
                    log.warning("cluster slot map unreadable", extra={"error": str(exc)})
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RECONNECT_MAX_S)
                    continue
                must_map = False
            ready = all(r.pubsub is not None for r in self._readers.values())
            if ready:
                subscribed.set()
                delay = 0.1
            remapped = asyncio.ensure_future(self._remap.wait())
            waits = [remapped, *(r.task for r in self._readers.values() if r.task is not None)]
            try:
                await asyncio.wait(
                    waits, timeout=None if ready else 0.05, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                remapped.cancel()
            if self._reap_failed():
                must_map = True
                await asyncio.sleep(delay)  # a dead master refuses until its replica is up
                delay = min(delay * 2, _RECONNECT_MAX_S)
            if self._remap.is_set():
                must_map = True
                await asyncio.sleep(0.05)  # a slot map read mid-move may be stale: not a spin

    async def _map(self) -> None:
        """Read the slot map; start readers for partitions whose master changed."""
        self.remaps += 1
        await self._cluster.nodes_manager.initialize()
        owners: list[tuple[str, int]] = []
        for slot in _SLOTS:
            node = self._cluster.nodes_manager.get_node_from_slot(slot)
            owners.append((node.host, int(node.port)))
        moved: dict[tuple[str, int], set[int]] = {}
        unsure, self._unsure = self._unsure, set()
        for partition, owner in enumerate(owners):
            if self._owner[partition] != owner or partition in unsure:
                old = self._readers.get(self._owner[partition])  # type: ignore[arg-type]
                if old is not None:
                    old.partitions.discard(partition)
                moved.setdefault(owner, set()).add(partition)
            self._owner[partition] = owner
        for address, partitions in moved.items():
            reader = self._readers.get(address)
            if reader is None or reader.task is None or reader.task.done():
                self._start(address, partitions | (reader.partitions if reader else set()))
            else:
                reader.partitions |= partitions
                await self._subscribe_partitions(reader, partitions)
        for address in [a for a, r in self._readers.items() if not r.partitions]:
            await self._close(self._readers.pop(address))

    def _reap_failed(self) -> bool:
        """Forget readers that stopped (their partitions are nobody's until the next
        map gives them a reader again); whether there were any."""
        failed = [a for a, r in self._readers.items() if r.task is not None and r.task.done()]
        for address in failed:
            reader = self._readers.pop(address)
            for partition in reader.partitions:
                self._owner[partition] = None
            self._on_gap()
        return bool(failed)

    def _start(self, address: tuple[str, int], partitions: set[int]) -> None:
        reader = _Reader(address, set(partitions))
        self._readers[address] = reader
        reader.task = asyncio.create_task(self._read(reader))

    async def _close(self, reader: _Reader) -> None:
        if reader.task is not None:
            await cancel_and_wait([reader.task])

    async def stop(self) -> None:
        for reader in list(self._readers.values()):
            await self._close(reader)
        self._readers.clear()

    # A reader.

    async def _read(self, reader: _Reader) -> None:
        host, port = reader.address
        client = aioredis.Redis(
            host=host,
            port=port,
            password=self._password,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            # No silent reconnection: a reader that lost its master starts over here.
            retry=Retry(NoBackoff(), retries=0),
        )
        pubsub: Any = client.pubsub()
        try:
            reader.ping = _ping_channel(self.prefix, min(reader.partitions), self.node_id)
            await pubsub.ssubscribe(reader.ping)
            reader.pubsub = pubsub
            reader.heard_at = asyncio.get_running_loop().time()
            await self._subscribe_partitions(reader, reader.partitions)
            await self._deliver(reader)
        except FAULTS as exc:
            log.warning(
                "sharded subscription lost; mapping slots again",
                extra={"master": f"{host}:{port}", "error": str(exc)},
            )
            self._remap.set()
        except _Moved:
            self._remap.set()
        finally:
            reader.pubsub = None
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _subscribe_partitions(self, reader: _Reader, partitions: Iterable[int]) -> None:
        """Subscribe ``reader`` to every wanted topic of ``partitions``, one command per
        partition; none counts as heard until its master confirms it."""
        chosen = set(partitions)
        topics = self.topics.resubscribing(lambda t: partition_of(t) in chosen)
        await self._send(reader, "SSUBSCRIBE", topics)

    async def _send(self, reader: _Reader, command: str, topics: Iterable[str]) -> None:
        by_partition: dict[int, list[str]] = {}
        for topic in topics:
            by_partition.setdefault(partition_of(topic), []).append(topic)
        if reader.pubsub is None:
            return  # the reader subscribes to everything wanted when it starts
        for partition, some in sorted(by_partition.items()):
            channels = [f"{self.prefix}{{{TAGS[partition]}}}{t}" for t in some]
            if command == "SSUBSCRIBE":
                await reader.pubsub.ssubscribe(*channels)
            else:
                reader.dropping.update(channels)
                await reader.pubsub.sunsubscribe(*channels)

    async def _deliver(self, reader: _Reader) -> None:
        loop = asyncio.get_running_loop()
        handled = 0
        while True:
            try:
                message = await reader.pubsub.get_message(timeout=1.0)
            except MovedError as exc:
                self._slot_moved({p for p in reader.partitions if _SLOTS[p] == exc.slot_id})
                continue
            if loop.time() - reader.heard_at > HEARTBEAT_MISSED_S:
                raise RedisConnectionError("no heartbeat heard back on this shard")
            if message is None:
                continue
            kind = message["type"]
            channel = message["channel"].decode()
            if kind == "smessage":
                if channel == reader.ping:
                    reader.heard_at = loop.time()
                    continue
                self._on_message(message["data"])
                handled += 1
                if handled % 256 == 0:
                    await asyncio.sleep(0)  # a buffered backlog must not starve the loop
            elif kind == "ssubscribe":
                if channel != reader.ping:
                    self.topics.confirmed(topic_of_channel(self.prefix, channel))
            elif kind == "sunsubscribe":
                if channel in reader.dropping:
                    reader.dropping.discard(channel)
                else:
                    self._slot_moved({partition_of(topic_of_channel(self.prefix, channel))})

    def _slot_moved(self, partitions: set[int]) -> None:
        """Redis unsubscribed channels itself, or answered MOVED: their slot left this
        master. Their topics are unheard until the master the next map names confirms."""
        self.topics.resubscribing(lambda t: partition_of(t) in partitions)
        self._unsure |= partitions
        self._remap.set()

    # The broker's side.

    async def change(self, to_hear: list[str], to_drop: list[str]) -> None:
        """Send one batch of topic changes, to the reader of each topic's partition."""
        for command, topics in (("SUNSUBSCRIBE", to_drop), ("SSUBSCRIBE", to_hear)):
            by_reader: dict[tuple[str, int], list[str]] = {}
            for topic in topics:
                owner = self._owner[partition_of(topic)]
                if owner is not None:
                    by_reader.setdefault(owner, []).append(topic)
            for address, some in by_reader.items():
                reader = self._readers.get(address)
                if reader is None:
                    continue
                try:
                    await self._send(reader, command, some)
                except FAULTS as exc:
                    # The reader sees the same fault and starts over with every topic.
                    log.warning("topic change not sent", extra={"error": str(exc)})

    async def beat(self) -> None:
        """Publish a beat to every reader's heartbeat channel (through the cluster
        client, so it reaches whichever master owns the slot *now*)."""
        for reader in list(self._readers.values()):
            if reader.pubsub is not None and reader.ping:
                with contextlib.suppress(*FAULTS):
                    await self._cluster.spublish(reader.ping, b"")

    def stats(self) -> dict[str, object]:
        return {
            "shards": len(self._readers),
            "remaps": self.remaps,
        }
