"""A scripted HTTP peer: answers requests from a list, to test the SDK's retries.

The real server never answers 503 or hangs on demand; this one does. Everything the
SDK does besides retrying is tested against the real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

HANG = "hang"
"""Read the request and never answer."""


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=lambda: {"success": True, "data": {}})
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        content = self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()
        kind = "text/html" if isinstance(self.body, bytes) else "application/json"
        head = [
            f"HTTP/1.1 {self.status} X",
            f"Content-Type: {kind}",
            f"Content-Length: {len(content)}",
            "Connection: close",
        ]
        head += [f"{k}: {v}" for k, v in self.headers.items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + content


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class ScriptedHTTP:
    """``async with ScriptedHTTP([Reply(503), Reply()]) as peer:`` then point a client at ``peer.url``."""

    def __init__(self, script: list[Reply | str]) -> None:
        self.script = list(script)
        self.requests: list[Received] = []
        self.url = ""
        self._server: asyncio.Server | None = None
        self._hanging: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> ScriptedHTTP:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        for writer in self._hanging:
            writer.close()
        self._server.close()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append(Received(method, path, headers, body))
        step = self.script.pop(0) if self.script else Reply()
        if step == HANG:
            self._hanging.append(writer)
            return
        assert isinstance(step, Reply)
        writer.write(step.encode())
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()
