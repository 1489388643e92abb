"""`RedisBroker`: events between the nodes of a cluster, and presence across them.

Delivery: every event is published, msgspec-encoded, on one Redis pub/sub topic
(``{prefix}events``); every node subscribes to it and hands each event to its handler
(the node's fan-out), which ignores what concerns no local socket. One topic keeps
order simple: events a node publishes one after another arrive everywhere in that
order. (Per-channel topics,
and sharded pub/sub on Redis Cluster, are the scaling path: ``docs/scaling.md``.)

Presence: each node keeps, under its own ID, how many of its connections each token
has and how many subscribers each channel has (hashes ``{prefix}presence:{node}:t``
and ``:c``), and refreshes ``{prefix}node:{node}`` with a short TTL. A count is the
sum over nodes whose key is alive, so a node killed with ``kill -9`` stops counting
when its key expires, and the first reader after that sweeps its hashes away. A node
that stops cleanly deletes its own at once. A third hash, ``:m``, holds who: per
channel, this node's connections per token and its tokenless ones (JSON of
:class:`~switchboard.server.broker.events.NodePresence`); it is written with the other two,
in the same transaction, only when something changed, so a publish costs nothing more.

Presence events (``MemberJoined``/``MemberLeft``, one when a token's first connection on
this node joins a channel or its last leaves it) are queued by the hub and published
by one task in order, pipelined. Nodes with presence watches check every second that
the nodes their members are on are alive, so a killed node's members leave within the
TTL (plus that second). A node that finds its own key gone when it writes (it stalled
past the TTL, or Redis restarted empty), or whose link to Redis came back, announces
all its members again, so watchers that took it for dead see them join again.

Redis faults: publishing raises :class:`~switchboard.exceptions.Unavailable`; the
reader reconnects with backoff (at most :data:`_RECONNECT_MAX_S` between attempts, so
delivery resumes within about a second of Redis accepting connections again) and
resubscribes by itself, and the node rewrites its presence from its hub each time the
subscription's connection is made again: a Redis that restarted empty, or lost a
second of writes, gets this node's counts back at once rather than at the next refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

import msgspec
from redis import exceptions as redis_errors
from redis.asyncio.client import PubSub

from switchboard.exceptions import Unavailable
from switchboard.server.aio import cancel_and_wait, wait_event
from switchboard.server.broker.base import EventHandler, LocalNode, PresenceChanges
from switchboard.server.broker.events import BrokerEvent, NodePresence
from switchboard.server.redis_pool import open_client

log = logging.getLogger("switchboard.broker")

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(BrokerEvent)
_share_decoder = msgspec.json.Decoder(NodePresence)

_WATCH_CHECK_S = 1.0
"""How often a node with presence watches checks that their members' nodes live."""

_FAULTS = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)


def _channel_field(project_id: str, channel_id: str) -> str:
    return f"{project_id}\x00{channel_id}"


_EVENTS_PER_TURN = 256
"""Events handled before the reader yields to the event loop."""

_RECONNECT_MAX_S = 1.0
"""The longest wait between two attempts to resubscribe to a Redis that went away."""


class _EventsSubscription(PubSub):
    """A PubSub that calls ``on_connected`` each time its connection is (re)made.

    redis-py's PubSub reconnects and resubscribes by itself after a connection error
    that its retry covers; this hook lets the broker notice that too.
    """

    def __init__(self, pool: Any, on_connected: Any) -> None:
        super().__init__(pool)
        self._on_connected = on_connected

    async def on_connect(self, connection: Any) -> None:
        await super().on_connect(connection)
        self._on_connected()


class RedisBroker:
    """See the module docstring."""

    def __init__(
        self,
        url: str,
        handler: EventHandler,
        local: LocalNode,
        changes: PresenceChanges,
        *,
        prefix: str = "sb:",
        node_id: str | None = None,
        ttl: float = 15.0,
        timeout: float = 2.0,
    ) -> None:
        self.url = url
        self._handler = handler
        self._local = local
        self._changes = changes
        self.prefix = prefix
        self.node_id = node_id or secrets.token_hex(6)
        self.ttl = ttl
        self.timeout = timeout
        self.topic = f"{prefix}events"
        self._redis: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = False
        self.events_received = 0
        self.reconnects = 0
        self._announce = False
        """Set on each (re)connection: after the next presence write, announce every member."""

    def __repr__(self) -> str:
        return f"RedisBroker(node={self.node_id!r})"

    @property
    def clustered(self) -> bool:
        return True

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def start(self) -> None:
        self._redis = open_client(self.url, timeout=self.timeout)
        await self.ping()
        subscribed = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._read(subscribed)),
            asyncio.create_task(self._keep_presence()),
            asyncio.create_task(self._publish_members()),
            asyncio.create_task(self._check_watched_nodes()),
        ]
        await asyncio.wait_for(subscribed.wait(), self.timeout * 2)

    async def stop(self) -> None:
        # The leaves of the connections the node just closed reach the other nodes' watches
        # now, not when this node's key is found gone.
        with contextlib.suppress(*_FAULTS):
            await self._send_members()
        if await cancel_and_wait(self._tasks):
            log.warning("broker tasks still running at stop")
        if self._redis is not None:
            with contextlib.suppress(*_FAULTS):
                await self._redis.delete(
                    self._k("node", self.node_id),
                    self._k("presence", self.node_id, "t"),
                    self._k("presence", self.node_id, "c"),
                    self._k("presence", self.node_id, "m"),
                )
                await self._redis.srem(self._k("nodes"), self.node_id)
            await self._redis.aclose()
            self._redis = None

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except _FAULTS as exc:
            raise Unavailable(f"the broker (Redis) cannot be reached: {exc}") from exc

    async def publish(self, event: BrokerEvent) -> None:
        try:
            await self._redis.publish(self.topic, _encoder.encode(event))
        except _FAULTS as exc:
            raise Unavailable(f"the broker (Redis) cannot be reached: {exc}") from exc

    # Delivery.

    async def _read(self, subscribed: asyncio.Event) -> None:
        """Hand every event to the handler; reconnect and resubscribe after a fault."""
        delay = 0.1
        while True:
            pubsub: Any = _EventsSubscription(self._redis.connection_pool, self._reconnected)
            try:
                await pubsub.subscribe(self.topic)
                self.connected = True
                subscribed.set()
                # Redis may have lost this node's presence while it was away: the
                # presence task writes it again (and again on each reconnection that
                # redis-py makes by itself, through _EventsSubscription).
                self._reconnected()
                delay = 0.1
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self.events_received += 1
                        try:
                            event = _decoder.decode(message["data"])
                        except msgspec.DecodeError:
                            log.warning("undecodable broker event dropped")
                            continue
                        self._handler.handle(event)
                        if self.events_received % _EVENTS_PER_TURN == 0:
                            # A backlog arrives already buffered, and get_message then
                            # returns without yielding: let the writes and every other
                            # task run between slices of it.
                            await asyncio.sleep(0)
            except _FAULTS as exc:
                self.connected = False
                self.reconnects += 1
                self._handler.events_missed()
                log.warning(
                    "broker disconnected; reconnecting",
                    extra={"error": str(exc), "retry_in_s": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECONNECT_MAX_S)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    # Presence.

    def _reconnected(self) -> None:
        # Events published while the subscription was away were missed (what this node
        # knew of which channels keep no history may be stale: docs/history.md).
        self._handler.events_missed()
        # Presence events this node published while Redis was away are lost, and watchers
        # elsewhere may have taken it for dead: once its presence is written again, its
        # members are announced again (as they are whenever its key is found missing);
        # a join a watcher knows already changes nothing.
        self._announce = True
        self._changes.changed()

    async def _keep_presence(self) -> None:
        """Refresh this node's key, and write its counts whenever they change."""
        interval = self.ttl / 3
        while True:
            try:
                await self._write_presence()
            except _FAULTS as exc:
                log.warning("presence not written", extra={"error": str(exc)})
                self._changes.changed()
                await asyncio.sleep(0.5)
                continue
            # Not wait_for or asyncio.timeout: on Python 3.11 either can swallow a
            # cancellation that lands as the timeout fires, and stop() would wait
            # forever (switchboard.server.aio).
            await wait_event(self._changes.dirty, interval)

    async def _write_presence(self) -> None:
        self._changes.dirty.clear()
        tokens, by_channel = self._local.presence_counts()
        channels = {_channel_field(p, c): n for (p, c), n in by_channel.items()}
        members = {
            _channel_field(p, c): _encoder.encode(share)
            for (p, c), share in self._local.presence_shares().items()
        }
        t_key = self._k("presence", self.node_id, "t")
        c_key = self._k("presence", self.node_id, "c")
        m_key = self._k("presence", self.node_id, "m")
        node_key = self._k("node", self.node_id)
        pipe = self._redis.pipeline(transaction=True)
        # Whether the key was still there: if not, other nodes may have taken this one
        # for dead (its key expired in a stall, or Redis restarted empty).
        pipe.exists(node_key)
        pipe.set(node_key, "1", px=int(self.ttl * 1000))
        pipe.sadd(self._k("nodes"), self.node_id)
        pipe.delete(t_key, c_key, m_key)
        if tokens:
            pipe.hset(t_key, mapping=dict(tokens))
        if channels:
            pipe.hset(c_key, mapping=dict(channels))
        if members:
            pipe.hset(m_key, mapping=members)
        was_alive = (await pipe.execute())[0]
        if self._announce or not was_alive:
            self._announce = False
            for event in self._local.announcements():
                self._changes.member(event)

    async def _remote_fields(self, suffix: str, field: str) -> dict[str, bytes]:
        """``field`` of hash ``suffix`` of every other live node that has it, by node."""
        try:
            nodes = [n.decode() for n in await self._redis.smembers(self._k("nodes"))]
            others = [n for n in nodes if n != self.node_id]
            if not others:
                return {}
            pipe = self._redis.pipeline(transaction=False)
            for node in others:
                pipe.exists(self._k("node", node))
                pipe.hget(self._k("presence", node, suffix), field)
            replies = await pipe.execute()
        except _FAULTS as exc:
            raise Unavailable(f"the broker (Redis) cannot be reached: {exc}") from exc
        found: dict[str, bytes] = {}
        dead = []
        for node, alive, value in zip(others, replies[::2], replies[1::2], strict=True):
            if not alive:
                dead.append(node)
            elif value is not None:
                found[node] = value
        if dead:
            await self._sweep(dead)
        return found

    async def _remote_sum(self, suffix: str, field: str) -> int:
        """The count ``field`` summed over every other live node."""
        return sum(int(v) for v in (await self._remote_fields(suffix, field)).values())

    async def _sweep(self, dead: list[str]) -> None:
        """Forget nodes whose key expired (they died without cleaning up)."""
        with contextlib.suppress(*_FAULTS):
            pipe = self._redis.pipeline(transaction=False)
            for node in dead:
                pipe.srem(self._k("nodes"), node)
                pipe.delete(*(self._k("presence", node, s) for s in ("t", "c", "m")))
            await pipe.execute()
            log.info("swept dead nodes", extra={"nodes": dead})

    async def token_connections(self, token_id: str) -> int:
        return self._local.token_connections(token_id) + await self._remote_sum("t", token_id)

    async def channel_connections(self, project_id: str, channel_id: str) -> int:
        local = self._local.channel_connections(project_id, channel_id)
        return local + await self._remote_sum("c", _channel_field(project_id, channel_id))

    async def channel_presence(self, project_id: str, channel_id: str) -> dict[str, NodePresence]:
        shares = {self.node_id: self._local.channel_share(project_id, channel_id)}
        remote = await self._remote_fields("m", _channel_field(project_id, channel_id))
        for node, value in remote.items():
            try:
                shares[node] = _share_decoder.decode(value)
            except msgspec.DecodeError:
                log.warning("undecodable presence dropped", extra={"node": node})
        return shares

    # Presence events.

    async def _send_members(self) -> None:
        events = self._changes.take_members()
        if not events:
            return
        pipe = self._redis.pipeline(transaction=False)
        for event in events:
            pipe.publish(self.topic, _encoder.encode(event))
        await pipe.execute()

    async def _publish_members(self) -> None:
        """Publish presence events in the order the hub queued them, a batch per wakeup."""
        while True:
            await self._changes.members_queued.wait()
            try:
                await self._send_members()
            except _FAULTS as exc:
                # At most once, like every event: the watches miss this change, while
                # the presence hashes (rewritten on reconnect) stay right.
                log.warning("presence events not published", extra={"error": str(exc)})

    async def _check_watched_nodes(self) -> None:
        """Tell the handler which nodes this node's presence watches count on have died."""
        while True:
            await asyncio.sleep(_WATCH_CHECK_S)
            nodes = sorted(self._local.watched_nodes())
            if not nodes:
                continue
            try:
                pipe = self._redis.pipeline(transaction=False)
                for node in nodes:
                    pipe.exists(self._k("node", node))
                alive = await pipe.execute()
            except _FAULTS:
                continue  # Redis is away: nobody can tell; try again next time
            for node, live in zip(nodes, alive, strict=True):
                if not live:
                    self._handler.node_gone(node)

    def stats(self) -> dict[str, object]:
        return {
            "node_id": self.node_id,
            "connected": self.connected,
            "events_received": self.events_received,
            "reconnects": self.reconnects,
        }
