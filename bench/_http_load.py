"""HTTP load: a raw HTTP/1.1 keep-alive client, cheap enough not to be the bottleneck.

``http_request`` builds the bytes of one request; ``HttpPool`` holds up to N keep-alive
connections to one server, each carrying one request at a time; ``run_closed_loop`` keeps a
window of requests in flight. The benchmarks publish through it, and so does the load client
process (``_loadclient.py``, command ``http``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any, cast

from _servers import HOST


def http_request(
    method: str, path: str, port: int, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}", f"Content-Length: {len(body)}"]
    if body:
        lines.append("Content-Type: application/json")
    for key, value in (headers or {}).items():
        lines.append(f"{key}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _HttpConn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.lost: Exception | None = None
        self.reusable = True
        """False once the server said ``Connection: close`` (soketi does, after every response)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("server closed the connection")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buf[:end]).lower()
        start = end + 4
        i = head.find(b"\r\ncontent-length:")
        if i >= 0:
            j = head.find(b"\r\n", i + 2)
            length = int(head[i + 17 : j if j >= 0 else len(head)])
            if len(buf) - start < length:
                return
            body = bytes(buf[start : start + length])
            del buf[: start + length]
        elif b"chunked" in head:
            k = buf.find(b"\r\n0\r\n\r\n", start - 2)
            if k < 0:
                return
            body = bytes(buf[start : k + 2])
            del buf[: k + 7]
        else:
            body = b""
            del buf[:start]
        status = int(head[9:12])
        if b"\r\nconnection: close" in head:
            self.reusable = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((status, body))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        if self.lost is not None:
            raise self.lost
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


class HttpPool:
    """Up to ``size`` keep-alive connections to one server; each carries one request at a time.

    Connections are opened when needed, and a connection idle for more than ``max_idle``
    seconds is replaced before use: servers drop idle keep-alives (uWebSockets after ~10 s,
    and it resets one that has an unread request when its timer fires).
    """

    max_idle = 4.0

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.size = size
        self._free: asyncio.Queue[tuple[_HttpConn | None, float]] = asyncio.Queue()
        self._all: set[_HttpConn] = set()

    async def __aenter__(self) -> HttpPool:
        for _ in range(self.size):
            self._free.put_nowait((None, 0.0))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for conn in list(self._all):
            self._drop(conn)

    def _drop(self, conn: _HttpConn) -> None:
        if conn.transport is not None:
            conn.transport.close()
        self._all.discard(conn)

    async def request(self, data: bytes) -> tuple[int, bytes]:
        conn, last_used = await self._free.get()
        try:
            if conn is not None and (
                conn.lost is not None or time.monotonic() - last_used > self.max_idle
            ):
                self._drop(conn)
                conn = None
            if conn is None:
                _, conn = await asyncio.get_running_loop().create_connection(
                    _HttpConn, HOST, self.port
                )
                self._all.add(conn)
            return await conn.request(data)
        finally:
            if conn is not None and conn.lost is None and conn.reusable:
                self._free.put_nowait((conn, time.monotonic()))
            else:  # the server closed it, or said it would (soketi does, after every answer)
                if conn is not None:
                    self._drop(conn)
                self._free.put_nowait((None, 0.0))

    async def json(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        raw = b"" if body is None else json.dumps(body).encode()
        status, answer = await self.request(http_request(method, path, self.port, raw, headers))
        if status >= 300:
            raise RuntimeError(f"{method} {path} → {status}: {answer[:300]!r}")
        return json.loads(answer) if answer else None


async def run_closed_loop(
    pool: HttpPool, count: int, build: Callable[[int], bytes], window: int
) -> tuple[int, dict[int, int]]:
    """Send ``count`` requests, ``window`` in flight at a time; return (sent, statuses)."""
    statuses: dict[int, int] = {}
    next_seq = 0

    async def worker() -> None:
        nonlocal next_seq
        while next_seq < count:
            seq = next_seq
            next_seq += 1
            status, _ = await pool.request(build(seq))
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(worker() for _ in range(window)))
    return count, statuses
