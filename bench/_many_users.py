"""``many_users.py``'s parts: its users, groups and request schedule, the REST setup, the load
clients spread over processes, and the merged answers of those clients.

Users are ``0 … N-1``; user ``u`` has a token, a personal private channel ``u<u>`` and belongs to
group ``u // group_size`` (a private channel ``g<g>``), on node ``u % nodes``. Request ``j`` of a
phase is a direct message or a group publish (``Workload.request``), sent through node
``j % nodes``; what each user should receive from the first R requests is known in advance
(``Workload.expected``), so every connection's frame count can be checked.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from _http_load import HttpPool, http_request
from _loadclient_driver import LoadClient
from _targets import Target, payload

PER_SOURCE = 5_000
"""Connections per client source address (127.0.0.x; see ``connects.py``)."""


@dataclass
class Workload:
    """N users in groups of ``group_size``; a share ``dm_share`` of the requests are direct
    messages (to users in turn), the rest publishes to groups (in turn)."""

    users: int
    group_size: int
    dm_share: float

    @property
    def groups(self) -> int:
        return self.users // self.group_size

    def dms_before(self, j: int) -> int:
        return math.floor(j * self.dm_share + 1e-9)

    def request(self, j: int) -> tuple[str, int]:
        """Request ``j``: ("dm", user) or ("group", group)."""
        before = self.dms_before(j)
        if self.dms_before(j + 1) > before:
            return "dm", before % self.users
        return "group", (j - before) % self.groups

    def expected(self, requests: int) -> list[int]:
        """Frames each user receives from requests ``0 … requests-1``."""
        dms = self.dms_before(requests)
        pubs = requests - dms
        per_user = [
            dms // self.users + (1 if u < dms % self.users else 0) for u in range(self.users)
        ]
        for u in range(self.users):
            g = u // self.group_size
            per_user[u] += pubs // self.groups + (1 if g < pubs % self.groups else 0)
        return per_user

    def deliveries(self, requests: int) -> int:
        return sum(self.expected(requests))


def request_builder(
    work: Workload, nodes: list[Target], tokens: list[str]
) -> Callable[[int, int | None], bytes]:
    """``build(j, when_ns)``: the raw HTTP request ``j``, to node ``j % nodes``, its payload
    carrying ``when_ns`` (the scheduled send time) for the latency measure."""
    auth = {"Authorization": nodes[0].info["ptk"]}

    def build(j: int, when_ns: int | None) -> bytes:
        kind, x = work.request(j)
        port = nodes[j % len(nodes)].pub_port
        path = (
            f"/v1/channels/tokens/{tokens[x]}/messages"
            if kind == "dm"
            else f"/v1/channels/g{x}/messages"
        )
        body = b'{"e":"m","d":' + payload(j, when_ns) + b"}"
        return http_request("POST", path, port, body, auth)

    return build


async def setup(nodes: list[Target], work: Workload, window: int) -> tuple[list[str], float]:
    """Through the REST API, spread over the nodes: a token per user, its personal channel and
    grant, a channel per group and a grant per member. The tokens and requests per second."""
    auth = {"Authorization": nodes[0].info["ptk"]}
    n = work.users
    tokens = [""] * n
    t0 = time.perf_counter()
    pools = [HttpPool(t.pub_port, window) for t in nodes]
    for pool in pools:
        await pool.__aenter__()
    sem = asyncio.Semaphore(window * len(nodes))
    calls = 0

    async def call(i: int, method: str, path: str, body: Any = None) -> Any:
        nonlocal calls
        async with sem:
            calls += 1
            return await pools[i % len(pools)].json(method, path, body, auth)

    async def user(u: int) -> None:
        answer = await call(u, "POST", "/v1/channels/tokens", {"state": {"user": u}})
        tokens[u] = answer["data"]["token"]["id"]
        await call(u, "PUT", f"/v1/channels/u{u}", {"type": "private"})
        await call(u, "PUT", f"/v1/channels/u{u}/subscribers/{tokens[u]}")

    async def group(g: int) -> None:
        await call(g, "PUT", f"/v1/channels/g{g}", {"type": "private"})
        for u in range(g * work.group_size, (g + 1) * work.group_size):
            await call(u, "PUT", f"/v1/channels/g{g}/subscribers/{tokens[u]}")

    try:
        await asyncio.gather(*(user(u) for u in range(n)))
        await asyncio.gather(*(group(g) for g in range(work.groups)))
    finally:
        for pool in pools:
            await pool.__aexit__()
    return tokens, calls / (time.perf_counter() - t0)


@dataclass
class Clients:
    """The load-client processes and the users each holds (its ``per_conn`` order)."""

    procs: list[LoadClient] = field(default_factory=list)
    users: list[list[int]] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [c.pid for c in self.procs]

    async def arm(self, expected: list[int], timeout: float, **extra: Any) -> None:
        for client, users in zip(self.procs, self.users, strict=True):
            await client.arm(sum(expected[u] for u in users), timeout, **extra)

    async def done(self, timeout: float) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(c.done(timeout) for c in self.procs)))

    async def counts(self, users: int) -> list[int]:
        """Every user's frame count since the last ``arm`` (-1: not connected)."""
        out = [-1] * users
        for client, ids in zip(self.procs, self.users, strict=True):
            for u, count in zip(ids, await client.per_conn(), strict=True):
                out[u] = count
        return out


async def connect(
    clients: Clients, node: Target, users: list[int], tokens: list[str], per_client: int
) -> float:
    """A node's users, ``per_client`` to a load-client process (each from its own source
    addresses); the seconds it took."""
    t0 = time.perf_counter()
    jobs = []
    for start in range(0, len(users), per_client):
        ids = users[start : start + per_client]
        client = LoadClient()
        await client.__aenter__()
        clients.procs.append(client)
        clients.users.append(ids)
        first = len(clients.procs) * 8  # eight addresses per process: 127.0.0.8, .16, ...
        sources = [f"127.0.0.{first + i}" for i in range(max(1, -(-len(ids) // PER_SOURCE)))]
        spec = {"channel": None, "tokens": [tokens[u] for u in ids], "expect_channels": 2}
        jobs.append(
            client.connect(node, len(ids), sources=sources, concurrency=16, retries=2, **spec)
        )
    await asyncio.gather(*jobs)
    return time.perf_counter() - t0


def merge_latency(answers: list[dict[str, Any]]) -> dict[str, float]:
    """p50 / p99 / p99.9 / max (ms) over every client's 10 µs histogram."""
    hist: dict[int, int] = {}
    top = 0.0
    for a in answers:
        for k, c in a.get("latency_hist", {}).items():
            hist[int(k)] = hist.get(int(k), 0) + c
        top = max(top, a.get("latency_ms", {}).get("max", 0.0))
    total = sum(hist.values())
    if not total:
        return {}
    out: dict[str, float] = {"n": float(total), "max": top}
    wanted = {"p50": 0.50, "p90": 0.90, "p99": 0.99, "p999": 0.999}
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        for name, q in list(wanted.items()):
            if seen > q * total:
                out[name] = (bucket + 0.5) / 100  # 10 µs buckets, in ms
                del wanted[name]
    return out


def spread(users: int, nodes: int) -> list[list[int]]:
    """User ``u`` on node ``u % nodes``: a group's ten members sit on every node."""
    return [list(range(k, users, nodes)) for k in range(nodes)]
