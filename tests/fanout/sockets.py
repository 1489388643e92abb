"""Sockets for driving the fan-out directly: transports that record what they are
written, and readers of those bytes. Strings in (events), strings out (frames)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from switchboard.server.fanout import Connection, Dispatch, Hub
from switchboard.server.fanout.presence import Occupancy
from switchboard.server.history import NoHistoryCache


class RecordingTransport:
    def __init__(self, buffered: int = 0) -> None:
        self.writes: list[bytes] = []
        self.buffered = buffered

    def write(self, data: bytes | bytearray) -> None:
        self.writes.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return False

    def abort(self) -> None:
        pass


class RecordingConnection(Connection):
    """A connection that records its closes instead of closing a socket."""

    __slots__ = ("closed_with", "expiries")

    def __init__(self, hub: Hub, transport: RecordingTransport, **kwargs: Any) -> None:
        super().__init__(hub.writer, transport, **kwargs)
        self.closed_with: tuple[int, str] | None = None
        self.expiries: list[str | None] = []

    def close(self, code: int, reason: str) -> None:
        super().close(code, reason)
        self.closed_with = (code, reason)

    def expiry_changed(self, expires_at: str | None) -> None:
        self.expiries.append(expires_at)


def split_frames(data: bytes) -> list[bytes]:
    """Payloads of the unmasked frames in ``data``."""
    out = []
    while data:
        n, start = data[1] & 0x7F, 2
        if n == 126:
            n, start = int.from_bytes(data[2:4], "big"), 4
        elif n == 127:
            n, start = int.from_bytes(data[2:10], "big"), 10
        out.append(data[start : start + n])
        data = data[start + n :]
    return out


def dispatches(transport: RecordingTransport) -> list[dict[str, Any]]:
    """Every dispatch (``d`` of op 0) the socket was written, in order."""
    frames = [json.loads(p) for p in split_frames(b"".join(transport.writes))]
    return [f["d"] for f in frames if f["op"] == 0]


async def next_turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


class Node:
    """A hub and its dispatch, with sockets made on demand."""

    def __init__(self, node_id: str = "local", occupancy: Occupancy | None = None) -> None:
        self.hub = Hub(max_buffered_bytes=1 << 20, node_id=node_id, occupancy=occupancy)
        self.no_history = NoHistoryCache()
        self.dispatch = Dispatch(self.hub, self.no_history)
        self._cids = 0

    def socket(
        self,
        *channels: str,
        token: str | None = None,
        scope: str | None = None,
        project: str = "p",
    ) -> tuple[RecordingConnection, RecordingTransport]:
        self._cids += 1
        transport = RecordingTransport()
        conn = RecordingConnection(
            self.hub,
            transport,
            cid=f"c{self._cids}",
            project_id=project,
            token_id=token,
            scope=scope or ("token" if token else "noauth"),
            compressed=False,
        )
        self.hub.attach(conn)
        for channel in channels:
            self.hub.join(conn, channel)
        return conn, transport
