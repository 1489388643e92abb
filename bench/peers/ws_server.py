"""``websockets`` peer: ``broadcast()`` to every connection, published through raw HTTP.

``python bench/peers/ws_server.py --port P --pub-port Q``: the ``websockets`` asyncio server
(uvloop when installed, no compression) holds the connections and says ``ready`` to each;
a ``POST /publish`` on port Q (a minimal HTTP/1.1 keep-alive listener in the same loop)
passes its body, as text, to ``websockets.asyncio.server.broadcast``.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import cast

from websockets.asyncio.server import ServerConnection, broadcast, serve

CLIENTS: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    CLIENTS.add(ws)
    try:
        await ws.send("ready")
        await ws.wait_closed()
    finally:
        CLIENTS.discard(ws)


class PublishProtocol(asyncio.Protocol):
    """Just enough HTTP/1.1: requests with a Content-Length body, answered 200 and kept alive."""

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            i = head.find(b"content-length:")
            length = (
                int(head[i + 15 : head.find(b"\r\n", i) if head.find(b"\r\n", i) > 0 else end])
                if i >= 0
                else 0
            )
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            broadcast(CLIENTS, body.decode())
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


async def main(port: int, pub_port: int) -> None:
    loop = asyncio.get_running_loop()
    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=None):
        pub = await loop.create_server(PublishProtocol, "127.0.0.1", pub_port)
        print("listening", flush=True)
        async with pub:
            await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pub-port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main(args.port, args.pub_port))
    except ImportError:
        asyncio.run(main(args.port, args.pub_port))
