"""`RedisBroker`: events between the nodes of a cluster, on a topic per channel and per token.

Delivery: every event is published, msgspec-encoded, on the Redis pub/sub topic it
belongs to (``broker/topics.py``): ``{prefix}c:{project}:{channel}`` for a channel's
events, ``{prefix}t:{token}`` for a token's, ``{prefix}events`` for the rare ones every
node hears. Each node subscribes only to the topics of its sockets' channels and
tokens (:class:`TopicInterest`), so it decodes only the events it delivers. Topic
changes are sent in batches: one SUBSCRIBE (or UNSUBSCRIBE) for every topic that changed
in a loop turn, and one for all of them after a reconnection. Events a node publishes
one after another arrive everywhere in that order (one connection per node reads every
topic it hears, and Redis keeps a publisher's order across topics). That connection is
the broker's own (``broker/subscription.py``), not redis-py's ``PubSub``: it hands each
event to :meth:`RedisBroker._handle` as it is read.

On a Redis Cluster (``redis+cluster://``) the topics are shard channels instead:
``SPUBLISH`` reaches only the master that owns the topic's slot, and one sharded reader
per master hears this node's topics there (``broker/shards.py``).

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
import logging
import secrets
from typing import Any

import msgspec

from switchboard.exceptions import Unavailable
from switchboard.server.aio import cancel_and_wait
from switchboard.server.broker.base import EventHandler, LocalNode, PresenceChanges, StoreRoute
from switchboard.server.broker.bulk import publish_all, register
from switchboard.server.broker.events import (
    BrokerEvent,
    ChannelMessage,
    DirectMessage,
    GrantJoined,
    Heartbeat,
    NodePresence,
    TokenSubscribed,
)
from switchboard.server.broker.grants import PendingGrants
from switchboard.server.broker.partitions import shard_channel
from switchboard.server.broker.redis_presence import RedisPresence
from switchboard.server.broker.shards import HEARTBEAT_MISSED_S, ShardReaders
from switchboard.server.broker.subscription import Subscription
from switchboard.server.broker.topics import (
    SHARED,
    TopicInterest,
    node_topic,
    topic_of,
)
from switchboard.server.redis_pool import FAULTS, is_cluster_url, open_client, parse_cluster_url
from switchboard.server.redis_pool.pipeline import RawAutoPipeline
from switchboard.server.redis_pool.wire import open_connection

log = logging.getLogger("switchboard.broker")

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(BrokerEvent)

_NO_POSITION = b',"offset":null,"epoch":null}'
"""How an encoded ChannelMessage or DirectMessage without a position ends (``store_route``)."""

_RECONNECT_MAX_S = 1.0
"""The longest wait between two attempts to resubscribe to a Redis that went away."""

HEARTBEAT_S = 1.0
"""How often a node publishes a beat on its own topic (and checks it hears them)."""


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
        self._publish_script: Any = None
        self._raw: RawAutoPipeline | None = None
        """On one Redis at an address: the PUBLISHes of a loop turn, one write
        (``redis_pool/pipeline.py``); None on a cluster or behind Sentinels."""
        self._presence: RedisPresence | None = None
        self._subscription: Subscription | None = None
        """The connection that reads this node's topics (``broker/subscription.py``)."""
        self._shards: ShardReaders | None = None
        """On a Redis Cluster: the sharded pub/sub readers (``broker/shards.py``)."""
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = False
        self.events_received = 0
        """Events this node's reader decoded (it hears only its topics)."""
        self.reconnects = 0
        self._grants = PendingGrants()

    def __repr__(self) -> str:
        return f"RedisBroker(node={self.node_id!r})"

    @property
    def clustered(self) -> bool:
        return True

    @property
    def presence(self) -> RedisPresence:
        assert self._presence is not None, "the broker is not started"
        return self._presence

    def channel(self, topic: str) -> str:
        """The Redis channel of ``topic``: a shard channel on a cluster."""
        if self._shards is not None:
            return shard_channel(self.prefix, topic)
        return self.prefix + topic

    def _send(self, client: Any, event: BrokerEvent) -> Any:
        """``PUBLISH`` the event (``SPUBLISH`` on a cluster) through a client or a pipeline."""
        send = client.spublish if self._shards is not None else client.publish
        return send(self.channel(topic_of(event)), _encoder.encode(event))

    async def start(self) -> None:
        self._redis = open_client(self.url, timeout=self.timeout)
        self._publish_script = register(self._redis)
        if self.url.startswith(("redis://", "rediss://")):
            self._raw = RawAutoPipeline(self._redis, self.timeout)
        await self.ping()
        reader = self._read
        if is_cluster_url(self.url):
            self._shards = ShardReaders(
                self._redis,
                self.topics,
                prefix=self.prefix,
                node_id=self.node_id,
                password=parse_cluster_url(self.url).password,
                timeout=self.timeout,
                on_message=self._handle,
                on_gap=self._reconnected,
            )
            reader = self._read_shards
        self._presence = RedisPresence(
            self._redis,
            channel=self.channel,
            clustered=self._shards is not None,
            prefix=self.prefix,
            node_id=self.node_id,
            ttl=self.ttl,
            handler=self._handler,
            local=self._local,
            changes=self._changes,
        )
        subscribed = asyncio.Event()
        self._tasks = [
            asyncio.create_task(reader(subscribed)),
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
        if self._shards is not None:
            await self._shards.stop()
        if self._raw is not None:
            await self._raw.close()
            self._raw = None
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
            if self._raw is not None:
                await self._raw.command(
                    "PUBLISH", self.prefix + topic_of(event), _encoder.encode(event)
                )
            else:
                await self._send(self._redis, event)
        except FAULTS as exc:
            raise Unavailable(f"the broker (Redis) cannot be reached: {exc}") from exc

    async def publish_many(self, events: list[BrokerEvent]) -> None:
        sharded = self._shards is not None  # broker/bulk.py: a script, or SPUBLISH
        try:
            await publish_all(
                self._redis, self._publish_script, events, self.channel, sharded=sharded
            )
        except FAULTS as exc:
            raise Unavailable(f"the broker (Redis) cannot be reached: {exc}") from exc

    def store_route(self, event: ChannelMessage | DirectMessage) -> StoreRoute | None:
        if self._shards is not None:
            # A script on a cluster may publish only to a shard channel of its keys'
            # slot: the project's, not the topic's partition. Two round trips there.
            return None
        if event.offset is not None or event.epoch is not None:
            event = msgspec.structs.replace(event, offset=None, epoch=None)
        encoded = _encoder.encode(event)
        assert encoded.endswith(_NO_POSITION), "offset and epoch end the event"
        return StoreRoute("PUBLISH", self.prefix + topic_of(event), encoded[: -len(_NO_POSITION)])

    async def publish_grant(self, event: TokenSubscribed) -> None:
        """Publish, then wait until the nodes with the token's sockets, this one
        included, joined them to the channel (``broker/grants.py``)."""
        nodes = await self.presence.token_nodes(event.token_id)
        if self._local.token_connections(event.token_id):
            nodes.add(self.node_id)
        if not nodes:
            return await self.publish(event)
        request = f"{self.node_id}:{secrets.token_hex(8)}"
        acked = msgspec.structs.replace(event, ack=request)
        await self._grants.wait(request, nodes, lambda: self.publish(acked))

    # Delivery.

    async def _read(self, subscribed: asyncio.Event) -> None:
        """Keep a subscription to every wanted topic; after a fault, make a new one."""
        delay = 0.1
        while True:
            try:
                await self._subscribe_and_hear(subscribed)
                delay = 0.1  # it was up: the next attempt starts from the shortest wait
            except FAULTS as exc:
                log.warning(
                    "broker disconnected; reconnecting",
                    extra={"error": str(exc), "retry_in_s": delay},
                )
            self._subscription = None
            self.connected = False
            self.reconnects += 1
            self._handler.events_missed()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX_S)

    async def _subscribe_and_hear(self, subscribed: asyncio.Event) -> None:
        """One subscription, from its connection until it is lost (``broker/subscription.py``)."""
        subscription = await open_connection(
            self._redis, lambda: Subscription(self._handle, self._confirmed)
        )
        try:
            # Every topic this node wants, the shared one and its own, in one command.
            topics = [SHARED, node_topic(self.node_id), *self.topics.resubscribing()]
            subscription.subscribe([self.prefix + t for t in topics])
            self._subscription = subscription
            self.connected = True
            subscribed.set()
            # Redis may have lost this node's presence while it was away: the presence
            # task writes it again.
            self._reconnected()
            await subscription.lost
            log.warning("broker subscription lost; subscribing again")
        finally:
            subscription.close()

    def _confirmed(self, channel: bytes) -> None:
        self.topics.confirmed(channel[len(self.prefix) :].decode())

    def _handle(self, data: bytes) -> None:
        """One event from Redis, to the handler (or to a grant waiting for it)."""
        try:
            event = _decoder.decode(data)
        except msgspec.DecodeError:
            log.warning("undecodable broker event dropped")
            return
        if isinstance(event, Heartbeat):
            return
        self.events_received += 1
        if isinstance(event, GrantJoined):
            self._grants.joined(event)
        else:
            self._handler.handle(event)

    async def _read_shards(self, subscribed: asyncio.Event) -> None:
        """On a Redis Cluster: the readers of ``broker/shards.py``, which hear every
        topic this node wants, the shared one and its own included."""
        assert self._shards is not None
        self.topics.want(SHARED)
        self.topics.want(node_topic(self.node_id))
        await self._shards.run(subscribed)

    async def _change_topics(self) -> None:
        """Send the topic changes of each loop turn, batched: one SUBSCRIBE, one UNSUBSCRIBE."""
        while True:
            await self.topics.changed.wait()
            # The rest of this turn's joins and leaves come in the same batch.
            await asyncio.sleep(0)
            to_hear, to_drop = self.topics.take()
            if self._shards is not None:
                await self._shards.change(to_hear, to_drop)
                continue
            subscription = self._subscription
            if subscription is None:
                continue  # the reader resubscribes to everything wanted when it is back
            try:
                if to_drop:
                    subscription.unsubscribe([self.prefix + t for t in to_drop])
                if to_hear:
                    subscription.subscribe([self.prefix + t for t in to_hear])
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
            if self._shards is not None:
                await self._shards.beat()  # a beat per shard; each reader checks its own
                continue
            try:
                await self._redis.publish(beat, payload)
            except FAULTS:
                continue  # Redis is away: the reader sees it too
            subscription = self._subscription
            if (
                subscription is not None
                and loop.time() - subscription.heard_at > HEARTBEAT_MISSED_S
            ):
                log.warning("broker heard no heartbeat; subscribing again")
                subscription.close()  # the reader starts over

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
            **(self._shards.stats() if self._shards is not None else {}),
        }
