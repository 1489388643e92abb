"""A socket as the fan-out sees it: :class:`Connection`, and how frames reach it.

The pieces every part of the fan-out shares, and nothing else (a leaf: it imports no
other fan-out module):

- :func:`ws_frame` and :class:`Outgoing`: a server frame built once per wire variant
  (JSON text, and zlib binary if anyone asked for it) and shared by every recipient.
- :class:`Transport`: the slice of :class:`asyncio.Transport` a connection writes to.
- :class:`Coalescer`: writes are coalesced per socket per loop turn. A frame goes on the
  connection's queue, and once per turn of the event loop the coalescer writes each
  queue with one ``transport.write`` call. Under load several publishes land in one
  turn, and the kernel's per-write cost (most of a fan-out's CPU, by the profile) is
  paid once per socket instead of once per frame. Every frame to a connection goes
  through its queue, so a client sees frames in the order they were sent.
- :class:`Connection`: one identified Leap connection. Backpressure policy
  ``close_slow``: a connection whose unsent bytes pass ``max_buffered_bytes`` is closed
  with 4000 at once; nobody else waits for it.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import Iterable, Mapping
from typing import Protocol

import msgspec

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
    def abort(self) -> None: ...


class Coalescer:
    """Writes every connection's queued frames once per loop turn (see the module
    docstring), and counts what it wrote and whom it closed for being slow."""

    __slots__ = ("_scheduled", "_to_write", "bytes_written", "closed_slow", "max_buffered_bytes")

    def __init__(self, max_buffered_bytes: int) -> None:
        self.max_buffered_bytes = max_buffered_bytes
        self.bytes_written = 0
        """WebSocket bytes (frame headers included) handed to socket transports."""
        self.closed_slow = 0
        """Connections closed with 4000 because their unsent bytes passed the cap."""
        self._to_write: list[Connection] = []
        self._scheduled = False

    def write_later(self, conn: Connection) -> None:
        """Write ``conn``'s queue at the end of this loop turn."""
        self._to_write.append(conn)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.write_all)

    def write_all(self) -> None:
        """Write every connection's queued frames now, one ``write`` per connection."""
        self._scheduled = False
        to_write, self._to_write = self._to_write, []
        self.write(to_write)

    def write(self, conns: Iterable[Connection]) -> None:
        """Write each connection's queued frames in one call; close with 4000 one whose
        peer is too far behind.

        The one place a queue reaches its socket. A tight loop on purpose: measured on a
        broadcast to 10,000 sockets, the kernel's cost of a write grows when Python work
        comes between the writes (bench/README.md, "Issue 21 at the day's end").
        """
        cap = self.max_buffered_bytes
        written = 0  # summed here, added once: an attribute update per socket costs
        for conn in conns:
            queued = conn._queued
            if queued is None:
                continue
            conn._queued = None
            transport = conn.transport
            if conn.closing or transport.is_closing():
                continue
            transport.write(queued)
            written += len(queued)
            if transport.get_write_buffer_size() > cap:
                self.closed_slow += 1
                conn.close(CloseCode.UNKNOWN_ERROR, "slow consumer: too many unsent bytes")
        self.bytes_written += written

    def send_to_tokens(
        self,
        sockets: Mapping[str, set[Connection]],
        token_ids: Iterable[str],
        project_id: str,
        frame: Outgoing,
    ) -> int:
        """Queue ``frame`` for each connection of ``project_id`` among those of
        ``token_ids`` (one direct message to many tokens); how many were queued.

        What :meth:`Connection.send` does, with the usual case (nothing queued yet, no
        compression) inline instead of two calls per socket: a broadcast to 1,000 tokens
        is 1,000 of them per request.
        """
        text = frame.wire(False)
        to_write = self._to_write
        before = len(to_write)
        sent = 0
        for token_id in token_ids:
            conns = sockets.get(token_id)
            if not conns:
                continue
            # A send may close a slow socket, which then leaves the set: a copy.
            for conn in tuple(conns):
                if conn.project_id != project_id:
                    continue
                sent += 1
                if conn._queued is None and not conn.compressed and not conn.closing:
                    conn._queued = text
                    to_write.append(conn)
                else:
                    conn.send(frame)
        if len(to_write) > before and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.write_all)
        return sent


class Connection:
    """One identified Leap connection, as the fan-out sees it.

    The edge subclasses it to say how a close and an expiry change are carried out.
    """

    # The fields a delivery reads come first, side by side: a broadcast to 1,000 sockets
    # reads them from 1,000 objects, and in fewer cache lines so.
    __slots__ = (  # noqa: RUF023 (the order above)
        "_queued",
        "closing",
        "compressed",
        "project_id",
        "transport",
        "channels",
        "cid",
        "metadata",
        "scope",
        "token_id",
        "writer",
    )

    def __init__(
        self,
        writer: Coalescer,
        transport: Transport,
        *,
        cid: str,
        project_id: str,
        token_id: str | None,
        scope: str,
        compressed: bool,
    ) -> None:
        self.writer = writer
        self.transport = transport
        self.cid = cid
        self.project_id = project_id
        self.token_id = token_id
        self.scope = scope
        """``token``, ``project`` or ``noauth``."""
        self.compressed = compressed
        self.metadata: msgspec.Raw | None = None
        """The token's state (for presence), set by the edge; ``None`` without one."""
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
            self.writer.write_later(self)
        elif isinstance(queued, bytearray):
            queued += data
            if len(queued) >= QUEUE_FLUSH_BYTES:
                # A burst (a backlog of events read in one turn) is written as it comes, so
                # the slow-consumer cap still bounds every socket's memory.
                self.write_queued()
        else:
            self._queued = bytearray(queued) + data

    def send_payload(self, payload: bytes) -> None:
        self.send(Outgoing(payload))

    def write_queued(self) -> None:
        """Write the queued frames now, in one call (see :meth:`Coalescer.write`)."""
        if self._queued is not None:
            self.writer.write((self,))

    def close(self, code: int, reason: str) -> None:
        """Close with ``code``. Overridden by the edge; the base writes what is queued."""
        self.write_queued()
        self.closing = True

    def expiry_changed(self, expires_at: str | None) -> None:
        """The token's ``expires_at`` changed. Overridden by the edge."""
