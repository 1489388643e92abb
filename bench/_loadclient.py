"""The benchmarks' load client: many WebSocket connections in one process, kept cheap.

Run by the benchmark scripts as a separate process (``LoadClient`` in ``_loadclient_driver.py``)
and driven over stdin/stdout, one JSON object per line. Raw asyncio protocols on uvloop: each
connection does the WebSocket handshake, speaks just enough of its server's protocol to
get subscribed (Leap, Socket.IO/Engine.IO v4, Pusher, or "plain": the first frame says
ready), then only parses frame headers and counts data frames. Frames shorter than
``MIN_COUNTED`` bytes are protocol keep-alives (Leap probes, Engine.IO pings, Pusher
pings) and are answered, not counted; WebSocket pings get a pong.

Commands (``cmd``):

- ``connect {spec, n}``: open ``n`` more connections, answer when all are subscribed.
- ``arm {target, timeout, latency}``: reset the frame count; answer ``armed`` at once,
  then ``done`` when ``target`` frames have arrived or ``timeout`` passed. With
  ``latency``, every counted frame's send time (``~<ns>~`` in the payload) is compared
  with the time it was read, and percentiles come back.
- ``http {port, request, conns, duration}``: a closed-loop HTTP load on keep-alive
  connections (``request`` is latin-1 text); answers ``started`` then the result.
- ``send_all {text}``: send one text frame on every connection (e.g. a SUBSCRIBE).
- ``count`` (frames counted since the last ``arm``), ``status``, ``close``, ``quit``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sys
import time
from array import array
from typing import Any, cast

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _http_load import HttpPool
from _procs import raise_nofile

MIN_COUNTED = 64
"""Data frames at least this long are messages; shorter ones are protocol keep-alives."""

_HANDSHAKE, _SETUP, _READY, _CLOSED = range(4)


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

    __slots__ = ("buf", "counter", "phase", "proto", "ready", "spec", "step", "token", "transport")

    def __init__(self, spec: dict[str, Any], token: str | None, counter: Counter) -> None:
        self.spec = spec
        self.proto: str = spec["proto"]
        self.token = token
        self.counter = counter
        self.phase = _HANDSHAKE
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
        if self.phase != _CLOSED:
            self.phase = _CLOSED
            self.counter.closed += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection lost during setup: {exc}"))

    def data_received(self, data: bytes) -> None:
        if self.phase == _READY:
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
                self.counter.add(counted)
            return
        if self.phase == _HANDSHAKE:
            buf = self.buf + data
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            status = buf[: buf.find(b"\r\n")]
            if b" 101 " not in status:
                self._fail(f"handshake refused: {status.decode(errors='replace')}")
                return
            self.phase = _SETUP
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
            if self.phase != _SETUP:
                break
        rest = buf[i:]
        self.buf = b""
        if self.phase == _SETUP:
            self.buf = rest
        elif self.phase == _READY and rest:
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
        self.phase = _READY
        if not self.ready.done():
            self.ready.set_result(None)

    def _setup_frame(self, payload: bytes) -> None:
        proto = self.proto
        spec = self.spec
        if proto == "plain":
            self._ready()
        elif proto == "leap":
            msg = json.loads(payload)
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
        elif proto == "sio":
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
        elif proto == "pusher":
            msg = json.loads(payload)
            event = msg.get("event")
            if event == "pusher:connection_established" and self.step == 0:
                self.step = 1
                sub = {
                    "event": "pusher:subscribe",
                    "data": {"auth": "", "channel": spec["channel"]},
                }
                self._send(json.dumps(sub).encode())
            elif event == "pusher_internal:subscription_succeeded":
                self._ready()
            elif event == "pusher:ping":
                self._send(b'{"event":"pusher:pong","data":{}}')
            elif event == "pusher:error":
                self._fail(f"refused: {msg}")
        else:
            self._fail(f"unknown protocol {proto}")


class Client:
    def __init__(self) -> None:
        self.counter = Counter()
        self.conns: list[WsConn] = []

    def reply(self, msg: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()

    async def connect(self, spec: dict[str, Any], n: int) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        tokens: list[str | None] = spec.pop("tokens", None) or [None] * n
        concurrency = int(spec.pop("concurrency", 128))
        sem = asyncio.Semaphore(concurrency)
        errors: list[str] = []
        ready = 0
        t0 = time.perf_counter()

        async def one(i: int) -> None:
            nonlocal ready
            async with sem:
                try:
                    _, conn = await asyncio.wait_for(
                        loop.create_connection(
                            lambda: WsConn(spec, tokens[i], self.counter),
                            spec["host"],
                            spec["port"],
                        ),
                        30,
                    )
                    self.conns.append(conn)
                    await asyncio.wait_for(conn.ready, 30)
                    ready += 1
                except (TimeoutError, OSError, ValueError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")

        await asyncio.gather(*(one(i) for i in range(n)))
        return {
            "ready": ready,
            "failed": len(errors),
            "errors": errors[:5],
            "secs": time.perf_counter() - t0,
            "open": self.open_count(),
        }

    def open_count(self) -> int:
        return sum(1 for c in self.conns if c.phase == _READY)

    async def arm(
        self, target: int, timeout: float, latency: bool, throttle_ms: float = 0.0
    ) -> None:
        counter = self.counter
        counter.count = 0
        counter.target = target
        counter.latencies = array("q") if latency else None
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        counter.waiter = waiter
        self.reply({"armed": True})
        throttle: asyncio.Handle | None = None
        if throttle_ms > 0:
            # Sleep a little once per loop turn: frames pile up in the kernel and each read
            # returns several, so the client needs less CPU per frame. Not with latency.
            loop = asyncio.get_running_loop()

            def nap() -> None:
                nonlocal throttle
                time.sleep(throttle_ms / 1000)
                throttle = loop.call_soon(nap)

            throttle = loop.call_soon(nap)
        try:
            t_done = await asyncio.wait_for(waiter, timeout)
            done = True
        except TimeoutError:
            t_done, done = time.time(), False
        if throttle is not None:
            throttle.cancel()
        counter.waiter = None
        answer: dict[str, Any] = {
            "done": done,
            "count": counter.count,
            "t_done": t_done,
            "open": self.open_count(),
            "closed": counter.closed,
            "close_codes": counter.close_codes,
        }
        lat = counter.latencies
        counter.latencies = None
        if lat is not None and len(lat):
            values = sorted(lat)
            m = len(values)

            def pct(p: float) -> float:
                return values[min(m - 1, int(p * m))] / 1e6

            answer["latency_ms"] = {
                "n": m,
                "p50": pct(0.50),
                "p90": pct(0.90),
                "p99": pct(0.99),
                "p999": pct(0.999),
                "max": values[-1] / 1e6,
                "min": values[0] / 1e6,
            }
        self.reply(answer)

    async def http(self, port: int, request: bytes, conns: int, duration: float) -> None:
        statuses: dict[int, int] = {}
        async with HttpPool(port, conns) as pool:
            self.reply({"started": True, "t": time.time()})
            t0 = time.time()
            stop = t0 + duration

            async def worker() -> None:
                while time.time() < stop:
                    status, _ = await pool.request(request)
                    statuses[status] = statuses.get(status, 0) + 1

            await asyncio.gather(*(worker() for _ in range(conns)))
            t1 = time.time()
        self.reply({"requests": sum(statuses.values()), "statuses": statuses, "t0": t0, "t1": t1})

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**26)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        tasks: set[asyncio.Task[None]] = set()
        while True:
            line = await reader.readline()
            if not line:
                break
            msg = json.loads(line)
            cmd = msg["cmd"]
            try:
                if cmd == "connect":
                    self.reply(await self.connect(msg["spec"], msg["n"]))
                elif cmd == "arm":
                    task = loop.create_task(
                        self.arm(
                            msg["target"],
                            msg["timeout"],
                            msg.get("latency", False),
                            msg.get("throttle_ms", 0.0),
                        )
                    )
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                elif cmd == "http":
                    await self.http(
                        msg["port"], msg["request"].encode("latin-1"), msg["conns"], msg["duration"]
                    )
                elif cmd == "send_all":
                    frame = msg["text"].encode()
                    for conn in self.conns:
                        conn.send_text(frame)
                    self.reply({"sent": len(self.conns)})
                elif cmd == "count":
                    self.reply({"count": self.counter.count})
                elif cmd == "status":
                    self.reply({"open": self.open_count(), "closed": self.counter.closed})
                elif cmd == "close":
                    for conn in self.conns:
                        if conn.transport is not None:
                            conn.transport.abort()
                    n = len(self.conns)
                    self.conns.clear()
                    self.reply({"closed": n})
                elif cmd == "quit":
                    break
                else:
                    self.reply({"error": f"unknown command {cmd}"})
            except Exception as exc:
                self.reply({"error": f"{type(exc).__name__}: {exc}"})


def main() -> None:
    raise_nofile()
    client = Client()
    try:
        import uvloop
    except ImportError:
        asyncio.run(client.run())
        return
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(client.run())


if __name__ == "__main__":
    main()
