"""Topics on a Redis Cluster: sharded pub/sub, one reader per master (issue 19).

``SPUBLISH`` sends an event only to the master that owns its shard channel's slot (a
classic ``PUBLISH`` is copied to every node of the cluster). Each topic is a shard
channel in one of 128 partitions whose tags spread evenly over the masters
(``broker/partitions.py``); ``SSUBSCRIBE`` takes one slot's channels per command, so a
batch of topic changes is one command per partition touched, on the connection of the
master that owns it. :class:`ShardReaders` keeps one such connection per master and
mends them (docs/scaling.md, "Redis Cluster"):

- A reader whose connection fails, or that heard none of its heartbeats for
  :data:`HEARTBEAT_MISSED_S` (a failover that left its socket open to a master that no
  longer gets the publishes), is closed; the slot map is read again and a reader on
  the master that owns its partitions now subscribes to all their topics in one batch.
- When a slot moves (``redis-cli --cluster reshard``) its master unsubscribes the
  slot's channels itself (a ``sunsubscribe`` nobody asked for); a probe of the
  partition is answered ``MOVED``, naming the new master, whose reader (started if need
  be) subscribes to its topics; other partitions are untouched, no slot map is read.

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
    partition_of_channel,
    ping_channel,
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


class _Reader:
    """One sharded pub/sub connection to one master, for some partitions."""

    def __init__(self, address: tuple[str, int], partitions: set[int]) -> None:
        self.address = address
        self.partitions = partitions
        self.pubsub: Any = None
        self.ping = ""
        self.heard_at = 0.0
        self.ping_partition = 0
        self.asking: set[int] = set()
        """Partitions asked for again after Redis unsubscribed them, until ``MOVED``."""
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
        self._moved_gap = False
        self._gap_told = 0.0
        self._wake = asyncio.Event()  # readers started outside a map: look again
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
            now = asyncio.get_running_loop().time()
            if self._moved_gap and now >= self._gap_told + 1.0:
                # Events published on moved partitions meanwhile may be missed: told at
                # most once a second (a reshard moves many), the rest a second later.
                self._moved_gap, self._gap_told = False, now
                self._on_gap()
            ready = all(r.pubsub is not None for r in self._readers.values())
            if ready:
                subscribed.set()
                delay = 0.1
            signals = [asyncio.ensure_future(e.wait()) for e in (self._remap, self._wake)]
            waits = [*signals, *(r.task for r in self._readers.values() if r.task is not None)]
            try:
                wait_s = (1.0 if self._moved_gap else None) if ready else 0.05
                await asyncio.wait(waits, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for signal in signals:
                    signal.cancel()
            self._wake.clear()
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
        for partition, owner in enumerate(owners):
            if self._owner[partition] != owner:
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
            if not reader.partitions:
                return  # all moved elsewhere meanwhile
            reader.ping_partition = min(reader.partitions)
            reader.ping = ping_channel(self.prefix, reader.ping_partition, self.node_id)
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
                moved = {p for p in reader.partitions if SLOTS[p] == exc.slot_id}
                await self._moved_to(reader, moved, (exc.host, int(exc.port)))
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
                if "\0ping:" not in channel:
                    self.topics.confirmed(topic_of_channel(self.prefix, channel))
                elif channel != reader.ping:
                    await self._still_here(reader, partition_of_channel(self.prefix, channel))
            elif kind == "sunsubscribe":
                if channel in reader.dropping:
                    reader.dropping.discard(channel)
                elif channel == reader.ping:
                    await self._move_ping(reader)
                else:
                    await self._unsubscribed(reader, partition_of_channel(self.prefix, channel))

    async def _unsubscribed(self, reader: _Reader, partition: int) -> None:
        """Redis unsubscribed a channel itself: its slot left this master. A probe
        (the partition's heartbeat channel: the partition may hold no topic of ours) is
        answered ``MOVED``, which names the master that has it now (:meth:`_moved_to`);
        once per partition, not per channel."""
        if partition in reader.asking or partition not in reader.partitions:
            return
        reader.asking.add(partition)
        self._moved_gap = True
        self.topics.resubscribing(lambda t: partition_of(t) == partition)
        await reader.pubsub.ssubscribe(ping_channel(self.prefix, partition, self.node_id))

    async def _still_here(self, reader: _Reader, partition: int) -> None:
        """A probe was confirmed: the partition stayed; its topics go again."""
        if partition in reader.asking:
            reader.asking.discard(partition)
            await self._subscribe_partitions(reader, {partition})

    async def _moved_to(
        self, reader: _Reader, partitions: set[int], address: tuple[str, int]
    ) -> None:
        """Hand ``partitions`` to the reader of ``address`` (started if need be), which
        subscribes to their topics; none is heard until that master confirms it."""
        reader.asking -= partitions
        if not partitions:
            return
        self._moved_gap = True
        reader.partitions -= partitions
        self.topics.resubscribing(lambda t: partition_of(t) in partitions)
        if reader.ping_partition in partitions:
            await self._move_ping(reader)
        for partition in partitions:
            self._owner[partition] = address
        target = self._readers.get(address)
        if target is None or target.task is None or target.task.done():
            self._start(address, partitions | (target.partitions if target else set()))
        else:
            target.partitions |= partitions
            await self._subscribe_partitions(target, partitions)
        self._wake.set()

    async def _move_ping(self, reader: _Reader) -> None:
        """The heartbeat channel's slot moved away: beat on another partition's, and
        probe the old one."""
        old = reader.ping_partition
        others = reader.partitions - reader.asking - {old}
        if others:
            reader.ping_partition = min(others)
            reader.ping = ping_channel(self.prefix, reader.ping_partition, self.node_id)
            reader.heard_at = asyncio.get_running_loop().time()
            await reader.pubsub.ssubscribe(reader.ping)
        await self._unsubscribed(reader, old)

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
        """``connected``: every partition has a reader whose master took its subscriptions."""
        owned = all(owner is not None for owner in self._owner)
        return {
            "connected": owned and all(r.pubsub is not None for r in self._readers.values()),
            "reconnects": self.restarts,
            "shards": len(self._readers),
            "remaps": self.remaps,
        }
