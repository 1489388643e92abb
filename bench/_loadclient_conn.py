"""One load-client WebSocket connection, kept cheap: ``WsConn``, and the ``Counter`` they share.

A raw asyncio protocol (on uvloop in the load client): it does the WebSocket handshake,
speaks just enough of its server's protocol to get subscribed (Leap, Socket.IO/Engine.IO v4,
Pusher, or "plain": the first frame says ready), then only parses frame headers and counts
data frames. Frames shorter than ``MIN_COUNTED`` bytes are protocol keep-alives (Leap probes,
Engine.IO pings, Pusher pings) and are answered, not counted; WebSocket pings get a pong.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from array import array
from typing import Any, cast

MIN_COUNTED = 64
"""Data frames at least this long are messages; shorter ones are protocol keep-alives."""

HANDSHAKE, SETUP, READY, CLOSED = range(4)


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame (RFC 6455 §5.3)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    if n:
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
        masked = (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")
    else:
        masked = b""
    return header + mask + masked


class Counter:
    """Frames counted by every connection, and the waiter of the current ``arm``."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.waiter: asyncio.Future[float] | None = None
        self.latencies: array[int] | None = None
        self.closed = 0
        self.close_codes: dict[int, int] = {}

    def add(self, n: int) -> None:
        self.count += n
        if self.count >= self.target and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(time.time())


class WsConn(asyncio.Protocol):
    """One load-client WebSocket connection."""

    __slots__ = (
        "buf",
        "counter",
        "n",
        "phase",
        "proto",
        "ready",
        "spec",
        "step",
        "token",
        "transport",
    )

    def __init__(self, spec: dict[str, Any], token: str | None, counter: Counter) -> None:
        self.spec = spec
        self.proto: str = spec["proto"]
        self.token = token
        self.counter = counter
        self.n = 0
        """Frames this connection counted since the last ``arm`` (no loss, no duplicate: per connection)."""
        self.phase = HANDSHAKE
        self.step = 0
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        key = base64.b64encode(os.urandom(16)).decode()
        spec = self.spec
        self.transport.write(
            (
                f"GET {spec['path']} HTTP/1.1\r\nHost: {spec['host']}:{spec['port']}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self.phase != CLOSED:
            self.phase = CLOSED
            self.counter.closed += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection lost during setup: {exc}"))

    def data_received(self, data: bytes) -> None:
        if self.phase == READY:
            # The hot path: frame headers only.
            buf = self.buf + data if self.buf else data
            n = len(buf)
            i = 0
            counted = 0
            latencies = self.counter.latencies
            now_ns = 0
            while n - i >= 2:
                ln = buf[i + 1] & 0x7F
                if ln < 126:
                    h = i + 2
                elif ln == 126:
                    if n - i < 4:
                        break
                    ln = (buf[i + 2] << 8) | buf[i + 3]
                    h = i + 4
                else:
                    if n - i < 10:
                        break
                    ln = int.from_bytes(buf[i + 2 : i + 10], "big")
                    h = i + 10
                end = h + ln
                if end > n:
                    break
                op = buf[i] & 0x0F
                if ln >= MIN_COUNTED and (op == 1 or op == 2):
                    counted += 1
                    if latencies is not None:
                        j = buf.find(b"~", h, end)
                        if j >= 0:
                            if not now_ns:
                                now_ns = time.time_ns()
                            k = buf.find(b"~", j + 1, end)
                            latencies.append(now_ns - int(buf[j + 1 : k]))
                else:
                    self._other_frame(op, buf[h:end])
                i = end
            self.buf = buf[i:] if i < n else b""
            if counted:
                self.n += counted
                self.counter.add(counted)
            return
        self._setup_data(data)

    def _setup_data(self, data: bytes) -> None:
        """Before the connection is ready: the HTTP upgrade answer, then whole setup frames."""
        if self.phase == HANDSHAKE:
            buf = self.buf + data
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            status = buf[: buf.find(b"\r\n")]
            if b" 101 " not in status:
                self._fail(f"handshake refused: {status.decode(errors='replace')}")
                return
            self.phase = SETUP
            self.buf = b""
            data = buf[end + 4 :]
        # Setup: parse whole frames.
        buf = self.buf + data
        n = len(buf)
        i = 0
        while n - i >= 2:
            ln = buf[i + 1] & 0x7F
            h = i + 2
            if ln == 126:
                ln = int.from_bytes(buf[i + 2 : i + 4], "big")
                h = i + 4
            elif ln == 127:
                ln = int.from_bytes(buf[i + 2 : i + 10], "big")
                h = i + 10
            if h + ln > n:
                break
            op = buf[i] & 0x0F
            payload = buf[h : h + ln]
            i = h + ln
            if op in (1, 2):
                self._setup_frame(payload)
            else:
                self._other_frame(op, payload)
            if self.phase != SETUP:
                break
        rest = buf[i:]
        self.buf = b""
        if self.phase == SETUP:
            self.buf = rest
        elif self.phase == READY and rest:
            self.data_received(rest)  # became ready mid-buffer: count the rest

    # Frames other than counted messages.

    def _send(self, payload: bytes, opcode: int = 0x1) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(payload, opcode))

    def send_text(self, payload: bytes) -> None:
        self._send(payload)

    def _other_frame(self, op: int, payload: bytes) -> None:
        if op == 0x9:  # ping
            self._send(payload, 0xA)
        elif op == 0x8:  # close
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.counter.close_codes[code] = self.counter.close_codes.get(code, 0) + 1
            self._send(payload[:2], 0x8)
            if self.transport is not None:
                self.transport.close()
            if not self.ready.done():
                self.ready.set_exception(
                    ConnectionError(
                        f"closed during setup: {code} {payload[2:].decode(errors='replace')}"
                    )
                )
        elif op in (1, 2):
            self._keepalive(payload)

    def _keepalive(self, payload: bytes) -> None:
        """Answer a short protocol frame seen after setup."""
        if self.proto == "sio":
            if payload == b"2":
                self._send(b"3")
        elif self.proto == "leap":
            msg = json.loads(payload)
            if msg.get("op") == 3:
                self._send(json.dumps({"op": 3, "d": msg.get("d")}).encode())
        elif self.proto == "pusher":
            msg = json.loads(payload)
            if msg.get("event") == "pusher:ping":
                self._send(b'{"event":"pusher:pong","data":{}}')

    def _fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.close()

    def _ready(self) -> None:
        self.phase = READY
        if not self.ready.done():
            self.ready.set_result(None)

    def _setup_frame(self, payload: bytes) -> None:
        if self.proto == "plain":
            self._ready()
        elif self.proto == "leap":
            self._leap_setup(json.loads(payload))
        elif self.proto == "sio":
            self._sio_setup(payload)
        elif self.proto == "pusher":
            self._pusher_setup(json.loads(payload))
        else:
            self._fail(f"unknown protocol {self.proto}")

    def _leap_setup(self, msg: dict[str, Any]) -> None:
        """HELLO -> IDENTIFY -> INIT (-> SUBSCRIBE -> AVAILABLE); probes answered on the way."""
        spec = self.spec
        op = msg.get("op")
        d = msg.get("d") or {}
        if op == 1 and self.step == 0:
            self.step = 1
            identify = {"op": 2, "d": {"project_id": spec["project_id"], "token": self.token}}
            self._send(json.dumps(identify).encode())
        elif op == 3:
            self._send(json.dumps({"op": 3, "d": d}).encode())
        elif op == 0 and d.get("e") == "INIT" and self.step == 1:
            if spec.get("channel"):
                self.step = 2
                sub = {"op": 0, "d": {"c": spec["channel"], "e": "SUBSCRIBE", "d": None}}
                self._send(json.dumps(sub).encode())
            else:
                want = spec.get("expect_channels", 0)
                got = len(d["d"].get("channels") or ())
                if got < want:
                    self._fail(f"INIT lists {got} channels, expected {want}")
                else:
                    self._ready()
        elif op == 0 and d.get("e") == "AVAILABLE" and self.step == 2:
            self._ready()
        elif op == 0 and d.get("e") in ("UNAVAILABLE", "ERROR"):
            self._fail(f"refused: {msg}")

    def _sio_setup(self, payload: bytes) -> None:
        """Engine.IO open -> ``40`` -> ``42["join"]`` -> ``42["joined"]``; pings answered."""
        if payload == b"2":
            self._send(b"3")
        elif payload[:1] == b"0" and self.step == 0:
            self.step = 1
            self._send(b"40")
        elif payload[:2] == b"40" and self.step == 1:
            self.step = 2
            self._send(b'42["join"]')
        elif payload.startswith(b'42["joined"') and self.step == 2:
            self._ready()
        elif payload[:2] == b"44":
            self._fail(f"refused: {payload!r}")

    def _pusher_setup(self, msg: dict[str, Any]) -> None:
        """``connection_established`` -> ``pusher:subscribe`` -> ``subscription_succeeded``."""
        event = msg.get("event")
        if event == "pusher:connection_established" and self.step == 0:
            self.step = 1
            sub = {
                "event": "pusher:subscribe",
                "data": {"auth": "", "channel": self.spec["channel"]},
            }
            self._send(json.dumps(sub).encode())
        elif event == "pusher_internal:subscription_succeeded":
            self._ready()
        elif event == "pusher:ping":
            self._send(b'{"event":"pusher:pong","data":{}}')
        elif event == "pusher:error":
            self._fail(f"refused: {msg}")
