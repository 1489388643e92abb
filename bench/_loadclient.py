"""The benchmarks' load client: many WebSocket connections in one process, kept cheap.

Run by the benchmark scripts as a separate process (``LoadClient`` in ``_loadclient_driver.py``)
and driven over stdin/stdout, one JSON object per line. Its connections (``_loadclient_conn.py``)
are raw asyncio protocols on uvloop that, once subscribed, only parse frame headers and count
data frames; short frames (keep-alives) are answered, not counted.

Commands (``cmd``):

- ``connect {spec, n}``: open ``n`` more connections, answer when all are subscribed (to
  ``spec["channel"]``, or with ``spec["channels"]``, a list of ``n`` names, each to its own;
  ``spec["sources"]``: local addresses to bind, round robin; ``spec["retries"]``: attempts
  more for a connection that fails, counted in the answer's ``retried``).
- ``arm {target, timeout, latency, hist}``: reset the frame counts (the total and each
  connection's); answer ``armed`` at once, then ``done`` when ``target`` frames have arrived
  or ``timeout`` passed. With ``latency``, every counted frame's send time (``~<ns>~`` in the
  payload) is compared with the time it was read, and percentiles come back; with ``hist``
  also a histogram of them in 10 µs buckets (``{bucket: count}``), which several load
  clients' answers can be merged by.
- ``per_conn``: the frames each connection counted since the last ``arm``, in the order the
  ``connect`` commands listed them (-1 for one that never connected): a check that no
  connection lost a frame or got one twice.
- ``http {port, request, conns, duration}``: a closed-loop HTTP load on keep-alive
  connections (``request`` is latin-1 text); answers ``started`` then the result.
- ``send_all {text}``: send one text frame on every connection (e.g. a SUBSCRIBE).
- ``count`` (frames counted since the last ``arm``), ``status``, ``close``, ``quit``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import socket
import sys
import time
from array import array
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _cli import Command, run_on_uvloop
from _http_load import HttpPool
from _loadclient_conn import READY, Counter, WsConn

IP_BIND_ADDRESS_NO_PORT = 24
"""Linux: a bind to port 0 leaves the port to connect(), which picks it per destination."""


async def open_conn(
    factory: Callable[[], WsConn], spec: dict[str, Any], source: str | None
) -> tuple[asyncio.BaseTransport, WsConn]:
    """Connect to ``spec``'s host and port, from the address ``source`` if given (bound with
    ``IP_BIND_ADDRESS_NO_PORT``: a plain bind to port 0 searches the ephemeral ports of every
    destination, slower with every socket open, and a client's CPU grows with them)."""
    loop = asyncio.get_running_loop()
    if source is None:
        return await loop.create_connection(factory, spec["host"], spec["port"])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
        await loop.sock_connect(sock, (spec["host"], spec["port"]))
    except BaseException:
        sock.close()
        raise
    return await loop.create_connection(factory, sock=sock)


class Client:
    """The load client process: its connections, their shared frame count, its commands."""

    def __init__(self) -> None:
        self.counter = Counter()
        self.conns: list[WsConn] = []
        self.indexed: list[WsConn | None] = []
        """Every connection at the place its ``connect`` command listed it (``per_conn``)."""

    def reply(self, msg: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()

    async def connect(self, spec: dict[str, Any], n: int) -> dict[str, Any]:
        tokens: list[str | None] = spec.pop("tokens", None) or [None] * n
        channels: list[str] | None = spec.pop("channels", None)
        concurrency = int(spec.pop("concurrency", 128))
        # Source addresses, round robin (``connect`` with ``sources``): one client address has
        # ~28k ephemeral ports towards one server port; 127.0.0.2... are loopback too.
        sources: list[str] = spec.pop("sources", None) or []
        sem = asyncio.Semaphore(concurrency)
        errors: list[str] = []
        ready = 0
        base = len(self.indexed)
        self.indexed.extend([None] * n)
        t0 = time.perf_counter()

        retries = int(spec.pop("retries", 0))
        retried: list[str] = []

        async def one(i: int) -> None:
            nonlocal ready
            async with sem:
                own = spec if channels is None else {**spec, "channel": channels[i]}
                source = sources[i % len(sources)] if sources else None

                def factory() -> WsConn:
                    return WsConn(own, tokens[i], self.counter)

                for attempt in range(retries + 1):
                    try:
                        _, conn = await asyncio.wait_for(open_conn(factory, spec, source), 30)
                        self.conns.append(conn)
                        self.indexed[base + i] = conn
                        await asyncio.wait_for(conn.ready, 30)
                        ready += 1
                        return
                    except (TimeoutError, OSError, ValueError) as exc:
                        why = f"{type(exc).__name__}: {exc}"
                        (errors if attempt == retries else retried).append(why)

        await asyncio.gather(*(one(i) for i in range(n)))
        return {
            "ready": ready,
            "failed": len(errors),
            "retried": len(retried),
            "retry_errors": retried[:3],
            "errors": errors[:5],
            "secs": time.perf_counter() - t0,
            "open": self.open_count(),
        }

    def open_count(self) -> int:
        return sum(1 for c in self.conns if c.phase == READY)

    async def arm(
        self,
        target: int,
        timeout: float,
        latency: bool,
        throttle_ms: float = 0.0,
        hist: bool = False,
    ) -> None:
        counter = self.counter
        counter.count = 0
        for conn in self.conns:
            conn.n = 0
        counter.target = target
        counter.latencies = array("q") if latency else None
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        counter.waiter = waiter
        if target <= 0:  # nothing to wait for (a client none of whose connections is sent to)
            waiter.set_result(time.time())
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
            if hist:
                buckets = collections.Counter(v // 10_000 for v in values)
                answer["latency_hist"] = {str(k): c for k, c in buckets.items()}
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
                            msg.get("hist", False),
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
                elif cmd == "per_conn":
                    self.reply({"counts": [-1 if c is None else c.n for c in self.indexed]})
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
                    self.indexed.clear()
                    self.reply({"closed": n})
                elif cmd == "quit":
                    break
                else:
                    self.reply({"error": f"unknown command {cmd}"})
            except Exception as exc:
                self.reply({"error": f"{type(exc).__name__}: {exc}"})


def main() -> None:
    Command(__doc__).parse()  # no options: --help prints the commands above
    client = Client()
    with contextlib.suppress(KeyboardInterrupt):
        run_on_uvloop(client.run)


if __name__ == "__main__":
    main()
