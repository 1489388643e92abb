"""The floor: one pre-built frame written to each socket's transport, no routing, no JSON.

``python bench/peers/floor_server.py --port P``: aiohttp (Switchboard's own HTTP and
WebSocket stack) on uvloop when installed. ``/ws`` accepts a WebSocket, says ``ready`` and
keeps the socket's transport in a list. ``POST /publish`` frames its body once (one
WebSocket header + the bytes) and writes that frame to every transport: the least work a
server on this stack can do per delivery.

With ``--batched`` the frames of one loop turn are joined and written to each transport
once at the end of the turn (one ``write`` per socket per turn, however many publishes
arrived): the floor for a server that coalesces writes, as Switchboard does.
"""

from __future__ import annotations

import argparse
import asyncio
import struct

from aiohttp import web

TRANSPORTS: list[asyncio.Transport] = []
PENDING: list[bytes] = []


def text_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


async def ws_handler(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(compress=False, autoping=True)
    await ws.prepare(request)
    transport = request.transport
    assert transport is not None
    await ws.send_str("ready")
    TRANSPORTS.append(transport)
    try:
        async for _ in ws:
            pass
    finally:
        TRANSPORTS.remove(transport)
    return ws


async def publish(request: web.Request) -> web.Response:
    frame = text_frame(await request.read())
    for transport in TRANSPORTS:
        transport.write(frame)
    return web.Response(text="ok")


def write_pending() -> None:
    data = b"".join(PENDING)
    PENDING.clear()
    for transport in TRANSPORTS:
        transport.write(data)


async def publish_batched(request: web.Request) -> web.Response:
    frame = text_frame(await request.read())
    if not PENDING:
        asyncio.get_running_loop().call_soon(write_pending)
    PENDING.append(frame)
    return web.Response(text="ok")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--batched", action="store_true", help="one write per socket per loop turn")
    args = parser.parse_args()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    app.router.add_post("/publish", publish_batched if args.batched else publish)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
