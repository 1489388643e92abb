"""A WebSocket relay between Leap clients and a real server, for network faults.

Clients connect to ``relay.url``; each connection is carried to the real server with
the same path and query. Tests cut every link at once (the client sees an abrupt
drop, close code 1006) and make one direction go silent from a chosen frame on, the
way a connection that dies loses everything after some point. Every frame relayed
is logged, so tests can await what went over the wire instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import Server, ServerConnection

Predicate = Callable[[dict[str, Any]], bool]

UP = "client->server"
DOWN = "server->client"


def is_dispatch(event: str) -> Predicate:
    return lambda f: f.get("op") == 0 and isinstance(f.get("d"), dict) and f["d"].get("e") == event


def is_op(op: int) -> Predicate:
    return lambda f: f.get("op") == op


@dataclass
class Logged:
    index: int
    """Position in the log: pass it as ``after`` to look at what came later."""
    link: int
    direction: str
    frame: dict[str, Any]
    binary: bool


class Relay:
    """See the module docstring. Use as ``async with Relay(node.base_url) as relay:``."""

    def __init__(self, upstream_base: str) -> None:
        self.upstream = upstream_base.replace("http", "ws", 1)
        self.url = ""
        self.silence_up: Predicate | None = None
        """From the first client frame matching this on, a link forwards nothing upward."""
        self.silence_down: Predicate | None = None
        """From the first server frame matching this on, a link forwards nothing downward."""
        self.log: list[Logged] = []
        self.links = 0
        self._changed = asyncio.Condition()
        self._live: list[tuple[ServerConnection, ClientConnection]] = []
        self._server: Server | None = None

    async def __aenter__(self) -> Relay:
        self._server = await websockets.serve(self._handle, "127.0.0.1", 0, ping_interval=None)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/ws"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self.cut()
        self._server.close()
        await self._server.wait_closed()

    def cut(self) -> None:
        """Drop every live link abruptly, as a network failure would."""
        for down, up in self._live:
            down.transport.abort()
            up.transport.abort()
        self._live.clear()

    def mark(self) -> int:
        """A position in the log; pass it to :meth:`seen` to look only at later frames."""
        return len(self.log)

    async def seen(
        self, direction: str, predicate: Predicate, *, after: int = 0, count: int = 1
    ) -> Logged:
        """Wait until ``count`` frames matching ``predicate`` went ``direction`` after ``after``."""
        async with self._changed:
            while True:
                hits = [
                    entry
                    for entry in self.log[after:]
                    if entry.direction == direction and predicate(entry.frame)
                ]
                if len(hits) >= count:
                    return hits[count - 1]
                await self._changed.wait()

    async def _record(self, link: int, direction: str, message: str | bytes) -> dict[str, Any]:
        text = zlib.decompress(message) if isinstance(message, bytes) else message
        frame: dict[str, Any] = json.loads(text)
        async with self._changed:
            self.log.append(
                Logged(len(self.log) + 1, link, direction, frame, isinstance(message, bytes))
            )
            self._changed.notify_all()
        return frame

    async def _handle(self, down: ServerConnection) -> None:
        self.links += 1
        link = self.links
        assert down.request is not None
        async with websockets.connect(
            self.upstream + down.request.path, max_size=None, ping_interval=None
        ) as up:
            self._live.append((down, up))
            async with self._changed:
                self._changed.notify_all()
            silent = {UP: False, DOWN: False}

            async def pump(src: Any, dst: Any, direction: str, silence: Callable[[], Any]) -> None:
                try:
                    async for message in src:
                        frame = await self._record(link, direction, message)
                        predicate = silence()
                        if predicate is not None and not silent[direction] and predicate(frame):
                            silent[direction] = True
                        if not silent[direction]:
                            await dst.send(message)
                except websockets.ConnectionClosed:
                    pass
                # Pass the close code on: the client must see the server's 4001 or 4006.
                rcvd = getattr(src, "close_code", None)
                reason = getattr(src, "close_reason", None) or ""
                with contextlib.suppress(Exception):
                    if rcvd and rcvd not in (1005, 1006):
                        await dst.close(rcvd, reason)
                    else:
                        dst.transport.abort()

            await asyncio.gather(
                pump(down, up, UP, lambda: self.silence_up),
                pump(up, down, DOWN, lambda: self.silence_down),
            )
