"""`Hub`: this node's live connections, by channel and by token, and the fan-out.

The hot path (DESIGN §3): a publish is encoded once per wire variant, then the same
bytes are queued for every subscriber in one pass, with no ``await`` per recipient, and
written once per socket per loop turn (:mod:`~switchboard.server.fanout.connection`,
which also holds the backpressure policy, ``close_slow``). Per-channel order is publish
order because nothing yields between the queueing.

The hub knows nothing of HTTP, storage or the Leap handshake: the edge gives it
:class:`Connection` objects, and the dispatch (``fanout/dispatch.py``) carries out the
broker's events through it. It tells the broker what changed in its presence through
the :class:`PresenceChanges` it is given, and answers the broker's questions about
this node (it is the broker's :class:`~switchboard.server.broker.base.LocalNode`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass, field
from typing import TypeVar

from switchboard.exceptions import Unavailable
from switchboard.server.broker import events as ev
from switchboard.server.broker.base import PresenceChanges, PresenceCounts
from switchboard.server.broker.events import NodePresence
from switchboard.server.broker.topics import TopicInterest, channel_topic, token_topic
from switchboard.server.fanout.activity import Activity
from switchboard.server.fanout.connection import Coalescer, Connection, Outgoing
from switchboard.server.fanout.holds import Hold, Holds, Key, inbox_key
from switchboard.server.fanout.presence import Occupancy, Presence, announcements

log = logging.getLogger("switchboard.hub")

GRANT_WAIT_S = 5.0
"""How long a backend's grant waits for its channel's topic before it joins anyway."""

_K = TypeVar("_K")


def _discard(index: dict[_K, set[Connection]], key: _K, conn: Connection) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(conn)
        if not members:
            del index[key]


@dataclass(frozen=True, slots=True)
class HubStats:
    connections: int
    tokens_online: int
    channels_with_subscribers: int
    subscriptions: int
    pending_bytes: int
    messages_published: int
    deliveries: int
    closed_slow: int
    direct_messages: int = 0
    bytes_written: int = 0
    """WebSocket bytes (frame headers included) handed to socket transports."""
    connections_by_scope: dict[str, int] = field(default_factory=dict)
    close_codes: dict[int, int] = field(default_factory=dict)
    """Close codes this node sent, counted when it starts a close (see the edge)."""


@dataclass(frozen=True, slots=True)
class ProjectFigures:
    """One project's sockets on this node (the console's overview)."""

    clients: int
    """Connections of Leap clients (with a token or none)."""
    consoles: int
    """Connections made with a project token (the console's own)."""
    tokens_online: int
    channels_active: int
    """Channels with at least one client connection here."""


class Hub:
    """See the module docstring.

    ``changes`` gets presence news for the broker; ``topics`` counts the topics this
    node's sockets need (one per membership of a channel, one per connection of a token);
    ``occupancy`` (the webhooks') is
    called with (project, ``t`` or ``c``, token or channel, ±1) when a token's first
    connection here is attached or its last detached, and when a channel gets its
    first subscriber here or loses its last.
    """

    def __init__(
        self,
        *,
        max_buffered_bytes: int,
        node_id: str = "local",
        changes: PresenceChanges | None = None,
        topics: TopicInterest | None = None,
        occupancy: Occupancy | None = None,
    ) -> None:
        self.node_id = node_id
        self.topics = TopicInterest(hears_everything=True) if topics is None else topics
        """What this node must hear: a channel's topic per membership, a token's per
        attached connection (``broker/topics.py``)."""
        self.writer = Coalescer(max_buffered_bytes)
        self.changes = PresenceChanges() if changes is None else changes
        self._occupancy = occupancy
        self.connections: dict[str, Connection] = {}
        self._by_channel: dict[Key, set[Connection]] = {}
        self._by_token: dict[str, set[Connection]] = {}
        self._identifying: dict[str, set[Connection]] = {}
        """Connections whose IDENTIFY is looking their token up, not attached yet."""
        self.holds = Holds(self._rejoin)
        self._granting: set[tuple[str, str]] = set()
        """(connection, channel) of grants waiting for their topic (join_when_heard)."""
        self._grant_tasks: set[asyncio.Task[None]] = set()
        self.presence = Presence(node_id, self.changes.member, self._send_to, occupancy)
        """Who is subscribed where on this node, and the presence watches."""
        self.activity = Activity()
        """Messages per project per second, for the console's overview."""
        self.messages_published = 0
        self.direct_messages = 0
        self.deliveries = 0
        self.close_codes: collections.Counter[int] = collections.Counter()
        """Close codes sent, by code; the edge counts each close it starts."""

    @staticmethod
    def _send_to(conns: list[Connection], payload: bytes) -> None:
        frame = Outgoing(payload)
        for conn in conns:
            conn.send(frame)

    # Membership.

    def attach(self, conn: Connection) -> None:
        self.connections[conn.cid] = conn
        if conn.token_id is not None:
            self.topics.want(token_topic(conn.token_id))
            members = self._by_token.setdefault(conn.token_id, set())
            members.add(conn)
            if len(members) == 1 and self._occupancy is not None:
                self._occupancy(conn.project_id, "t", conn.token_id, 1)
            self.changes.token_touched(conn.token_id)

    def detach(self, conn: Connection) -> None:
        if self.connections.pop(conn.cid, None) is None:
            return
        for channel_id in conn.channels:
            _discard(self._by_channel, (conn.project_id, channel_id), conn)
            if self.holds:
                self.holds.left(conn, channel_id)
            self.presence.left(conn, channel_id)
            self.topics.release(channel_topic(conn.project_id, channel_id))
            self.changes.channel_touched((conn.project_id, channel_id))
        conn.channels.clear()
        if conn.token_id is not None:
            if self.holds:
                self.holds.left_key(conn, inbox_key(conn.project_id, conn.token_id))
            self.topics.release(token_topic(conn.token_id))
            _discard(self._by_token, conn.token_id, conn)
            if conn.token_id not in self._by_token and self._occupancy is not None:
                self._occupancy(conn.project_id, "t", conn.token_id, -1)
            self.changes.token_touched(conn.token_id)

    def watch_token(self, conn: Connection, token_id: str) -> None:
        """``conn`` is about to look ``token_id`` up: if it is deleted, close ``conn``.

        An IDENTIFY awaits the store (and, in a cluster, Redis) before the connection is
        attached, and the token's deletion may be carried out meanwhile. Without this,
        the connection would miss the deletion's event and live on with a deleted token.
        """
        self._identifying.setdefault(token_id, set()).add(conn)

    def unwatch_token(self, conn: Connection, token_id: str) -> None:
        _discard(self._identifying, token_id, conn)

    def identifying(self, token_id: str) -> list[Connection]:
        """Connections whose IDENTIFY is looking ``token_id`` up right now."""
        return list(self._identifying.get(token_id, ()))

    def join(self, conn: Connection, channel_id: str) -> None:
        if conn.cid not in self.connections:
            return
        if channel_id not in conn.channels:
            conn.channels.add(channel_id)
            self.topics.want(channel_topic(conn.project_id, channel_id))
            self.presence.joined(conn, channel_id)
            self.changes.channel_touched((conn.project_id, channel_id))
        key = (conn.project_id, channel_id)
        if not (self.holds and self.holds.holding(key, conn)):
            self._by_channel.setdefault(key, set()).add(conn)

    def leave(self, conn: Connection, channel_id: str) -> bool:
        if channel_id not in conn.channels:
            return False
        conn.channels.discard(channel_id)
        _discard(self._by_channel, (conn.project_id, channel_id), conn)
        if self.holds:
            self.holds.left(conn, channel_id)
        self.presence.left(conn, channel_id)
        self.topics.release(channel_topic(conn.project_id, channel_id))
        self.changes.channel_touched((conn.project_id, channel_id))
        return True

    # A backend's grant, joined once the channel's topic is heard.

    def join_when_heard(
        self, conns: list[Connection], channel_id: str, frame: Outgoing, ack: str | None = None
    ) -> None:
        """Join ``conns`` (one project's) to ``channel_id`` and send them ``frame`` (their
        ``AVAILABLE``) once this node hears the channel's topic: nothing published after
        the AVAILABLE may be missed. :meth:`revoke_grant` cancels it for one connection.
        ``ack``: the grant's request, answered once they are joined."""
        for conn in conns:
            self._granting.add((conn.cid, channel_id))
        task = asyncio.get_running_loop().create_task(
            self._join_when_heard(conns, channel_id, frame, ack)
        )
        self._grant_tasks.add(task)
        task.add_done_callback(self._grant_tasks.discard)

    async def _join_when_heard(
        self, conns: list[Connection], channel_id: str, frame: Outgoing, ack: str | None
    ) -> None:
        topic = channel_topic(conns[0].project_id, channel_id)
        try:
            async with self.topics.listening([topic], GRANT_WAIT_S):
                self._grant(conns, channel_id, frame)
        except Unavailable:
            # Redis is away: the grant stands (what is published meanwhile is lost
            # anyway, as for every socket of this node).
            log.warning("grant joined before its topic was heard", extra={"topic": topic})
            self._grant(conns, channel_id, frame)
        if ack is not None:
            self.changes.grant_joined(ack, self.node_id)

    def _grant(self, conns: list[Connection], channel_id: str, frame: Outgoing) -> None:
        for conn in conns:
            if (conn.cid, channel_id) not in self._granting:
                continue  # revoked meanwhile
            self._granting.discard((conn.cid, channel_id))
            if conn.cid in self.connections and not conn.closing:
                self.join(conn, channel_id)
                conn.send(frame)

    def revoke_grant(self, conn: Connection, channel_id: str) -> None:
        """A grant not yet joined (see :meth:`join_when_heard`) was taken back."""
        self._granting.discard((conn.cid, channel_id))

    # History recovery (fanout/holds.py).

    def hold(self, conn: Connection, channel_id: str) -> Hold:
        """Hold ``conn``'s live frames of ``channel_id`` (which it must have joined) until
        :meth:`release`."""
        hold = self.holds.hold(conn, channel_id)
        _discard(self._by_channel, (conn.project_id, channel_id), conn)
        return hold

    def hold_inbox(self, conn: Connection) -> Hold:
        """Hold the direct messages of ``conn``'s token for it until :meth:`release`; it
        stays among the token's connections (the dispatch leaves it out meanwhile)."""
        return self.holds.hold_inbox(conn)

    def release(
        self, hold: Hold, replay: list[bytes], through: int | None, epoch: str | None
    ) -> None:
        """See :meth:`Holds.release`."""
        self.holds.release(hold, replay, through, epoch)

    def _rejoin(self, conn: Connection, key: Key) -> None:
        if conn.cid in self.connections:
            self._by_channel.setdefault(key, set()).add(conn)

    # Fan-out.

    def broadcast(
        self, project_id: str, channel_id: str, payload: bytes, exclude_cid: str | None = None
    ) -> int:
        """Write one dispatch to every subscriber of a channel; return how many got it."""
        members = self._by_channel.get((project_id, channel_id))
        if not members:
            return 0
        frame = Outgoing(payload)
        count = 0
        # A slow consumer is closed (and leaves the set) while we iterate: copy first.
        for conn in list(members):
            if conn.cid != exclude_cid:
                conn.send(frame)
                count += 1
        self.deliveries += count
        return count

    def channel_members(self, project_id: str, channel_id: str) -> list[Connection]:
        """The channel's subscribers in its fan-out set (not those held), as a copy."""
        return list(self._by_channel.get((project_id, channel_id), ()))

    def token_members(self, project_id: str, token_id: str) -> list[Connection]:
        return [c for c in self._by_token.get(token_id, ()) if c.project_id == project_id]

    @property
    def token_sockets(self) -> dict[str, set[Connection]]:
        """Each token's connections here, by token ID, of any project (not to be changed:
        a dispatch to many tokens looks them up without a call per token)."""
        return self._by_token

    def close_all(self, code: int, reason: str) -> None:
        for conn in list(self.connections.values()):
            conn.close(code, reason)

    # What the broker reads (LocalNode).

    def token_connections(self, token_id: str) -> int:
        return len(self._by_token.get(token_id, ()))

    def channel_connections(self, project_id: str, channel_id: str) -> int:
        members = self._by_channel.get((project_id, channel_id), ())
        return sum(1 for conn in members if conn.scope != "project")

    def presence_counts(self) -> PresenceCounts:
        tokens: collections.Counter[str] = collections.Counter()
        channels: collections.Counter[Key] = collections.Counter()
        for conn in self.connections.values():
            if conn.token_id is not None:
                tokens[conn.token_id] += 1
            if conn.scope != "project":
                for channel_id in conn.channels:
                    channels[(conn.project_id, channel_id)] += 1
        return tokens, channels

    def channel_share(self, project_id: str, channel_id: str) -> NodePresence:
        return self.presence.local(project_id, channel_id)

    def presence_shares(self) -> dict[Key, NodePresence]:
        return self.presence.all_local()

    def announcements(self) -> list[ev.MemberJoined]:
        return announcements(self.connections.values(), self.node_id)

    def watched_nodes(self) -> set[str]:
        return self.presence.remote_nodes()

    # Figures.

    def project_figures(self, project_id: str) -> ProjectFigures:
        """Walks every connection: for the console's overview, never the hot path."""
        clients = consoles = 0
        online: set[str] = set()
        active: set[str] = set()
        for conn in self.connections.values():
            if conn.project_id != project_id:
                continue
            if conn.scope == "project":
                consoles += 1
                continue
            clients += 1
            if conn.token_id is not None:
                online.add(conn.token_id)
            active.update(conn.channels)
        return ProjectFigures(clients, consoles, len(online), len(active))

    def stats(self) -> HubStats:
        return HubStats(
            connections=len(self.connections),
            tokens_online=len(self._by_token),
            channels_with_subscribers=len(self._by_channel),
            subscriptions=sum(len(m) for m in self._by_channel.values()),
            pending_bytes=sum(
                c.transport.get_write_buffer_size() for c in self.connections.values()
            ),
            messages_published=self.messages_published,
            deliveries=self.deliveries,
            closed_slow=self.writer.closed_slow,
            direct_messages=self.direct_messages,
            bytes_written=self.writer.bytes_written,
            connections_by_scope=dict(
                collections.Counter(c.scope for c in self.connections.values())
            ),
            close_codes=dict(self.close_codes),
        )
