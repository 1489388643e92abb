"""Direct messages in bulk (docs/batch.md, "How a broadcast travels"): a broadcast's tokens,
and a batch's run of ``direct`` items with one message, go to the broker as one event; on
one node, on three nodes on one Redis (one event on the shared topic, which every node
hears) and on two nodes on a Redis Cluster (one event per token there). Every frame is
counted on every connection: none lost, none twice, each publisher's order kept, across
the single route and the bulk ones, with tokens connecting and leaving meanwhile."""

from __future__ import annotations

import asyncio
import json
import os
import random
import struct
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, join_node, start_node

pytestmark = pytest.mark.timeout(180)

CHUNK = 1000
"""Tokens per broadcast request (the route's cap)."""


@pytest.fixture(params=["sqlite", "redis", "redis-cluster"])
async def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[Server]]:
    """One node on SQLite, three nodes on one Redis, or two on a Redis Cluster."""
    if request.param == "sqlite":
        urls: list[str | None] = [None]
    else:
        fixture = "redis_url" if request.param == "redis" else "redis_cluster_url"
        url = request.getfixturevalue(fixture)
        urls = [url] * (3 if request.param == "redis" else 2)
    first = await start_node(tmp_path / "n0", redis_url=urls[0])
    servers = [first]
    try:
        for i, url in enumerate(urls[1:], 1):
            servers.append(await join_node(first, tmp_path / f"n{i}", redis_url=url))
        yield servers
    finally:
        for server in reversed(servers):
            assert server.node is not None
            await server.node.stop()


class Closed(Exception):
    """The server closed the socket (its close frame's code and reason)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"closed {code}: {reason}")
        self.code = code


class Socket:
    """A token connection read raw (cheap enough for a few thousand in one test): the
    ``(e, d)`` of every DIRECT_MESSAGE, in the order they came."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.got: list[tuple[str, Any]] = []
        self.task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, server: Server, token: str) -> Socket:
        """Connect and identify; a socket closed 4000 meanwhile (retryable: an IDENTIFY's
        store lookup that timed out on a loaded machine) is opened again, as Hop's
        clients do."""
        for attempt in range(1, 6):
            socket = await cls._connect(server)
            try:
                return await socket._identify(server, token)
            except Closed as closed:
                await socket.close()
                if closed.code != 4000 or attempt == 5:
                    raise
                await asyncio.sleep(0.2 * attempt)
        raise AssertionError("unreachable")

    @classmethod
    async def _connect(cls, server: Server) -> Socket:
        host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        writer.write(
            f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        await reader.readuntil(b"\r\n\r\n")
        return cls(reader, writer)

    async def _identify(self, server: Server, token: str) -> Socket:
        hello = await self.frame()
        assert hello["op"] == 1, hello
        self.send({"op": 2, "d": {"project_id": server.project_id, "token": token}})
        while (frame := await self.frame())["op"] != 0:
            pass
        assert frame["d"]["e"] == "INIT", frame
        self.task = asyncio.create_task(self._read())
        return self

    def send(self, frame: dict[str, Any]) -> None:
        payload = json.dumps(frame).encode()  # masked with a zero key: sent as is
        n = len(payload)
        head = bytes((0x81, 0x80 | n)) if n < 126 else struct.pack("!BBH", 0x81, 0xFE, n)
        self.writer.write(head + b"\x00\x00\x00\x00" + payload)

    async def frame(self) -> dict[str, Any]:
        head = await self.reader.readexactly(2)
        n = head[1] & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        payload = await self.reader.readexactly(n)
        if head[0] & 0x0F == 0x8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            raise Closed(code, payload[2:].decode(errors="replace"))
        assert head[0] & 0x0F == 0x1, head  # text: nobody asked for compression
        frame: dict[str, Any] = json.loads(payload)
        return frame

    async def _read(self) -> None:
        with_error = (asyncio.IncompleteReadError, ConnectionError, Closed)
        try:
            while True:
                frame = await self.frame()
                if frame["op"] == 0 and frame["d"]["e"] == "DIRECT_MESSAGE":
                    d = frame["d"]["d"]
                    self.got.append((d["e"], d["d"]))
        except with_error:
            return

    async def close(self) -> None:
        self.writer.close()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def make_tokens(server: Server, n: int) -> list[str]:
    assert server.node is not None
    service = server.node.service
    project = await service.store.get_project(server.project_id)
    assert project is not None
    gate = asyncio.Semaphore(16)

    async def one() -> str:
        async with gate:
            return (await service.create_token(project)).id

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def open_sockets(
    servers: list[Server], tokens: list[str], stack: AsyncExitStack
) -> list[Socket]:
    """One socket per token, the tokens spread over the nodes in turn."""
    gate = asyncio.Semaphore(64)

    async def one(i: int, token: str) -> Socket:
        async with gate:
            socket = await Socket.open(servers[i % len(servers)], token)
        stack.push_async_callback(socket.close)  # closed even if another one fails
        return socket

    return list(await asyncio.gather(*(one(i, t) for i, t in enumerate(tokens))))


async def ok(response: Any) -> Any:
    r = await response
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["failed"] == 0, data
    return data


async def until_counted(sockets: list[Socket], n: int, within_s: float = 30) -> None:
    async with asyncio.timeout(within_s):
        while any(len(s.got) < n for s in sockets):
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # anything twice would come now


async def test_broadcasts_to_thousands_of_tokens_reach_each_once_in_order(
    nodes: list[Server],
) -> None:
    """1,500 tokens spread over the nodes; two senders, each through its own node, send
    rounds of broadcasts (two requests: 1,000 and 500 tokens) and batches of ``direct``
    items: every socket gets every round of every sender once, in that sender's order."""
    tokens = await make_tokens(nodes[0], 1500)
    rounds = 6
    async with AsyncExitStack() as stack:
        sockets = await open_sockets(nodes, tokens, stack)
        apis = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=n.api, headers=n.headers, timeout=30)
            )
            for n in nodes
        ]

        async def sender(s: int) -> None:
            api = apis[s % len(apis)]
            for r in range(rounds):
                for start in range(0, len(tokens), CHUNK):
                    chunk = tokens[start : start + CHUNK]
                    if r % 2:
                        ops = [{"op": "direct", "token": t, "e": f"s{s}", "d": r} for t in chunk]
                        await ok(api.post("/batch", json={"requests": ops}))
                    else:
                        body = {"e": f"s{s}", "d": r, "tokens": chunk}
                        await ok(api.post("/broadcast", json=body))

        await asyncio.gather(sender(0), sender(1))
        await until_counted(sockets, 2 * rounds)
        for socket in sockets:
            per_sender: dict[str, list[int]] = defaultdict(list)
            for e, d in socket.got:
                per_sender[e].append(d)
            assert per_sender == {"s0": list(range(rounds)), "s1": list(range(rounds))}


async def test_single_and_bulk_direct_messages_from_one_publisher_keep_their_order(
    nodes: list[Server],
) -> None:
    """One publisher sends 1..N to 30 tokens (two sockets each, on two nodes where there
    are two), by the single route, a broadcast and a batch in turn, awaiting each
    answer: each socket gets 1..N in order."""
    tokens = await make_tokens(nodes[0], 30)
    messages = 45
    async with AsyncExitStack() as stack:
        sockets = await open_sockets(nodes, tokens, stack)
        sockets += await open_sockets(nodes[1:] + nodes[:1], tokens, stack)
        api = await stack.enter_async_context(
            httpx.AsyncClient(base_url=nodes[0].api, headers=nodes[0].headers, timeout=30)
        )
        for n in range(1, messages + 1):
            if n % 3 == 0:
                await ok(api.post("/broadcast", json={"e": "dm", "d": n, "tokens": tokens}))
            elif n % 3 == 1:
                ops = [{"op": "direct", "token": t, "e": "dm", "d": n} for t in tokens]
                await ok(api.post("/batch", json={"requests": ops}))
            else:
                for t in tokens:
                    r = await api.post(f"/channels/tokens/{t}/messages", json={"e": "dm", "d": n})
                    assert r.status_code == 200, r.text
        await until_counted(sockets, messages)
        for socket in sockets:
            assert socket.got == [("dm", n) for n in range(1, messages + 1)]


async def test_tokens_connecting_and_leaving_during_broadcasts_miss_nothing_while_on(
    nodes: list[Server],
) -> None:
    """Broadcasts stream to 200 tokens; 100 sockets stay, and the other 100 tokens'
    sockets come and go on random nodes. A socket that stays gets every message once, in
    order; one that came and went gets an unbroken run, in order, holding every
    broadcast sent after its INIT that was answered a second before it closed."""
    tokens = await make_tokens(nodes[0], 200)
    steady, coming = tokens[:100], tokens[100:]
    messages = 60
    rng = random.Random(int(os.environ.get("PYTEST_SEED", "21")))
    loop = asyncio.get_running_loop()
    answered: dict[int, tuple[float, float]] = {}
    """Each message's request: when it was sent, and when it was answered."""
    done = asyncio.Event()
    visits: list[tuple[float, float, list[int]]] = []

    async def come_and_go(token: str) -> None:
        while not done.is_set():
            socket = await Socket.open(rng.choice(nodes), token)
            opened = loop.time()
            await asyncio.sleep(rng.uniform(0.05, 1.5))
            closing = loop.time()
            await socket.close()
            visits.append((opened, closing, [d for _, d in socket.got]))

    async with AsyncExitStack() as stack:
        sockets = await open_sockets(nodes, steady, stack)
        api = await stack.enter_async_context(
            httpx.AsyncClient(base_url=nodes[-1].api, headers=nodes[-1].headers, timeout=30)
        )
        churn = [asyncio.create_task(come_and_go(t)) for t in coming]
        try:
            for n in range(1, messages + 1):
                sent = loop.time()
                await ok(api.post("/broadcast", json={"e": "dm", "d": n, "tokens": tokens}))
                answered[n] = (sent, loop.time())
                await asyncio.sleep(0.02)
        finally:
            done.set()
            await asyncio.gather(*churn)
        await until_counted(sockets, messages)
        for socket in sockets:
            assert socket.got == [("dm", n) for n in range(1, messages + 1)]
    assert len(visits) >= len(coming)
    for opened, closing, got in visits:
        if got:
            assert got == list(range(got[0], got[-1] + 1)), got  # unbroken, in order
        # Sent after the INIT, answered a second before the close: it must have come.
        due = [n for n, (at, back) in answered.items() if at > opened and back < closing - 1.0]
        assert set(due) <= set(got), (due, got)
