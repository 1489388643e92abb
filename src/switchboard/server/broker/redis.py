"""`RedisBroker`: events between the nodes of a cluster, on a topic per channel and per token.

Delivery: every event is published, msgspec-encoded, on the Redis pub/sub topic it
belongs to (``broker/topics.py``): ``{prefix}c:{project}:{channel}`` for a channel's
events, ``{prefix}t:{token}`` for a token's, ``{prefix}events`` for the rare ones every
node hears. Each node subscribes only to the topics of its sockets' channels and
tokens (:class:`TopicInterest`), so it decodes only the events it delivers. Topic
changes are sent in batches: one SUBSCRIBE (or UNSUBSCRIBE) for every topic that changed
in a loop turn, and one for all of them after a reconnection. Events a node publishes
one after another arrive everywhere in that order (one connection per node reads every
topic it hears, and Redis keeps a publisher's order across topics).

Presence across nodes is :class:`~switchboard.server.broker.redis_presence.RedisPresence`.

Redis faults: publishing raises :class:`~switchboard.exceptions.Unavailable`; the
reader reconnects with backoff (at most :data:`_RECONNECT_MAX_S` between attempts, so
delivery resumes within about a second of Redis accepting connections again) and
resubscribes to every topic it wants in one command; the node rewrites its presence
each time the subscription's connection is made again: a Redis that restarted empty,
or lost a second of writes, gets this node's counts back at once rather than at the
next refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

import msgspec
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError

from switchboard.exceptions import Unavailable
from switchboard.server.aio import cancel_and_wait
from switchboard.server.broker.base import EventHandler, LocalNode, PresenceChanges, StoreRoute
from switchboard.server.broker.events import (
    BrokerEvent,
    ChannelMessage,
    GrantJoined,
    Heartbeat,
    NodePresence,
    TokenSubscribed,
)
from switchboard.server.broker.redis_presence import FAULTS, RedisPresence
from switchboard.server.broker.topics import SHARED, TopicInterest, node_topic, topic_of
from switchboard.server.redis_pool import open_client

log = logging.getLogger("switchboard.broker")

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(BrokerEvent)

_NO_POSITION = b',"offset":null,"epoch":null}'
"""How an encoded ChannelMessage without history ends (``store_route``)."""

_EVENTS_PER_TURN = 256
"""Events handled before the reader yields to the event loop."""

_RECONNECT_MAX_S = 1.0
"""The longest wait between two attempts to resubscribe to a Redis that went away."""

HEARTBEAT_S = 1.0
"""How often a node publishes a beat on its own topic (and checks it hears them)."""

HEARTBEAT_MISSED_S = 3.5
"""A subscription that heard no beat for this long is dropped and made again: a Redis
failover can leave its socket open to a server that no longer gets the publishes."""

GRANT_WAIT_S = 2.0
"""How long a backend's grant waits for the nodes with the token's sockets to join them."""


class _Subscription(PubSub):
    """A PubSub that does not reconnect by itself.

    redis-py's PubSub reconnects after a connection error that its retry covers and
    resubscribes to the channels it knows. The broker does that itself instead, so that
    every topic wanted *now* is subscribed again in one command and nothing counts as
    heard until Redis confirms it (``TopicInterest.resubscribing``): a connection made
    again here raises, and the reader starts over.
    """

    async def on_connect(self, connection: Any) -> None:
        if self.channels:
            raise RedisConnectionError("the subscription's connection was made again")
        await super().on_connect(connection)


class RedisBroker:
    """See the module docstring."""

    def __init__(
        self,
        url: str,
        handler: EventHandler,
        local: LocalNode,
        changes: PresenceChanges,
        topics: TopicInterest,
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
        self.topics = topics
        self.prefix = prefix
        self.node_id = node_id or secrets.token_hex(6)
        self.ttl = ttl
        self.timeout = timeout
        self._redis: Any = None
        self._presence: RedisPresence | None = None
        self._pubsub: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = False
        self.events_received = 0
        """Events this node's reader decoded (it hears only its topics)."""
        self.reconnects = 0
        self._heard_at = 0.0
        self._deaf = False
        """Set when the beats stopped coming back: the reader drops its subscription."""
        """When this node's reader last heard anything (its beats come every second)."""
        self._grants: dict[str, tuple[set[str], asyncio.Future[None]]] = {}
        """Grants waiting for nodes to join the token's sockets: request -> (nodes, done)."""

    def __repr__(self) -> str:
        return f"RedisBroker(node={self.node_id!r})"

    @property
    def clustered(self) -> bool:
        return True

    @property
    def presence(self) -> RedisPresence:
        assert self._presence is not None, "the broker is not started"
        return self._presence

    async def start(self) -> None:
        self._redis = open_client(self.url, timeout=self.timeout)
        await self.ping()
        self._presence = RedisPresence(
            self._redis,
            prefix=self.prefix,
            node_id=self.node_id,
            ttl=self.ttl,
            handler=self._handler,
            local=self._local,
            changes=self._changes,
        )
        subscribed = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._read(subscribed)),
            asyncio.create_task(self._change_topics()),
            asyncio.create_task(self._beat()),
            *self._presence.tasks(),
        ]
        await asyncio.wait_for(subscribed.wait(), self.timeout * 2)

    async def stop(self) -> None:
        # The leaves of the connections the node just closed reach the other nodes' watches
        # now, not when this node's key is found gone.
        if self._presence is not None:
            await self._presence.leave()
            self._presence = None  # a second stop does nothing
        if await cancel_and_wait(self._tasks):
            log.warning("broker tasks still running at stop")
        self._tasks = []
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except FAULTS as exc:
            raise Unavailable(f"the broker (Redis) cannot be reached: {exc}") from exc

    async def publish(self, event: BrokerEvent) -> None:
        try:
            await self._redis.publish(self.prefix + topic_of(event), _encoder.encode(event))
        except FAULTS as exc:
            raise Unavailable(f"the broker (Redis) cannot be reached: {exc}") from exc

    async def publish_many(self, events: list[BrokerEvent]) -> None:
        if not events:
            return
        pipe = self._redis.pipeline(transaction=False)
        for event in events:
            pipe.publish(self.prefix + topic_of(event), _encoder.encode(event))
        try:
            await pipe.execute()
        except FAULTS as exc:
            raise Unavailable(f"the broker (Redis) cannot be reached: {exc}") from exc

    def store_route(self, event: ChannelMessage) -> StoreRoute:
        encoded = _encoder.encode(msgspec.structs.replace(event, offset=None, epoch=None))
        assert encoded.endswith(_NO_POSITION), "offset and epoch end a ChannelMessage"
        return StoreRoute("PUBLISH", self.prefix + topic_of(event), encoded[: -len(_NO_POSITION)])

    async def publish_grant(self, event: TokenSubscribed) -> None:
        """Publish, then wait (up to :data:`GRANT_WAIT_S`) until every node with the
        token's sockets, this one included, says it joined them to the channel: a node
        that did not hear the channel yet joins them only once it does."""
        nodes = await self.presence.token_nodes(event.token_id)
        if self._local.token_connections(event.token_id):
            nodes.add(self.node_id)
        if not nodes:
            return await self.publish(event)
        request = f"{self.node_id}:{secrets.token_hex(8)}"
        done = asyncio.get_running_loop().create_future()
        self._grants[request] = (nodes, done)
        try:
            await self.publish(msgspec.structs.replace(event, ack=request))
            # asyncio.wait: it neither cancels the future nor swallows a cancellation.
            await asyncio.wait([done], timeout=GRANT_WAIT_S)
        finally:
            del self._grants[request]

    def _grant_joined(self, event: GrantJoined) -> None:
        waiting = self._grants.get(event.request)
        if waiting is not None:
            nodes, done = waiting
            nodes.discard(event.node_id)
            if not nodes and not done.done():
                done.set_result(None)

    # Delivery.

    async def _read(self, subscribed: asyncio.Event) -> None:
        """Hand every event to the handler; reconnect and resubscribe after a fault."""
        delay = 0.1
        while True:
            pubsub: Any = _Subscription(self._redis.connection_pool)
            try:
                # Every topic this node wants, the shared one and its own, in one command.
                topics = [SHARED, node_topic(self.node_id), *self.topics.resubscribing()]
                await pubsub.subscribe(*(self.prefix + t for t in topics))
                self._pubsub = pubsub
                self._heard_at = asyncio.get_running_loop().time()
                self.connected = True
                subscribed.set()
                # Redis may have lost this node's presence while it was away: the
                # presence task writes it again.
                self._reconnected()
                delay = 0.1
                await self._deliver(pubsub)
            except FAULTS as exc:
                self._pubsub = None
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

    async def _deliver(self, pubsub: Any) -> None:
        """Read one subscription until it fails: events, and Redis's confirmations."""
        prefix_len = len(self.prefix)
        loop = asyncio.get_running_loop()
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if self._deaf:
                self._deaf = False
                raise RedisConnectionError("no heartbeat heard back on this subscription")
            if message is None:
                continue
            self._heard_at = loop.time()
            kind = message["type"]
            if kind == "message":
                try:
                    event = _decoder.decode(message["data"])
                except msgspec.DecodeError:
                    log.warning("undecodable broker event dropped")
                    continue
                if isinstance(event, Heartbeat):
                    continue
                self.events_received += 1
                if isinstance(event, GrantJoined):
                    self._grant_joined(event)
                else:
                    self._handler.handle(event)
                if self.events_received % _EVENTS_PER_TURN == 0:
                    # A backlog arrives already buffered, and get_message then returns
                    # without yielding: let the writes and every other task run
                    # between slices of it.
                    await asyncio.sleep(0)
            elif kind == "subscribe":
                self.topics.confirmed(message["channel"].decode()[prefix_len:])

    async def _change_topics(self) -> None:
        """Send the topic changes of each loop turn, batched: one SUBSCRIBE, one UNSUBSCRIBE."""
        while True:
            await self.topics.changed.wait()
            # The rest of this turn's joins and leaves come in the same batch.
            await asyncio.sleep(0)
            to_hear, to_drop = self.topics.take()
            pubsub = self._pubsub
            if pubsub is None:
                continue  # the reader resubscribes to everything wanted when it is back
            try:
                if to_drop:
                    await pubsub.unsubscribe(*(self.prefix + t for t in to_drop))
                if to_hear:
                    await pubsub.subscribe(*(self.prefix + t for t in to_hear))
            except FAULTS as exc:
                # The reader sees the same fault and resubscribes to every wanted topic.
                log.warning("topic change not sent", extra={"error": str(exc)})

    async def _beat(self) -> None:
        """Publish a beat on this node's topic every second; drop a subscription that hears
        none (see :data:`HEARTBEAT_MISSED_S`), so the reader subscribes again."""
        beat = self.prefix + topic_of(Heartbeat(self.node_id))
        payload = _encoder.encode(Heartbeat(self.node_id))
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self._redis.publish(beat, payload)
            except FAULTS:
                continue  # Redis is away: the reader sees it too
            if self._pubsub is not None and loop.time() - self._heard_at > HEARTBEAT_MISSED_S:
                log.warning("broker heard no heartbeat; subscribing again")
                self._heard_at = loop.time()
                self._deaf = True  # the reader, back within a second, starts over

    def _reconnected(self) -> None:
        # Events published while the subscription was away were missed (what this node
        # knew of which channels keep no history may be stale: docs/history.md).
        self._handler.events_missed()
        if self._presence is not None:
            self._presence.reconnected()

    # Presence (broker/redis_presence.py).

    async def token_connections(self, token_id: str) -> int:
        return await self.presence.token_connections(token_id)

    async def channel_connections(self, project_id: str, channel_id: str) -> int:
        return await self.presence.channel_connections(project_id, channel_id)

    async def channel_presence(self, project_id: str, channel_id: str) -> dict[str, NodePresence]:
        return await self.presence.channel_presence(project_id, channel_id)

    def stats(self) -> dict[str, object]:
        return {
            "node_id": self.node_id,
            "connected": self.connected,
            "events_received": self.events_received,
            "reconnects": self.reconnects,
            "topics": len(self.topics),
        }
