"""Shared pieces of the benchmarks: servers, /proc readings, a raw HTTP client, the load client.

Nothing here is a test. Every server is started on a free port with a fresh temporary data
directory and is killed when the benchmark ends, also on error or Ctrl-C (and, through
``PR_SET_PDEATHSIG``, if the benchmark itself is killed).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import hashlib
import hmac
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
PEERS_DIR = BENCH_DIR / "peers"
PYTHON = sys.executable
SWITCHBOARD_BIN = str(Path(sys.executable).parent / "switchboard")
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
CHANNEL = "bench"
PAYLOAD_BYTES = 100
"""Size of a message's ``d`` as JSON: ``{"seq":…,"p":"~<send time ns>~xxxx…"}``."""


# Process and machine.


def raise_nofile() -> int:
    """Raise this process's open-file limit to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _die_with_parent() -> None:
    """In a child, before exec: get SIGKILL when the benchmark process dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    raise_nofile()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of these processes (all their threads) from /proc/<pid>/stat."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return total / CLK_TCK


def write_syscalls(pids: Sequence[int]) -> int:
    """write/writev system calls made so far by these processes (``syscw`` of /proc/<pid>/io)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/io") as f:
                for line in f:
                    if line.startswith("syscw:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def runqueue_wait_seconds(pids: Sequence[int]) -> float:
    """Time these processes' threads spent runnable but waiting for a CPU (/proc/<pid>/task/*/schedstat).

    Over a span, wait ÷ wall time says how much of a CPU the machine's other work took from them.
    """
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return total / 1e9


def rss_bytes(pid: int) -> int:
    """VmRSS of one process from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def switchboard_revision() -> str:
    """The commit the server runs from, and whether src/ has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_DIR), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "(revision unknown)"
    return f"at {head}" + (" with uncommitted changes in src/" if dirty else "")


def machine_summary() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    node = shutil.which("node")
    node_v = (
        subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
        if node
        else "none"
    )
    return (
        f"Switchboard {switchboard_revision()}; "
        f"{os.cpu_count()} CPUs ({model}), {mem_gib:.0f} GiB, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, Node {node_v}, load average {loadavg()}"
    )


# Servers.


@dataclass
class ServerProc:
    """One server process of a benchmark run; ``stop()`` always kills it."""

    name: str
    argv: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = BENCH_DIR
    ready_text: str | None = None
    """Text the server prints to stdout once it listens (else: wait for the port)."""
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    tmpdir: Path | None = None
    extra_pids: list[int] = field(default_factory=list)
    """Processes whose CPU counts as this server's (its own Redis, for instance)."""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        return [*process_tree(self.pid), *(p for e in self.extra_pids for p in process_tree(e))]

    def cpu(self) -> float:
        return cpu_seconds(self.pids())

    def output(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def spawn(self) -> None:
        """Start the process (not waiting for it to listen)."""
        if self.tmpdir is None:
            self.tmpdir = Path(tempfile.mkdtemp(prefix="sb-bench-"))
        self.log_path = self.tmpdir / "server.log"
        env = {**os.environ, **self.env}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
                start_new_session=True,
            )

    async def start(self, timeout: float = 30.0) -> None:
        self.spawn()
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.output()[-3000:]}"
                )
            if self.ready_text is not None:
                if self.ready_text in self.output():
                    return
            elif await _port_open(self.port):
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(
            f"{self.name} did not start in {timeout:.0f} s:\n{self.output()[-3000:]}"
        )

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class Servers:
    """Every server started in a run, stopped together (``with Servers() as servers``)."""

    def __init__(self) -> None:
        self.started: list[ServerProc] = []

    def __enter__(self) -> Servers:
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    async def start(self, server: ServerProc) -> ServerProc:
        self.started.append(server)
        await server.start()
        return server

    def stop_all(self) -> None:
        for server in reversed(self.started):
            server.stop()
        self.started.clear()


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


# Message payloads.


def payload(seq: int, ts_ns: int | None = None) -> bytes:
    """The ``d`` of one message: PAYLOAD_BYTES of JSON carrying its send time between ``~``."""
    ts = time.time_ns() if ts_ns is None else ts_ns
    head = f'{{"seq":{seq},"p":"~{ts}~'
    return (head + "x" * (PAYLOAD_BYTES - len(head) - 2) + '"}').encode()


def leap_message_frame_payload(d: bytes) -> bytes:
    """The JSON a Switchboard subscriber receives for a MESSAGE ``{"e":"m","d":d}``."""
    return (
        b'{"op":0,"d":{"c":"'
        + CHANNEL.encode()
        + b'","u":false,"e":"MESSAGE","d":{"e":"m","d":'
        + d
        + b"}}}"
    )


# Raw HTTP/1.1 keep-alive client (cheap enough not to be the bottleneck).


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


# Pusher HTTP API signature (soketi).


def pusher_signed_path(app_id: str, key: str, secret: str, body: bytes) -> str:
    params = {
        "auth_key": key,
        "auth_timestamp": str(int(time.time())),
        "auth_version": "1.0",
        "body_md5": hashlib.md5(body).hexdigest(),
    }
    query = "&".join(f"{k}={params[k]}" for k in sorted(params))
    path = f"/apps/{app_id}/events"
    to_sign = f"POST\n{path}\n{query}".encode()
    signature = hmac.new(secret.encode(), to_sign, hashlib.sha256).hexdigest()
    return f"{path}?{query}&auth_signature={signature}"


# Targets: a server, how a load client subscribes to it, how a message is published to it.


@dataclass
class Target:
    name: str
    server: ServerProc
    ws: dict[str, Any]
    """Load-client spec: host, port, path, proto (leap | sio | pusher | plain) and its params."""
    pub_port: int
    build_publish: Callable[[bytes], bytes]
    """Raw HTTP request that publishes one message whose ``d`` is the given JSON."""
    wire_bytes: int = 0
    """Size of the WebSocket payload a subscriber receives for one message."""
    info: dict[str, Any] = field(default_factory=dict)


_SAMPLE = payload(0, 1_700_000_000_000_000_000)


def switchboard_proc(
    name: str, *, log_level: str = "warning", extra: Sequence[str] = (), ready_text: str
) -> ServerProc:
    """A ``switchboard serve`` on a free port with a fresh data directory (not started)."""
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="sb-bench-"))
    argv = [SWITCHBOARD_BIN, "serve", "--port", str(port), "--data", str(tmp / "data")]
    argv += ["--log-level", log_level, *extra]
    return ServerProc(name, argv, port, ready_text=ready_text, tmpdir=tmp)


def leap_publish_builder(port: int, auth: dict[str, str]) -> Callable[[bytes], bytes]:
    """Raw ``POST /v1/channels/bench/messages`` requests to a Switchboard node."""
    path = f"/v1/channels/{CHANNEL}/messages"

    def build(d: bytes) -> bytes:
        return http_request("POST", path, port, b'{"e":"m","d":' + d + b"}", auth)

    return build


async def start_switchboard(
    servers: Servers, *, log_level: str = "warning", extra: Sequence[str] = ()
) -> Target:
    server = switchboard_proc(
        "switchboard", log_level=log_level, extra=extra, ready_text="Project token:"
    )
    port = server.port
    assert server.tmpdir is not None
    data = server.tmpdir / "data"
    await servers.start(server)
    out = server.output()
    project_id = re.search(r"Project ID:\s+(\S+)", out)
    ptk = re.search(r"Project token:\s+(\S+)", out)
    if project_id is None or ptk is None:
        raise RuntimeError(f"no project in the banner:\n{out}")
    auth = {"Authorization": ptk.group(1)}
    async with HttpPool(port, 1) as pool:
        await pool.json("PUT", f"/v1/channels/{CHANNEL}", {"type": "unprotected"}, auth)
    build = leap_publish_builder(port, auth)
    target = Target(
        "switchboard",
        server,
        {
            "port": port,
            "path": "/ws?encoding=json&compression=none",
            "proto": "leap",
            "project_id": project_id.group(1),
            "channel": CHANNEL,
        },
        port,
        build,
        len(leap_message_frame_payload(_SAMPLE)),
        {"project_id": project_id.group(1), "ptk": ptk.group(1), "data_dir": str(data)},
    )
    return target


async def start_redis(servers: Servers, binary: str = "redis-server") -> ServerProc:
    """A fresh ``redis-server`` on a free port of 127.0.0.1, keeping nothing on disk."""
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="sb-bench-redis-"))
    server = ServerProc(
        "redis-server",
        [
            binary,
            "--port",
            str(port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
        ],
        port,
        tmpdir=tmp,
    )
    return await servers.start(server)


async def start_switchboard_redis(servers: Servers) -> Target:
    """Switchboard on its own fresh ``redis-server`` (store and broker in Redis), as one node."""
    redis = await start_redis(servers)
    target = await start_switchboard(servers, extra=["--redis", f"redis://{HOST}:{redis.port}/0"])
    target.name = "switchboard-redis"
    target.server.extra_pids.append(redis.pid)
    return target


async def start_psio(servers: Servers) -> Target:
    port = free_port()
    server = await servers.start(
        ServerProc(
            "python-socketio",
            [PYTHON, str(PEERS_DIR / "psio_server.py"), "--port", str(port)],
            port,
        )
    )

    def build(d: bytes) -> bytes:
        return http_request("POST", "/publish", port, d)

    ws = {"port": port, "path": "/socket.io/?EIO=4&transport=websocket", "proto": "sio"}
    return Target("python-socketio", server, ws, port, build, len(b'42["m",' + _SAMPLE + b"]"))


async def start_node_socketio(servers: Servers) -> Target:
    port = free_port()
    server = await servers.start(
        ServerProc(
            "socket.io (Node)", ["node", str(PEERS_DIR / "socketio_server.cjs"), str(port)], port
        )
    )

    def build(d: bytes) -> bytes:
        return http_request("POST", "/publish", port, d)

    ws = {"port": port, "path": "/socket.io/?EIO=4&transport=websocket", "proto": "sio"}
    return Target("socket.io (Node)", server, ws, port, build, len(b'42["m",' + _SAMPLE + b"]"))


SOKETI_APP = ("app-id", "app-key", "app-secret")


async def start_soketi(servers: Servers) -> Target:
    port = free_port()
    env = {
        "SOKETI_HOST": HOST,
        "SOKETI_PORT": str(port),
        "SOKETI_METRICS_SERVER_PORT": str(free_port()),
        "SOKETI_CLUSTER_PORT": str(free_port()),
    }
    server = await servers.start(
        ServerProc(
            "soketi",
            ["node", str(BENCH_DIR / "node_modules/@soketi/soketi/bin/server.js"), "start"],
            port,
            env=env,
            ready_text="Server is up and running",
        )
    )
    app_id, key, secret = SOKETI_APP

    def build(d: bytes) -> bytes:
        body = json.dumps(
            {"name": "m", "channel": CHANNEL, "data": d.decode()}, separators=(",", ":")
        ).encode()
        return http_request("POST", pusher_signed_path(app_id, key, secret, body), port, body)

    ws = {
        "port": port,
        "path": f"/app/{key}?protocol=7&client=js&version=8.4.0&flash=false",
        "proto": "pusher",
        "channel": CHANNEL,
    }
    wire = json.dumps(
        {"event": "m", "channel": CHANNEL, "data": _SAMPLE.decode()}, separators=(",", ":")
    )
    return Target("soketi", server, ws, port, build, len(wire))


async def start_websockets(servers: Servers) -> Target:
    port, pub_port = free_port(), free_port()
    server = await servers.start(
        ServerProc(
            "websockets.broadcast",
            [
                PYTHON,
                str(PEERS_DIR / "ws_server.py"),
                "--port",
                str(port),
                "--pub-port",
                str(pub_port),
            ],
            port,
            ready_text="listening",
        )
    )

    def build(d: bytes) -> bytes:
        return http_request("POST", "/publish", pub_port, leap_message_frame_payload(d))

    ws = {"port": port, "path": "/", "proto": "plain"}
    return Target(
        "websockets.broadcast",
        server,
        ws,
        pub_port,
        build,
        len(leap_message_frame_payload(_SAMPLE)),
    )


async def start_floor(servers: Servers, *, batched: bool = False) -> Target:
    port = free_port()
    name = "floor-batched" if batched else "floor"
    argv = [PYTHON, str(PEERS_DIR / "floor_server.py"), "--port", str(port)]
    server = await servers.start(ServerProc(name, [*argv, "--batched"] if batched else argv, port))

    def build(d: bytes) -> bytes:
        return http_request("POST", "/publish", port, leap_message_frame_payload(d))

    ws = {"port": port, "path": "/ws", "proto": "plain"}
    return Target(name, server, ws, port, build, len(leap_message_frame_payload(_SAMPLE)))


async def start_floor_batched(servers: Servers) -> Target:
    return await start_floor(servers, batched=True)


STARTERS: dict[str, Callable[[Servers], Awaitable[Target]]] = {
    "switchboard": start_switchboard,
    "switchboard-redis": start_switchboard_redis,
    "python-socketio": start_psio,
    "socket.io-node": start_node_socketio,
    "soketi": start_soketi,
    "websockets": start_websockets,
    "floor": start_floor,
    "floor-batched": start_floor_batched,
}


def missing_peer(name: str) -> str | None:
    """Why a peer cannot run here, or None."""
    if name == "python-socketio":
        try:
            import socketio  # noqa: F401
        except ImportError:
            return "python-socketio is not installed (.venv/bin/pip install python-socketio)"
    if name in ("socket.io-node", "soketi"):
        if shutil.which("node") is None:
            return "node is not installed"
        module = "socket.io" if name == "socket.io-node" else "@soketi/soketi"
        if not (BENCH_DIR / "node_modules" / module).exists():
            return f"npm package {module} is missing (cd bench && npm ci)"
    return None


# The load client (a separate process; see _loadclient.py).


class LoadClient:
    """Drives ``_loadclient.py`` over its stdin/stdout, one JSON object per line."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> LoadClient:
        self.proc = await asyncio.create_subprocess_exec(
            PYTHON,
            str(BENCH_DIR / "_loadclient.py"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            preexec_fn=_die_with_parent,
            limit=2**24,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def send(self, msg: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
        await self.proc.stdin.drain()

    async def read(self, timeout: float | None = None) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError("the load client exited")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"load client: {answer['error']}")
        return answer

    async def call(self, msg: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        await self.send(msg)
        return await self.read(timeout)

    async def connect(self, target: Target, n: int, **extra: Any) -> dict[str, Any]:
        """Open ``n`` more connections to ``target`` and wait until every one is subscribed."""
        spec = {"host": HOST, **target.ws, **extra}
        answer = await self.call({"cmd": "connect", "spec": spec, "n": n}, timeout=600)
        if answer["failed"]:
            raise RuntimeError(
                f"{target.name}: {answer['failed']} of {n} connections failed: {answer['errors']}"
            )
        return answer


# Reporting.


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_int(x: float) -> str:
    return "—" if x != x else f"{x:,.0f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(lines)


def run_main(main: Callable[[], Coroutine[Any, Any, int]]) -> None:
    """Run a benchmark's async main on uvloop when installed; exit with its code."""
    raise_nofile()
    code: int
    try:
        try:
            import uvloop
        except ImportError:
            code = asyncio.run(main())
        else:
            code = uvloop.run(main())
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped", file=sys.stderr)
        code = 130
    sys.exit(code)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@contextlib.contextmanager
def timer() -> Iterator[list[float]]:
    out: list[float] = []
    t0 = time.perf_counter()
    try:
        yield out
    finally:
        out.append(time.perf_counter() - t0)
