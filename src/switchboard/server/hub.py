"""`Hub`: this node's live connections, by channel and by token, and the fan-out.

The hot path (DESIGN §3): a publish is encoded once per wire variant (JSON text, and
zlib binary if anyone asked for it), then the same bytes are queued for every
subscriber in one pass, with no ``await`` per recipient. Per-channel order is publish
order because nothing yields between the queueing.

Writes are coalesced per socket per loop turn: a frame goes on the connection's queue,
and once per turn of the event loop the hub writes each queue with one
``transport.write`` call. Under load several publishes land in one turn, and the
kernel's per-write cost (most of a fan-out's CPU, by the profile) is paid once per socket
instead of once per frame. Every frame to a connection goes through its queue, so a
client sees frames in the order they were sent.

Backpressure policy ``close_slow``: a connection whose unsent bytes pass
``max_buffered_bytes`` is closed with 4000 at once; nobody else waits for it. The count
is in :meth:`Hub.stats`.

The hub knows nothing of HTTP, storage or the Leap handshake; the gateway gives it
:class:`Connection` objects and the broker gives it events.
"""

from __future__ import annotations

import asyncio
import collections
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from switchboard.server.activity import Activity
from switchboard.server.broker import events as ev
from switchboard.server.history import NoHistoryCache
from switchboard.server.presence import Presence
from switchboard.server.protocol import frames
from switchboard.server.protocol.frames import CloseCode

_TEXT = 0x1
_BINARY = 0x2

QUEUE_FLUSH_BYTES = 64 * 1024
"""A socket's queue is written before the end of the turn once it holds this much."""


def ws_frame(payload: bytes, opcode: int) -> bytes:
    """One unmasked, unfragmented WebSocket frame (a server never masks)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, n))
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return header + payload


class Outgoing:
    """One server frame, built lazily once per wire variant and shared by every recipient."""

    __slots__ = ("_text", "_zlib", "payload")

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self._text: bytes | None = None
        self._zlib: bytes | None = None

    def wire(self, compressed: bool) -> bytes:
        if compressed:
            if self._zlib is None:
                self._zlib = ws_frame(zlib.compress(self.payload), _BINARY)
            return self._zlib
        if self._text is None:
            self._text = ws_frame(self.payload, _TEXT)
        return self._text


class Transport(Protocol):
    """The slice of :class:`asyncio.Transport` a connection writes through."""

    def write(self, data: bytes | bytearray) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def is_closing(self) -> bool: ...


class Connection:
    """One identified Leap connection, as the hub sees it.

    The gateway subclasses it to say how a close and an expiry change are carried out.
    """

    __slots__ = (
        "_queued",
        "channels",
        "cid",
        "closing",
        "compressed",
        "hub",
        "metadata",
        "project_id",
        "scope",
        "token_id",
        "transport",
    )

    def __init__(
        self,
        hub: Hub,
        transport: Transport,
        *,
        cid: str,
        project_id: str,
        token_id: str | None,
        scope: str,
        compressed: bool,
    ) -> None:
        self.hub = hub
        self.transport = transport
        self.cid = cid
        self.project_id = project_id
        self.token_id = token_id
        self.scope = scope
        """``token``, ``project`` or ``noauth``."""
        self.compressed = compressed
        self.metadata: msgspec.Raw | None = None
        """The token's state (for presence), set by the gateway; ``None`` without one."""
        self.channels: set[str] = set()
        self.closing = False
        # Frames waiting for this loop turn's write, None when nothing is queued. Bytes,
        # not a list: a list per socket per turn would be garbage for the cyclic GC to
        # track, hundreds of thousands of times a second under load.
        self._queued: bytes | bytearray | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.cid} {self.scope} channels={len(self.channels)}>"

    def send(self, frame: Outgoing) -> None:
        """Queue one frame; it is written at the end of this turn of the event loop."""
        if self.closing:
            return
        data = frame.wire(self.compressed)
        queued = self._queued
        if queued is None:
            # The shared frame itself, not a copy: the usual turn has one frame per socket.
            self._queued = data
            self.hub.write_later(self)
        elif isinstance(queued, bytearray):
            queued += data
            if len(queued) >= QUEUE_FLUSH_BYTES:
                # A burst (a backlog of events read in one turn) is written as it comes, so
                # the slow-consumer cap still bounds every socket's memory.
                self.write_queued()
        else:
            self._queued = bytearray(queued) + data

    def write_queued(self) -> None:
        """Write the queued frames in one call; close with 4000 if the peer is too far behind."""
        self.hub.bytes_written += self._write_queued()

    def _write_queued(self) -> int:
        """:meth:`write_queued`, returning the bytes written instead of counting them.

        :meth:`Hub.write_all` sums the result in a local and adds it to the hub's counter
        once per turn: an attribute update per socket would be paid per recipient.
        """
        queued = self._queued
        if queued is None:
            return 0
        self._queued = None
        transport = self.transport
        if self.closing or transport.is_closing():
            return 0
        transport.write(queued)
        if transport.get_write_buffer_size() > self.hub.max_buffered_bytes:
            self.hub.closed_slow += 1
            self.close(CloseCode.UNKNOWN_ERROR, "slow consumer: too many unsent bytes")
        return len(queued)

    def send_payload(self, payload: bytes) -> None:
        self.send(Outgoing(payload))

    def close(self, code: int, reason: str) -> None:
        """Close with ``code``. Overridden by the gateway; the base writes what is queued."""
        self.write_queued()
        self.closing = True

    def expiry_changed(self, expires_at: str | None) -> None:
        """The token's ``expires_at`` changed. Overridden by the gateway."""


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
    """Close codes this node sent, counted when it starts a close (see the gateway)."""


def leap_channel(project_id: str, channel_id: str, channel_type: str, state: Any) -> dict[str, Any]:
    """The LeapChannel object of INIT and AVAILABLE."""
    return {
        "id": channel_id,
        "project_id": project_id,
        "type": channel_type,
        "state": state,
        "capabilities": 0,
    }


_UNAVAILABLE_GRACEFUL = msgspec.json.encode({"graceful": True})


class Hold:
    """One connection's live frames of one channel, held while its history is replayed.

    Made by :meth:`Hub.hold` and ended by :meth:`Hub.release` (history recovery, Switchboard's).
    While held the connection is out of the channel's fan-out set, so the broadcast path
    does no per-recipient work for it; the hub queues what the channel broadcasts here,
    with each message's offset, and :meth:`Hub.release` writes the replay first, then
    these, without the ones the replay holds.

    A release does not always end the hold. A message is written to the history before
    its broadcast reaches the hub (a group commit, a Redis round trip), so the replay may
    carry a message whose live copy is still on its way. Until a live message past the
    replay's last offset arrives (or :data:`CATCH_UP_S` passes), the hold stays in
    *catch-up*: each live frame is sent on at once, unless the replay had it.
    """

    __slots__ = ("buffer", "channel_id", "conn", "ended", "epoch", "through", "timer")

    def __init__(self, conn: Connection, channel_id: str) -> None:
        self.conn = conn
        self.channel_id = channel_id
        self.buffer: list[tuple[int | None, str | None, bytes]] = []
        """(offset, epoch, payload) of each frame the channel broadcast meanwhile."""
        self.ended = False
        """The subscription ended meanwhile (channel deleted, grant removed, closed)."""
        self.through: int | None = None
        self.epoch: str | None = None
        """Set at the release: the replay's last offset and its epoch (see catch-up)."""
        self.timer: asyncio.TimerHandle | None = None
        """Set in catch-up: ends it after :data:`CATCH_UP_S` whatever arrived."""

    @property
    def catching_up(self) -> bool:
        return self.timer is not None

    def had(self, offset: int | None, epoch: str | None) -> bool:
        """The client has this message already (the replay carried it, or its position)."""
        through = self.through
        return (
            through is not None and offset is not None and offset <= through and epoch == self.epoch
        )


def _past(hold: Hold, offset: int | None, epoch: str | None) -> bool:
    """A live message at or past the replay's last one, or of another epoch: what is
    live from here on was never in the replay, so the catch-up can end."""
    through = hold.through
    return offset is not None and through is not None and (epoch != hold.epoch or offset >= through)


CATCH_UP_S = 5.0
"""How long a released :class:`Hold` waits at most for the live copy of the replay's last
message. Longer than any broadcast takes to follow its history write; the connection
gets every live frame meanwhile, so the wait only costs the hub a per-hold check."""


class Hub:
    """See the module docstring."""

    def __init__(self, *, max_buffered_bytes: int) -> None:
        self.max_buffered_bytes = max_buffered_bytes
        self.connections: dict[str, Connection] = {}
        self._by_channel: dict[tuple[str, str], set[Connection]] = {}
        self._by_token: dict[str, set[Connection]] = {}
        self._identifying: dict[str, set[Connection]] = {}
        """Connections whose IDENTIFY is looking their token up, not attached yet."""
        self._held: dict[tuple[str, str], list[Hold]] = {}
        """Channels whose live frames are held for some connections (see :class:`Hold`)."""
        self.messages_published = 0
        self.direct_messages = 0
        self.deliveries = 0
        self.closed_slow = 0
        self.bytes_written = 0
        self.close_codes: collections.Counter[int] = collections.Counter()
        """Close codes sent, by code; the gateway counts each close it starts."""
        self.activity = Activity()
        """Messages per project per second, for the console's overview."""
        self.on_presence_change: Callable[[], None] | None = None
        """Called after any change to who is connected or subscribed (the broker's hook)."""
        self.node_id = "local"
        """This node's ID in presence events (the Redis broker sets its own)."""
        self.on_member_change: Callable[[ev.MemberJoined | ev.MemberLeft], None] | None = None
        """Called when a token's first connection here joins a channel or its last leaves
        (the broker's hook: it carries the event to every node)."""
        self.presence = Presence(lambda: self.node_id, self._member_changed, self._send_to)
        """Who is subscribed where on this node, and the presence watches."""
        self.no_history = NoHistoryCache()
        """Channels known to keep no history (the service's; kept right by the events)."""
        self.on_occupancy: Callable[[str, str, str, int], None] | None = None
        """Called with (project, ``t``, token, ±1) when a token's first connection here
        is attached or its last detached (the webhooks' hook; channels: Presence's)."""
        self._to_write: list[Connection] = []
        self._write_scheduled = False

    # Writes.

    def write_later(self, conn: Connection) -> None:
        """Write ``conn``'s queue at the end of this loop turn (see the module docstring)."""
        self._to_write.append(conn)
        if not self._write_scheduled:
            self._write_scheduled = True
            asyncio.get_running_loop().call_soon(self.write_all)

    def write_all(self) -> None:
        """Write every connection's queued frames now, one ``write`` per connection."""
        self._write_scheduled = False
        to_write, self._to_write = self._to_write, []
        written = 0
        for conn in to_write:
            written += conn._write_queued()
        self.bytes_written += written

    def _presence_changed(self) -> None:
        if self.on_presence_change is not None:
            self.on_presence_change()

    def _member_changed(self, event: ev.MemberJoined | ev.MemberLeft) -> None:
        if self.on_member_change is not None:
            self.on_member_change(event)

    @staticmethod
    def _send_to(conns: list[Connection], payload: bytes) -> None:
        frame = Outgoing(payload)
        for conn in conns:
            conn.send(frame)

    # Membership.

    def attach(self, conn: Connection) -> None:
        self.connections[conn.cid] = conn
        if conn.token_id is not None:
            members = self._by_token.setdefault(conn.token_id, set())
            members.add(conn)
            if len(members) == 1 and self.on_occupancy is not None:
                self.on_occupancy(conn.project_id, "t", conn.token_id, 1)
        self._presence_changed()

    def detach(self, conn: Connection) -> None:
        if self.connections.pop(conn.cid, None) is None:
            return
        for channel_id in conn.channels:
            self._discard(self._by_channel, (conn.project_id, channel_id), conn)
            if self._held:
                self._end_holds_of(conn, channel_id)
            self.presence.left(conn, channel_id)
        conn.channels.clear()
        if conn.token_id is not None:
            self._discard(self._by_token, conn.token_id, conn)
            if conn.token_id not in self._by_token and self.on_occupancy is not None:
                self.on_occupancy(conn.project_id, "t", conn.token_id, -1)
        self._presence_changed()

    def watch_token(self, conn: Connection, token_id: str) -> None:
        """``conn`` is about to look ``token_id`` up: if it is deleted, close ``conn``.

        An IDENTIFY awaits the store (and, in a cluster, Redis) before the connection is
        attached, and the token's deletion may be carried out meanwhile. Without this,
        the connection would miss the deletion's event and live on with a deleted token.
        """
        self._identifying.setdefault(token_id, set()).add(conn)

    def unwatch_token(self, conn: Connection, token_id: str) -> None:
        self._discard(self._identifying, token_id, conn)

    def join(self, conn: Connection, channel_id: str) -> None:
        if conn.cid not in self.connections:
            return
        if channel_id not in conn.channels:
            conn.channels.add(channel_id)
            self.presence.joined(conn, channel_id)
        key = (conn.project_id, channel_id)
        if not (self._held and self._holding(key, conn)):
            self._by_channel.setdefault(key, set()).add(conn)
        self._presence_changed()

    # History recovery: holding a channel's live frames for one connection.

    def hold(self, conn: Connection, channel_id: str) -> Hold:
        """Hold ``conn``'s live frames of ``channel_id`` (which it must have joined)
        until :meth:`release`; see :class:`Hold`."""
        key = (conn.project_id, channel_id)
        hold = Hold(conn, channel_id)
        self._held.setdefault(key, []).append(hold)
        members = self._by_channel.get(key)
        if members is not None:
            members.discard(conn)
            if not members:
                del self._by_channel[key]
        return hold

    def release(
        self, hold: Hold, replay: list[bytes], through: int | None, epoch: str | None
    ) -> None:
        """Queue ``replay``, then the held frames, with no await in between; then put the
        connection back in the channel's fan-out set, at once or after a catch-up (see
        :class:`Hold`). Idempotent.

        A message of ``epoch`` at or below offset ``through`` is in the replay (or the
        client had it) and is left out, held or live. Nothing is queued if the
        subscription ended meanwhile.
        """
        conn = hold.conn
        key = (conn.project_id, hold.channel_id)
        holds = self._held.get(key)
        if holds is None or hold not in holds or hold.catching_up:
            return  # released already
        if hold.ended or conn.closing or hold.channel_id not in conn.channels:
            self._end_hold(key, hold)
            return
        for payload in replay:
            conn.send_payload(payload)
        hold.through, hold.epoch = through, epoch
        caught_up = through is None
        for offset, message_epoch, payload in hold.buffer:
            if not hold.had(offset, message_epoch):
                conn.send_payload(payload)
            caught_up = caught_up or _past(hold, offset, message_epoch)
        hold.buffer = []
        if caught_up:
            self._end_hold(key, hold)
        else:
            loop = asyncio.get_running_loop()
            hold.timer = loop.call_later(CATCH_UP_S, self._end_hold, key, hold)

    def _end_hold(self, key: tuple[str, str], hold: Hold) -> None:
        """Forget ``hold`` and, if the subscription lives on, rejoin the fan-out set."""
        if hold.timer is not None:
            hold.timer.cancel()
            hold.timer = None
        holds = self._held.get(key)
        if holds is None or hold not in holds:
            return
        holds.remove(hold)
        if not holds:
            del self._held[key]
        conn = hold.conn
        if (
            not hold.ended
            and not conn.closing
            and hold.channel_id in conn.channels
            and conn.cid in self.connections
            and not self._holding(key, conn)
        ):
            self._by_channel.setdefault(key, set()).add(conn)

    def _end_holds_of(self, conn: Connection, channel_id: str) -> None:
        """``conn`` left ``channel_id``: its holds there end (a pending release sends nothing)."""
        key = (conn.project_id, channel_id)
        for hold in list(self._held.get(key, ())):
            if hold.conn is conn:
                hold.ended = True
                if hold.catching_up:
                    self._end_hold(key, hold)

    def _holding(self, key: tuple[str, str], conn: Connection) -> bool:
        return any(h.conn is conn for h in self._held.get(key, ()))

    def _buffer_held(
        self,
        key: tuple[str, str],
        payload: bytes,
        offset: int | None = None,
        epoch: str | None = None,
        exclude_cid: str | None = None,
    ) -> None:
        """A frame the channel broadcast: held, or sent on by a hold in catch-up."""
        for hold in list(self._held.get(key, ())):
            if hold.conn.cid == exclude_cid or hold.ended:
                continue
            if not hold.catching_up:
                hold.buffer.append((offset, epoch, payload))
                continue
            if not hold.had(offset, epoch):
                hold.conn.send_payload(payload)
            if _past(hold, offset, epoch):
                self._end_hold(key, hold)

    def leave(self, conn: Connection, channel_id: str) -> bool:
        if channel_id not in conn.channels:
            return False
        conn.channels.discard(channel_id)
        self._discard(self._by_channel, (conn.project_id, channel_id), conn)
        if self._held:
            self._end_holds_of(conn, channel_id)
        self.presence.left(conn, channel_id)
        self._presence_changed()
        return True

    @staticmethod
    def _discard(index: dict[Any, set[Connection]], key: Any, conn: Connection) -> None:
        members = index.get(key)
        if members is not None:
            members.discard(conn)
            if not members:
                del index[key]

    # Presence.

    def token_connections(self, token_id: str) -> int:
        return len(self._by_token.get(token_id, ()))

    def channel_connections(self, project_id: str, channel_id: str) -> int:
        members = self._by_channel.get((project_id, channel_id), ())
        return sum(1 for conn in members if conn.scope != "project")

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

    def _token_members(self, project_id: str, token_id: str) -> Iterable[Connection]:
        return [c for c in self._by_token.get(token_id, ()) if c.project_id == project_id]

    def handle(self, event: ev.BrokerEvent) -> None:
        """Carry out one broker event on this node."""
        if isinstance(event, ev.ChannelMessage):
            self.messages_published += 1
            self.activity.count(event.project_id)
            message: dict[str, Any] = {"e": event.event, "d": event.data}
            if event.offset is not None:
                # Only channels with history (an opt-in): Hop's clients read e and d.
                message["offset"] = event.offset
                message["epoch"] = event.epoch
            payload = frames.dispatch(event.channel_id, "MESSAGE", message, unicast=False)
            self.broadcast(event.project_id, event.channel_id, payload, event.exclude_cid)
            if self._held:  # once per publish, never per recipient
                self._buffer_held(
                    (event.project_id, event.channel_id),
                    payload,
                    event.offset,
                    event.epoch,
                    event.exclude_cid,
                )
        elif isinstance(event, ev.DirectMessage):
            self.activity.count(event.project_id)
            payload = frames.dispatch(
                None, "DIRECT_MESSAGE", {"e": event.event, "d": event.data}, unicast=False
            )
            self.direct_messages += 1
            frame = Outgoing(payload)
            for conn in self._token_members(event.project_id, event.token_id):
                conn.send(frame)
                self.deliveries += 1
        elif isinstance(event, ev.ChannelStateChanged):
            payload = frames.dispatch(
                event.channel_id, "STATE_UPDATE", {"state": event.state}, unicast=False
            )
            self.broadcast(event.project_id, event.channel_id, payload)
            if self._held:
                self._buffer_held((event.project_id, event.channel_id), payload)
        elif isinstance(event, ev.ChannelDeleted):
            key = (event.project_id, event.channel_id)
            self.no_history.forget(key)
            payload = frames.dispatch(
                event.channel_id, "UNAVAILABLE", msgspec.Raw(_UNAVAILABLE_GRACEFUL), unicast=False
            )
            frame = Outgoing(payload)
            self.presence.drop_channel(key)
            for hold in list(self._held.get(key, ())):
                # Its replay and held frames are of the channel now deleted: dropped.
                hold.ended = True
                self.leave(hold.conn, event.channel_id)
                hold.conn.send(frame)
            for conn in list(self._by_channel.get(key, ())):
                self.leave(conn, event.channel_id)
                conn.send(frame)
        elif isinstance(event, ev.TokenSubscribed):
            payload = frames.dispatch(
                event.channel_id,
                "AVAILABLE",
                {
                    "channel": leap_channel(
                        event.project_id, event.channel_id, event.channel_type, event.state
                    )
                },
                unicast=False,
            )
            frame = Outgoing(payload)
            for conn in self._token_members(event.project_id, event.token_id):
                if conn.cid == event.origin_cid:
                    continue
                self.join(conn, event.channel_id)
                conn.send(frame)
        elif isinstance(event, ev.TokenUnsubscribed):
            payload = frames.dispatch(
                event.channel_id, "UNAVAILABLE", msgspec.Raw(_UNAVAILABLE_GRACEFUL), unicast=False
            )
            frame = Outgoing(payload)
            for conn in self._token_members(event.project_id, event.token_id):
                if self.leave(conn, event.channel_id) and conn.cid != event.origin_cid:
                    conn.send(frame)
        elif isinstance(event, ev.TokenUpdated):
            payload = frames.dispatch(
                None, "TOKEN_STATE_UPDATE", {"state": event.state}, unicast=False
            )
            frame = Outgoing(payload)
            for conn in self._token_members(event.project_id, event.token_id):
                if event.state_changed:
                    conn.metadata = event.state
                    conn.send(frame)
                conn.expiry_changed(event.expires_at)
            if event.state_changed:
                self.presence.token_state(event.token_id, event.state)
        elif isinstance(event, ev.TokenDeleted):
            for conn in self._token_members(event.project_id, event.token_id):
                conn.close(CloseCode.INVALID_AUTH, "token deleted")
            # Token IDs are unique across projects, so no project check is needed here.
            for conn in list(self._identifying.get(event.token_id, ())):
                conn.close(CloseCode.INVALID_AUTH, "token deleted")
        elif isinstance(event, ev.MemberJoined | ev.MemberLeft):
            self.presence.handle(event)
        elif isinstance(event, ev.HistoryChanged):
            self.no_history.forget((event.project_id, event.channel_id))

    def close_all(self, code: int, reason: str) -> None:
        for conn in list(self.connections.values()):
            conn.close(code, reason)

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
            closed_slow=self.closed_slow,
            direct_messages=self.direct_messages,
            bytes_written=self.bytes_written,
            connections_by_scope=dict(
                collections.Counter(c.scope for c in self.connections.values())
            ),
            close_codes=dict(self.close_codes),
        )
