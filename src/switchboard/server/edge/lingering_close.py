"""A lingering close for sockets whose frame aiohttp refused (1009, 1007, 1002).

When aiohttp's WebSocket reader refuses a client frame (a message over ``max_msg_size``:
1009; a text frame that is not UTF-8: 1007; a protocol error: 1002) it sends the close
frame and closes the transport at once, with the rest of the client's frame unread (an
oversize frame is refused from its head, before any of its payload is read). The kernel
answers a socket closed with unread bytes, and every byte that arrives after it, with a
reset; a client that is still writing then loses the close frame it had not read yet and
reports 1006 instead of the code (issue 17: 8 to 22 of about 42 oversize clients when 50
misbehaved at once).

RFC 6455 §7.1.1 asks for the close frame, then the end of the TCP connection once the
client has had its say. :class:`LingeringWebSocketResponse` does what HTTP servers call a
lingering close: before aiohttp closes the transport it duplicates the socket's
descriptor (so the transport's close does not end the socket); once the transport has
handed the kernel everything it held, the close frame last, ``shutdown(SHUT_WR)`` sends
FIN, so the client reads the close frame and then EOF; what the client still sends is read
and thrown away until it closes its side, :data:`LINGER_BYTES` have come or
:data:`LINGER_S` have passed; then the duplicate is closed and the socket with it.

Only a refused socket pays for this, and only while it lingers: the class adds no
attribute to a response, and the discarded bytes go to one buffer shared by all.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from aiohttp import WSCloseCode, web

from switchboard.server.config import KIB, MIB

LINGER_S = 5.0
"""Longest a refused socket is read after its close frame: the 5 s a normal close waits
for the client's close frame (the gateway's ``timeout``)."""
LINGER_BYTES = 1 * MIB
"""Most bytes read and thrown away from a refused socket: four oversize frames' worth.
A client still sending after that is cut off (reset), as before."""

# The codes aiohttp's reader closes with when it refuses a frame; the gateway itself
# never closes with them (its codes are 1001 and 4000-4008, see protocol.frames).
_REFUSALS = frozenset(
    {WSCloseCode.PROTOCOL_ERROR, WSCloseCode.INVALID_TEXT, WSCloseCode.MESSAGE_TOO_BIG}
)
_FLUSH_POLL_S = 0.01
# Where discarded bytes are read to. Shared by every lingering socket: never read.
_DISCARD = bytearray(64 * KIB)


class LingeringWebSocketResponse(web.WebSocketResponse):
    """aiohttp's ``WebSocketResponse``, with a lingering close after a refused frame."""

    refused_code: int | None = None
    """The close code aiohttp's reader refused a client frame with (1002, 1007, 1009),
    or None. A class default: set on the instance only when it happens, so an ordinary
    socket carries no extra attribute."""

    async def close(
        self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True
    ) -> bool:
        """Close as aiohttp does; after a refused frame, linger (see the module docstring).

        aiohttp's ``receive()`` calls this with the refusal's code, and the transport is
        closed inside ``super().close()``: here is the last moment the socket can still
        be duplicated.
        """
        refused = code in _REFUSALS and not self.closed
        if refused:
            self.refused_code = code
        spare = self._spare_socket() if refused else None
        if spare is None:
            return await super().close(code=code, message=message, drain=drain)
        try:
            # No drain here: aiohttp's waits without a bound for a client that does not
            # read; the lingering waits for the flush itself, within LINGER_S.
            closed = await super().close(code=code, message=message, drain=False)
            await linger(self._transport(), spare)
        finally:
            spare.close()
        return closed

    def _spare_socket(self) -> socket.socket | None:
        """A second descriptor of this response's socket, or ``None`` if it has none."""
        sock = self.get_extra_info("socket")
        if sock is None:
            return None
        try:
            spare: socket.socket = sock.dup()
        except OSError:  # descriptors exhausted: close as aiohttp does, with its reset
            return None
        spare.setblocking(False)
        return spare

    def _transport(self) -> asyncio.Transport | None:
        # The transport aiohttp closes: it reaches it through the request it was prepared
        # for, as we do (no public accessor on the response).
        request = self._req
        return request.transport if request is not None else None


async def linger(transport: asyncio.Transport | None, spare: socket.socket) -> None:
    """FIN once ``transport`` has nothing left to write, then read from ``spare`` and
    discard until EOF, :data:`LINGER_BYTES` or :data:`LINGER_S`. The caller closes
    ``spare``."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(TimeoutError, OSError):
        async with asyncio.timeout(LINGER_S):
            # FIN must follow the close frame: wait until the transport has handed the
            # kernel all it holds. Polled, as a transport has no "flushed" event for
            # anyone but its protocol (aiohttp's); it is usually empty at once, only a
            # client that does not read makes it wait.
            while transport is not None and transport.get_write_buffer_size():  # noqa: ASYNC110
                await asyncio.sleep(_FLUSH_POLL_S)
            spare.shutdown(socket.SHUT_WR)
            left = LINGER_BYTES
            while left > 0:
                received = await loop.sock_recv_into(spare, _DISCARD)
                if not received:
                    return  # the client closed its side: the socket ends cleanly
                left -= received
    if transport is not None and transport.get_write_buffer_size():
        # A client that read nothing in LINGER_S: drop what it was not reading (a
        # closing transport would otherwise hold it, and the socket, until it does).
        transport.abort()
