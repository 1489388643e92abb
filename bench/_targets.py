"""Targets: a server under test, how the load client subscribes to it, how a message is published.

One ``start_*`` per server (``STARTERS``, by the name the command lines take; ``LABELS``, by the
name reports print): Switchboard (alone, on its own Redis, or with ``--metrics`` and a scraper)
and its peers (python-socketio, Socket.IO on Node, soketi, ``websockets.broadcast()``, the
aiohttp floor and the batched floor; ``bench/peers/``). Each returns a ``Target`` that knows
the raw HTTP request publishing one message and the size of the frame a subscriber gets.
Also here: the message payload every benchmark sends and the Pusher API signature soketi wants.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _http_load import HttpPool, http_request
from _metrics_scraper import start_scraping
from _procs import BENCH_DIR, PYTHON
from _servers import HOST, ServerProc, Servers, free_port, start_redis

PEERS_DIR = BENCH_DIR / "peers"
SWITCHBOARD_BIN = str(Path(PYTHON).parent / "switchboard")
CHANNEL = "bench"
PAYLOAD_BYTES = 100
"""Size of a message's ``d`` as JSON: ``{"seq":…,"p":"~<send time ns>~xxxx…"}``."""


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
    name: str,
    *,
    log_level: str = "warning",
    extra: Sequence[str] = (),
    ready_text: str,
    src: str | None = None,
) -> ServerProc:
    """A ``switchboard serve`` on a free port with a fresh data directory (not started); with
    ``src``, the code of that source tree (``PYTHONPATH=src python -m switchboard.server.cli``)
    instead of this checkout's."""
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="sb-bench-"))
    command = [SWITCHBOARD_BIN] if src is None else [PYTHON, "-m", "switchboard.server.cli"]
    argv = [*command, "serve", "--port", str(port), "--data", str(tmp / "data")]
    argv += ["--log-level", log_level, *extra]
    env = {} if src is None else {"PYTHONPATH": src}
    return ServerProc(name, argv, port, env=env, ready_text=ready_text, tmpdir=tmp)


def leap_publish_builder(port: int, auth: dict[str, str]) -> Callable[[bytes], bytes]:
    """Raw ``POST /v1/channels/bench/messages`` requests to a Switchboard node."""
    path = f"/v1/channels/{CHANNEL}/messages"

    def build(d: bytes) -> bytes:
        return http_request("POST", path, port, b'{"e":"m","d":' + d + b"}", auth)

    return build


async def start_switchboard(
    servers: Servers,
    *,
    log_level: str = "warning",
    extra: Sequence[str] = (),
    src: str | None = None,
) -> Target:
    server = switchboard_proc(
        "switchboard", log_level=log_level, extra=extra, ready_text="Project token:", src=src
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


async def join_switchboard(
    servers: Servers,
    first: Target,
    url: str,
    name: str,
    *,
    extra: Sequence[str] = (),
    src: str | None = None,
) -> Target:
    """Another ``switchboard serve`` on ``first``'s Redis ``url``: same project and token, its own
    port (a node of ``first``'s cluster)."""
    # "Store:" ends the banner of a node that joins: it makes no project of its own.
    server = await servers.start(
        switchboard_proc(name, extra=["--redis", url, *extra], ready_text="Store:", src=src)
    )
    build = leap_publish_builder(server.port, {"Authorization": first.info["ptk"]})
    return Target(
        name,
        server,
        {**first.ws, "port": server.port},
        server.port,
        build,
        first.wire_bytes,
        first.info,
    )


async def start_switchboard_redis(servers: Servers) -> Target:
    """Switchboard on its own fresh ``redis-server`` (store and broker in Redis), as one node."""
    redis = await start_redis(servers)
    target = await start_switchboard(servers, extra=["--redis", f"redis://{HOST}:{redis.port}/0"])
    target.name = "switchboard-redis"
    target.server.extra_pids.append(redis.pid)
    return target


async def start_switchboard_workers2(servers: Servers) -> Target:
    """``serve --redis --workers 2`` on its own fresh ``redis-server``: a supervisor and two
    worker nodes on one port (``SO_REUSEPORT``). ``ServerProc.pids`` is the supervisor's process
    tree, so CPU and writes count both workers (and the supervisor, idle); Redis's CPU is added."""
    redis = await start_redis(servers)
    url = f"redis://{HOST}:{redis.port}/0"
    target = await start_switchboard(servers, extra=["--redis", url, "--workers", "2"])
    target.name = "switchboard-workers2"
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


async def start_switchboard_metrics(servers: Servers) -> Target:
    """Switchboard with ``--metrics``, its ``/metrics`` scraped every second from now on."""
    target = await start_switchboard(servers, extra=["--metrics"])
    target.name = "switchboard-metrics"
    start_scraping(target.pub_port)
    return target


STARTERS: dict[str, Callable[[Servers], Awaitable[Target]]] = {
    "switchboard": start_switchboard,
    "switchboard-redis": start_switchboard_redis,
    "switchboard-workers2": start_switchboard_workers2,
    "python-socketio": start_psio,
    "socket.io-node": start_node_socketio,
    "soketi": start_soketi,
    "websockets": start_websockets,
    "floor": start_floor,
    "floor-batched": start_floor_batched,
    "switchboard-metrics": start_switchboard_metrics,
}
LABELS = {
    "switchboard": "Switchboard",
    "python-socketio": "python-socketio (room emit)",
    "socket.io-node": "Socket.IO on Node (room emit)",
    "soketi": "soketi 1.6.1 (uWS)",
    "websockets": "websockets broadcast()",
    "floor": "floor (pre-built frame)",
    "floor-batched": "floor, one write per turn",
    "switchboard-redis": "Switchboard on Redis (node + Redis CPU)",
    "switchboard-workers2": "Switchboard on Redis, --workers 2 (+ Redis CPU)",
    "switchboard-metrics": "Switchboard --metrics, scraped every 1 s",
}
"""How reports name each target."""


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
