"""`RedisPresence`: this node's share of presence in Redis, and the other nodes' shares.

Each node keeps, under its own ID, how many of its connections each token has and how
many subscribers each channel has (hashes ``{prefix}presence:{{node}}:t`` and ``:c``),
and refreshes ``{prefix}node:{{node}}`` with a short TTL (the node's ID is their hash
tag, so on a Redis Cluster they share a slot and one transaction writes them; the set
of nodes, ``{prefix}nodes``, is written beside it there). A count is the sum over nodes
whose key is alive, so a node killed with ``kill -9`` stops counting when its key
expires, and the first reader after that sweeps its hashes away. A node that stops
cleanly deletes its own at once. A third hash, ``:m``, holds who: per channel, this
node's connections per token and its tokenless ones (JSON of
:class:`~switchboard.server.broker.events.NodePresence`); it is written with the other
two, in the same transaction, only when something changed, so a publish costs nothing
more.

Presence events (``MemberJoined``/``MemberLeft``, one when a token's first connection on
this node joins a channel or its last leaves it) are queued by the hub and published on
their channel's topic by one task in order, pipelined. Nodes with presence watches
check every second that the nodes their members are on are alive, so a killed node's
members leave within the TTL (plus that second). A node that finds its own key gone
when it writes (it stalled past the TTL, or Redis restarted empty), or whose link to
Redis came back (:meth:`RedisPresence.reconnected`), announces all its members again,
so watchers that took it for dead see them join again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from switchboard.exceptions import Unavailable
from switchboard.server.aio import wait_event
from switchboard.server.broker.base import EventHandler, LocalNode, PresenceChanges
from switchboard.server.broker.events import NodePresence
from switchboard.server.broker.topics import topic_of
from switchboard.server.redis_pool import FAULTS

log = logging.getLogger("switchboard.broker")

_encoder = msgspec.json.Encoder()
_share_decoder = msgspec.json.Decoder(NodePresence)

_WATCH_CHECK_S = 1.0
"""How often a node with presence watches checks that their members' nodes live."""


def node_key(prefix: str, node_id: str) -> str:
    """The key that says a node is alive (its TTL runs out when the node dies)."""
    return f"{prefix}node:{{{node_id}}}"


def _channel_field(project_id: str, channel_id: str) -> str:
    return f"{project_id}\x00{channel_id}"


class RedisPresence:
    """See the module docstring. ``redis`` is the broker's client, open already."""

    def __init__(
        self,
        redis: Any,
        *,
        channel: Callable[[str], str],
        clustered: bool,
        prefix: str,
        node_id: str,
        ttl: float,
        handler: EventHandler,
        local: LocalNode,
        changes: PresenceChanges,
    ) -> None:
        self._redis = redis
        self._channel = channel
        self._clustered = clustered
        """On a Redis Cluster: no transaction across slots, SPUBLISH for events."""
        self.prefix = prefix
        self.node_id = node_id
        self.ttl = ttl
        self._handler = handler
        self._local = local
        self._changes = changes
        self._announce = False
        """Set on each (re)connection: after the next presence write, announce every member."""
        self._whole = True
        """The next write writes this node's hashes whole (first, or after a gap)."""

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _node_hash(self, node: str, suffix: str) -> str:
        return f"{self.prefix}presence:{{{node}}}:{suffix}"

    def tasks(self) -> list[asyncio.Task[None]]:
        """The presence tasks, started: writing, publishing members, watching nodes."""
        return [
            asyncio.create_task(self._keep_presence()),
            asyncio.create_task(self._publish_members()),
            asyncio.create_task(self._check_watched_nodes()),
        ]

    def reconnected(self) -> None:
        """Write this node's presence again at once, then announce its members again."""
        # Presence events this node published while Redis was away are lost, and watchers
        # elsewhere may have taken it for dead: once its presence is written again, its
        # members are announced again (as they are whenever its key is found missing);
        # a join a watcher knows already changes nothing.
        self._announce = True
        self._whole = True
        self._changes.changed()

    async def leave(self) -> None:
        """A clean stop: the last member events out, this node's keys gone."""
        with contextlib.suppress(*FAULTS):
            await self._send_members()
        with contextlib.suppress(*FAULTS):
            await self._redis.delete(node_key(self.prefix, self.node_id), *self._hashes())
            await self._redis.srem(self._k("nodes"), self.node_id)

    async def _keep_presence(self) -> None:
        """Refresh this node's key, and write its counts whenever they change."""
        interval = self.ttl / 3
        while True:
            try:
                await self._write_presence()
            except FAULTS as exc:
                log.warning("presence not written", extra={"error": str(exc)})
                self._changes.changed()
                await asyncio.sleep(0.5)
                continue
            # Not wait_for or asyncio.timeout: on Python 3.11 either can swallow a
            # cancellation that lands as the timeout fires, and stop() would wait
            # forever (switchboard.server.aio).
            await wait_event(self._changes.dirty, interval)

    async def _write_presence(self) -> None:
        """Refresh this node's key and write what changed since the last write: the
        counts of the tokens and channels touched (one field each), or everything after a
        gap (first write, reconnection, this node's key found gone)."""
        tokens, channels = self._changes.take_touched()
        alive_key = node_key(self.prefix, self.node_id)
        if self._clustered:
            # Another slot than this node's keys: not in their transaction.
            await self._redis.sadd(self._k("nodes"), self.node_id)
        pipe = self._redis.pipeline(transaction=True)
        # Whether the key was still there: if not, other nodes may have taken this one
        # for dead (its key expired in a stall, or Redis restarted empty).
        pipe.exists(alive_key)
        pipe.set(alive_key, "1", px=int(self.ttl * 1000))
        if not self._clustered:
            pipe.sadd(self._k("nodes"), self.node_id)
        if self._whole:
            self._write_whole(pipe)
        else:
            self._write_touched(pipe, tokens, channels)
        try:
            was_alive = (await pipe.execute())[0]
        except BaseException:
            # Not written: the next write writes everything.
            self._whole = True
            raise
        whole, self._whole = self._whole, False
        if not was_alive and not whole:
            # Redis lost this node's hashes (or took it for dead): write them whole now.
            self._whole = True
            self._changes.changed()
        if self._announce or not was_alive:
            self._announce = False
            for event in self._local.announcements():
                self._changes.member(event)

    def _write_whole(self, pipe: Any) -> None:
        tokens, by_channel = self._local.presence_counts()
        channels = {_channel_field(p, c): n for (p, c), n in by_channel.items()}
        members = {
            _channel_field(p, c): _encoder.encode(share)
            for (p, c), share in self._local.presence_shares().items()
        }
        t_key, c_key, m_key = self._hashes()
        pipe.delete(t_key, c_key, m_key)
        if tokens:
            pipe.hset(t_key, mapping=dict(tokens))
        if channels:
            pipe.hset(c_key, mapping=channels)
        if members:
            pipe.hset(m_key, mapping=members)

    def _write_touched(self, pipe: Any, tokens: set[str], channels: set[tuple[str, str]]) -> None:
        t_key, c_key, m_key = self._hashes()
        for token_id in tokens:
            n = self._local.token_connections(token_id)
            if n:
                pipe.hset(t_key, token_id, n)
            else:
                pipe.hdel(t_key, token_id)
        for project_id, channel_id in channels:
            share = self._local.channel_share(project_id, channel_id)
            field = _channel_field(project_id, channel_id)
            n = sum(share.tokens.values()) + share.tokenless
            if n:
                pipe.hset(c_key, field, n)
                pipe.hset(m_key, field, _encoder.encode(share))
            else:
                pipe.hdel(c_key, field)
                pipe.hdel(m_key, field)

    def _hashes(self) -> tuple[str, str, str]:
        """This node's hashes: connections per token, subscribers and members per channel."""
        node = self.node_id
        return (
            self._node_hash(node, "t"),
            self._node_hash(node, "c"),
            self._node_hash(node, "m"),
        )

    async def _remote_fields(self, suffix: str, field: str) -> dict[str, bytes]:
        """``field`` of hash ``suffix`` of every other live node that has it, by node."""
        try:
            nodes = [n.decode() for n in await self._redis.smembers(self._k("nodes"))]
            others = [n for n in nodes if n != self.node_id]
            if not others:
                return {}
            pipe = self._redis.pipeline(transaction=False)
            for node in others:
                pipe.exists(node_key(self.prefix, node))
                pipe.hget(self._node_hash(node, suffix), field)
            replies = await pipe.execute()
        except FAULTS as exc:
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

    async def token_nodes(self, token_id: str) -> set[str]:
        """The other live nodes where the token has connections."""
        return set(await self._remote_fields("t", token_id))

    async def _remote_sum(self, suffix: str, field: str) -> int:
        """The count ``field`` summed over every other live node."""
        return sum(int(v) for v in (await self._remote_fields(suffix, field)).values())

    async def _sweep(self, dead: list[str]) -> None:
        """Forget nodes whose key expired (they died without cleaning up)."""
        with contextlib.suppress(*FAULTS):
            pipe = self._redis.pipeline(transaction=False)
            for node in dead:
                pipe.srem(self._k("nodes"), node)
                pipe.delete(*(self._node_hash(node, s) for s in ("t", "c", "m")))
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
            channel = self._channel(topic_of(event))
            if self._clustered:
                pipe.spublish(channel, _encoder.encode(event))
            else:
                pipe.publish(channel, _encoder.encode(event))
        await pipe.execute()

    async def _publish_members(self) -> None:
        """Publish presence events in the order the hub queued them, a batch per wakeup."""
        while True:
            await self._changes.members_queued.wait()
            try:
                await self._send_members()
            except FAULTS as exc:
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
                    pipe.exists(node_key(self.prefix, node))
                alive = await pipe.execute()
            except FAULTS:
                continue  # Redis is away: nobody can tell; try again next time
            for node, live in zip(nodes, alive, strict=True):
                if not live:
                    self._handler.node_gone(node)
