"""Topics on a Redis Cluster: sharded pub/sub, one reader per master (issue 19).

Classic ``PUBLISH`` on a Redis Cluster is copied to every node of the cluster; sharded
pub/sub (``SPUBLISH``/``SSUBSCRIBE``, Redis 7) sends a message only to the master that
owns its channel's hash slot (and that master's subscribers). So each topic
(``broker/topics.py``) becomes a *shard channel* in one of :data:`PARTITIONS`
partitions, each partition a hash tag whose slot is set in advance:

- The tags are searched for in advance so that partition ``i``'s slot is the middle
  of the ``i``-th of :data:`PARTITIONS` equal ranges of the 16,384 slots
  (``broker/partitions.py``, as Centrifugo does). Slots are handed to masters in
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
from collections.abc import Callable, Iterable
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError, ResponseError

from switchboard.server.aio import cancel_and_wait
from switchboard.server.broker.partitions import (
    PARTITIONS,
    SLOTS,
    TAGS,
    partition_of,
    topic_of_channel,
)
from switchboard.server.broker.topics import TopicInterest

log = logging.getLogger("switchboard.broker")

HEARTBEAT_MISSED_S = 3.5
"""A subscription that heard no beat (one a second) for this long is dropped and made
again: a Redis failover can leave its socket open to a server that no longer gets the
publishes (both brokers' readers)."""

_RECONNECT_MAX_S = 1.0

FAULTS = (RedisConnectionError, ResponseError, OSError, TimeoutError)


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
        self.restarts = 0
        """Readers that lost their master and were made again."""

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
        for slot in SLOTS:
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
        self.restarts += len(failed)
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
                self._slot_moved({p for p in reader.partitions if SLOTS[p] == exc.slot_id})
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

    @property
    def connected(self) -> bool:
        """Every partition has a reader whose master accepted its subscriptions."""
        readers = self._readers.values()
        owned = all(owner is not None for owner in self._owner)
        return owned and all(r.pubsub is not None for r in readers)

    def stats(self) -> dict[str, object]:
        return {
            "connected": self.connected,
            "reconnects": self.restarts,
            "shards": len(self._readers),
            "remaps": self.remaps,
        }
