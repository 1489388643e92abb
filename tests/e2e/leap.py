"""A bare Leap client for tests: raw frames over a real WebSocket, nothing hidden."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

WAIT = 5.0


class Leap:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.hello: dict[str, Any] = {}
        self.init: dict[str, Any] = {}

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def recv(self, timeout: float = WAIT) -> dict[str, Any]:
        data = await asyncio.wait_for(self.ws.recv(), timeout)
        if isinstance(data, bytes):
            data = zlib.decompress(data).decode()
        frame: dict[str, Any] = json.loads(data)
        return frame

    async def dispatch(self, event: str | None = None, timeout: float = WAIT) -> dict[str, Any]:
        """The next dispatch (op 0), skipping heartbeat frames; ``event`` if given must match."""
        while True:
            frame = await self.recv(timeout)
            if frame["op"] == 0:
                d: dict[str, Any] = frame["d"]
                assert set(d) == {"c", "u", "e", "d"}, d
                if event is not None:
                    assert d["e"] == event, d
                return d

    async def identify(
        self, project_id: str, token: str | None = None, timeout: float = WAIT
    ) -> dict[str, Any]:
        self.hello = await self.recv(timeout)
        assert self.hello["op"] == 1
        d: dict[str, Any] = {"project_id": project_id}
        if token is not None:
            d["token"] = token
        await self.send({"op": 2, "d": d})
        init = await self.dispatch("INIT", timeout)
        assert init["c"] is None and init["u"] is True
        self.init = init["d"]
        return self.init

    async def subscribe(self, channel: str) -> dict[str, Any]:
        await self.send({"op": 0, "d": {"c": channel, "e": "SUBSCRIBE", "d": None}})
        return await self.dispatch()

    async def unsubscribe(self, channel: str) -> None:
        await self.send({"op": 0, "d": {"c": channel, "e": "UNSUBSCRIBE", "d": None}})

    async def publish(self, channel: str, event: str, data: Any) -> None:
        await self.send(
            {"op": 0, "d": {"c": channel, "e": "MESSAGE", "d": {"e": event, "d": data}}}
        )

    async def closed(self, timeout: float = WAIT) -> tuple[int | None, str]:
        """Read until the server closes; return its close code and reason."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout)
        except websockets.ConnectionClosed as exc:
            rcvd = exc.rcvd
            return (rcvd.code, rcvd.reason) if rcvd else (None, "")

    async def nothing(self, within: float = 0.3) -> None:
        """Assert no dispatch arrives within ``within`` seconds (heartbeats aside)."""
        try:
            frame = await self.dispatch(timeout=within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected dispatch {frame}")


@asynccontextmanager
async def leap(
    url: str, project_id: str | None = None, token: str | None = None, query: str = ""
) -> AsyncIterator[Leap]:
    """Open a socket; if ``project_id`` is given, also HELLO → IDENTIFY → INIT."""
    async with websockets.connect(url + query, max_size=None) as ws:
        client = Leap(ws)
        if project_id is not None:
            await client.identify(project_id, token)
        yield client


async def stalled_subscriber(
    port: int, project_id: str, channel: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw socket that completes the handshake, identifies, subscribes to ``channel``
    and then never reads (a tiny receive buffer, so the server's own buffer fills)."""
    import socket

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await reader.readuntil(b"\r\n\r\n")
    for frame in (
        {"op": 2, "d": {"project_id": project_id}},
        {"op": 0, "d": {"c": channel, "e": "SUBSCRIBE"}},
    ):
        payload = json.dumps(frame).encode()  # masked with a zero key: sent as is
        writer.write(bytes((0x81, 0x80 | len(payload))) + b"\x00\x00\x00\x00" + payload)
    await writer.drain()
    return reader, writer
