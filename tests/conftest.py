"""Fixtures shared by every test directory: real servers on free ports.

``node``: a server in the test's own event loop (real sockets on 127.0.0.1, a real
SQLite file), with a fresh project and its project token. Cheap: start one per test.

``http``: an httpx client for ``node``'s REST API with its project token.

``spawn_server``: a real ``switchboard serve`` process, for what only a process shows
(the command line, the banner, SIGTERM, ``kill -9`` and a restart).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from switchboard.server.config import Limits, Settings
from switchboard.server.node import Node

if TYPE_CHECKING:
    from tests.cluster.redis_cluster import RedisClusterSet

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """How to reach a running server, and the project made for the test."""

    base_url: str
    project_id: str
    project_token: str
    node: Node | None = None
    process: subprocess.Popen[str] | None = None
    data_dir: Path | None = None
    output: list[str] = field(default_factory=list)

    @property
    def api(self) -> str:
        return self.base_url + "/v1"

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http", "ws", 1) + "/ws"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": self.project_token}


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    limits = overrides.pop("limits", None) or Limits()
    base: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 0,
        "data_dir": data_dir,
        "heartbeat_interval_ms": 30_000,
        "shutdown_grace_s": 2.0,
        "limits": limits,
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


async def start_node(data_dir: Path, **overrides: object) -> Server:
    node = Node(make_settings(data_dir, **overrides))
    await node.start()
    assert node.bootstrap is not None, "a fresh data dir makes the default project"
    return Server(
        node.base_url,
        node.bootstrap.project.id,
        node.bootstrap.project_token,
        node=node,
        data_dir=data_dir,
    )


async def join_node(first: Server, data_dir: Path, **overrides: object) -> Server:
    """Another in-process node of ``first``'s cluster (same Redis): same project, own port."""
    node = Node(make_settings(data_dir, **overrides))
    await node.start()
    assert node.bootstrap is None, "the cluster has its project already"
    return Server(node.base_url, first.project_id, first.project_token, node=node)


@asynccontextmanager
async def running_node(data_dir: Path, **overrides: object) -> AsyncIterator[Server]:
    """An in-process node (``start_node``), stopped on the way out."""
    server = await start_node(data_dir, **overrides)
    try:
        yield server
    finally:
        assert server.node is not None
        await server.node.stop()


@asynccontextmanager
async def node_pair(
    redis_url: str, tmp_path: Path, **overrides: object
) -> AsyncIterator[tuple[Server, Server]]:
    """Two in-process nodes of one cluster on ``redis_url``; both stopped on the way out."""
    a = await start_node(tmp_path / "a", redis_url=redis_url, **overrides)
    try:
        b = await join_node(a, tmp_path / "b", redis_url=redis_url, **overrides)
        try:
            yield a, b
        finally:
            assert b.node is not None
            await b.node.stop()
    finally:
        assert a.node is not None
        await a.node.stop()


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_node(tmp_path / "data") as server:
        yield server


@pytest.fixture
async def http(node: Server) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for ``node``'s REST API (``/v1``), with its project token."""
    async with httpx.AsyncClient(base_url=node.api, headers=node.headers) as client:
        yield client


async def open_raw(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A bare TCP connection to ``server``, for writing HTTP by hand."""
    host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


def json_request_head(method: str, path: str, project_token: str, content_length: int) -> bytes:
    """The head of an authenticated JSON request, to be followed by its body by hand."""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {project_token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    ).encode()


_BANNER_ID = re.compile(r"Project ID:\s+(\S+)")
_BANNER_TOKEN = re.compile(r"Project token:\s+(\S+)")


def switchboard_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "switchboard.server.cli", *args]


def launch(
    data_dir: Path,
    *extra: str,
    port: int | None = None,
    credentials: tuple[str, str] | None = None,
) -> Server:
    """Start ``switchboard serve`` and wait until it answers /healthz.

    On a fresh data dir the project ID and token come from the banner; on a restart
    pass the earlier ones as ``credentials``.
    """
    import httpx

    fresh = credentials is None and not (data_dir / "switchboard.sqlite3").exists()
    port = port or free_port()
    proc = subprocess.Popen(
        switchboard_cmd("serve", "--port", str(port), "--data", str(data_dir), *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    output: list[str] = []
    # The banner is printed once the socket listens. Its "Store:" line ends it on a
    # restart; a first start adds five lines about the project it created.
    while not output or "Store:" not in output[-1]:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"server exited with {proc.wait()}: {''.join(output)}")
        output.append(line)
    if fresh:
        output += [proc.stdout.readline() for _ in range(5)]
        text = "".join(output)
        project, token = _BANNER_ID.search(text), _BANNER_TOKEN.search(text)
        assert project and token, text
        credentials = (project.group(1), token.group(1))
    project_id, project_token = credentials or ("", "")
    base = f"http://127.0.0.1:{port}"
    with httpx.Client() as client:
        assert client.get(base + "/healthz").status_code == 200
    return Server(base, project_id, project_token, process=proc, data_dir=data_dir, output=output)


def stop(server: Server, sig: int = signal.SIGTERM) -> int:
    assert server.process is not None
    server.process.send_signal(sig)
    code = server.process.wait(timeout=20)
    if server.process.stdout:
        server.process.stdout.close()
    return code


@pytest.fixture
def spawn_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``spawn_server(data_dir=None, *args)`` starts a server process; all are stopped after."""
    started: list[Server] = []

    def spawn(
        data_dir: Path | None = None,
        *extra: str,
        port: int | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> Server:
        server = launch(data_dir or tmp_path / "data", *extra, port=port, credentials=credentials)
        started.append(server)
        return server

    yield spawn
    for server in started:
        if server.process is not None and server.process.poll() is None:
            stop(server, signal.SIGKILL)


@dataclass
class RedisServer:
    """A real ``redis-server`` started by the tests on a free port."""

    port: int
    process: subprocess.Popen[bytes]
    directory: Path
    persist: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def start(self) -> None:
        """(Re)start on the same port."""
        self.process = _spawn_redis(self.port, self.directory, self.persist)


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Block until something accepts TCP connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _spawn_redis(port: int, directory: Path, persist: bool = False) -> subprocess.Popen[bytes]:
    import redis

    # With persist, every write is in the append-only file before Redis answers, so a
    # restart finds it all; without, Redis keeps nothing (like the machine's own).
    durability = ["yes", "--appendfsync", "always"] if persist else ["no"]
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            *durability,
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)
    client.close()
    return proc


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own that keeps its data across a restart (AOF)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    server = RedisServer(port, _spawn_redis(port, tmp_path, persist=True), tmp_path, True)
    yield server
    if server.process.poll() is None:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the test session; see ``redis_url`` for a clean database."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    directory = tmp_path_factory.mktemp("redis")
    port = free_port()
    server = RedisServer(port, _spawn_redis(port, directory), directory)
    yield server
    if server.process.poll() is None:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    import redis

    if redis_server.process.poll() is not None:
        redis_server.start()
    with redis.Redis(port=redis_server.port) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster_session(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisClusterSet]:
    """One Redis Cluster (three masters, a replica each) for the test session; see
    ``redis_cluster_url`` for an empty one."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server is not installed")
    from tests.cluster.redis_cluster import redis_cluster

    with redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_url(redis_cluster_session: RedisClusterSet) -> str:
    """The session's Redis Cluster, emptied for this test."""
    redis_cluster_session.flush()
    return redis_cluster_session.url
