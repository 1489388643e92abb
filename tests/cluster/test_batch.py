"""Batches on a two-node cluster (one real Redis): every subscriber, on either node, gets
each message of many concurrent broadcasts and batches once, in each channel's order;
an idempotency key holds across nodes (docs/batch.md)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster.redis_cluster import RedisClusterSet
from tests.cluster.slow_link import slow_link
from tests.cluster.test_redis_cluster import two_nodes
from tests.conftest import RedisServer, Server, join_node, node_pair, running_node, stop
from tests.e2e.leap import Leap, leap

CHANNELS = [f"room-{i}" for i in range(12)]
TOKENS_PER_NODE = 6
SENDERS = 6
ROUNDS = 5


@pytest.fixture
async def pair(redis_url: str, tmp_path: Path) -> AsyncIterator[tuple[Server, Server]]:
    async with node_pair(redis_url, tmp_path) as nodes:
        yield nodes


async def ok(response: httpx.Response | Any) -> Any:
    r = await response
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def drain(client: Leap, n: int) -> list[dict[str, Any]]:
    return [await client.dispatch() for _ in range(n)]


async def test_concurrent_batches_reach_both_nodes_once_in_order(
    pair: tuple[Server, Server],
) -> None:
    a, b = pair
    async with (
        httpx.AsyncClient(base_url=a.api, headers=a.headers) as via_a,
        httpx.AsyncClient(base_url=b.api, headers=b.headers) as via_b,
        AsyncExitStack() as stack,
    ):
        for channel in CHANNELS:
            await ok(via_a.put(f"/channels/{channel}", json={"type": "unprotected"}))
        tokens = [
            (await ok(via_a.post("/channels/tokens", json={})))["token"]["id"]
            for _ in range(2 * TOKENS_PER_NODE)
        ]
        watchers = []
        for node in (a, b):
            watcher = await stack.enter_async_context(leap(node.ws_url, node.project_id))
            for channel in CHANNELS:
                await watcher.subscribe(channel)
            watchers.append(watcher)
        holders = [
            await stack.enter_async_context(leap((a, b)[i % 2].ws_url, a.project_id, token))
            for i, token in enumerate(tokens)
        ]

        async def sender(s: int) -> None:
            http = (via_a, via_b)[s % 2]
            for r in range(ROUNDS):
                if r % 2:
                    body = {"e": f"s{s}", "d": r, "channels": CHANNELS, "tokens": tokens}
                    answer = await ok(http.post("/broadcast", json=body))
                else:
                    ops = [
                        {"op": "publish", "channel": c, "e": f"s{s}", "d": r} for c in CHANNELS
                    ] + [{"op": "direct", "token": t, "e": f"s{s}", "d": r} for t in tokens]
                    answer = await ok(http.post("/batch", json={"requests": ops}))
                assert answer["failed"] == 0, answer

        await asyncio.gather(*(sender(s) for s in range(SENDERS)))
        expected = SENDERS * ROUNDS
        for watcher in watchers:
            got: dict[tuple[str, str], list[int]] = defaultdict(list)
            for d in await drain(watcher, expected * len(CHANNELS)):
                got[(d["c"], d["d"]["e"])].append(d["d"]["d"])
            # Per channel and sender: every round once, in the order it was sent.
            assert len(got) == len(CHANNELS) * SENDERS
            assert all(rounds == list(range(ROUNDS)) for rounds in got.values())
            await watcher.nothing(0.2)
        for holder in holders:
            per_sender: dict[str, list[int]] = defaultdict(list)
            for d in await drain(holder, expected):
                assert d["e"] == "DIRECT_MESSAGE"
                per_sender[d["d"]["e"]].append(d["d"]["d"])
            assert per_sender == {f"s{s}": list(range(ROUNDS)) for s in range(SENDERS)}
            await holder.nothing(0.1)


async def test_an_idempotency_key_holds_across_nodes(pair: tuple[Server, Server]) -> None:
    a, b = pair
    async with (
        httpx.AsyncClient(base_url=a.api, headers=a.headers) as via_a,
        httpx.AsyncClient(base_url=b.api, headers=b.headers) as via_b,
    ):
        await ok(via_a.put("/channels/c", json={"type": "unprotected", "history": {"size": 50}}))
        async with leap(b.ws_url, b.project_id) as watcher:
            await watcher.subscribe("c")
            body = {"e": "pay", "d": 1, "channels": ["c"], "idempotency_key": "charge-1"}
            item = {"op": "publish", "channel": "c", "e": "item", "idempotency_key": "item-1"}
            calls = [(via_a, via_b)[i % 2].post("/broadcast", json=body) for i in range(10)] + [
                (via_a, via_b)[i % 2].post("/batch", json={"requests": [item]}) for i in range(10)
            ]
            responses = await asyncio.gather(*calls)
            got = [(d["d"]["e"]) for d in await drain(watcher, 2)]
            assert sorted(got) == ["item", "pay"]
            await watcher.nothing(0.3)
        broadcasts, batches = responses[:10], responses[10:]
        answers = [r.json() for r in broadcasts]
        done = [x["data"] for x in answers if x["success"]]
        assert all(x["error"]["code"] == "in_progress" for x in answers if not x["success"])
        assert sum(1 for d in done if "duplicate" not in d) <= 1
        results = [r.json()["data"]["results"][0] for r in batches]
        firsts = [r for r in results if r["success"] and "duplicate" not in r]
        assert len(firsts) <= 1
        assert all(r["success"] or r["error"]["code"] == "in_progress" for r in results)
        # Once finished, a retry on either node answers as the first did.
        for http in (via_a, via_b):
            again = await ok(http.post("/broadcast", json=body))
            assert again["duplicate"] is True and again["succeeded"] == 1
        history = await ok(via_a.get("/channels/c/messages"))
        assert [m["e"] for m in history["messages"]] in (["pay", "item"], ["item", "pay"])


async def test_a_thousand_targets_cost_a_few_round_trips(
    redis_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    """A node 40 ms (round trip) from Redis: a broadcast to 1,000 channels and 1,000
    tokens, and a batch of 1,000 direct messages, each take a few round trips, not one
    per target (which would be 40 s)."""
    async with (
        running_node(tmp_path / "a", redis_url=redis_url) as near,
        slow_link(redis_server.port, 0.020) as port,
    ):
        assert near.node is not None
        service = near.node.service
        project = await service.store.get_project(near.project_id)
        assert project is not None
        # The setup, a few calls at a time: 1,000 at once can wait over 2 s for a Redis
        # connection on a loaded machine.
        setup = asyncio.Semaphore(16)

        async def token() -> str:
            async with setup:
                return (await service.create_token(project)).id

        async def channel(name: str) -> None:
            async with setup:
                await service.create_channel(project, "unprotected", name)

        tokens = await asyncio.gather(*(token() for _ in range(1000)))
        channels = [f"c{i}" for i in range(1000)]
        await asyncio.gather(*(channel(c) for c in channels))
        far = await join_node(near, tmp_path / "b", redis_url=f"redis://127.0.0.1:{port}/0")
        try:
            async with httpx.AsyncClient(base_url=far.api, headers=far.headers, timeout=60) as api:
                await ok(api.get("/channels/c0"))  # the far node's connections are made
                body = {"e": "x", "channels": channels, "tokens": tokens, "idempotency_key": "k"}
                started = time.perf_counter()
                answer = await ok(api.post("/broadcast", json=body))
                broadcast_s = time.perf_counter() - started
                assert answer["succeeded"] == 2000
                ops = [{"op": "direct", "token": t, "e": "x", "d": i} for i, t in enumerate(tokens)]
                started = time.perf_counter()
                answer = await ok(api.post("/batch", json={"requests": ops}))
                batch_s = time.perf_counter() - started
                assert answer["succeeded"] == 1000
        finally:
            assert far.node is not None
            await far.node.stop()
    # About 10 round trips (auth, key, 4 append scripts, tokens, publish, answer) each.
    assert broadcast_s < 3.0 and batch_s < 3.0, (broadcast_s, batch_s)


async def test_batches_on_a_redis_cluster(
    tmp_path: Path, redis_cluster_session: RedisClusterSet
) -> None:
    """Two nodes on ``redis+cluster://``: a broadcast's and a batch's appends stay in the
    project's slot, their events go out on sharded topics (every master), each once."""
    redis_cluster_session.flush()
    a, b = two_nodes(tmp_path, redis_cluster_session)
    try:
        async with (
            httpx.AsyncClient(base_url=a.api, headers=a.headers) as api,
            leap(b.ws_url, b.project_id) as watcher,
        ):
            channels = [f"room-{i}" for i in range(24)]
            for channel in channels:
                await ok(api.put(f"/channels/{channel}", json={"type": "unprotected"}))
                assert (await watcher.subscribe(channel))["e"] == "AVAILABLE"
            token = (await ok(api.post("/channels/tokens", json={})))["token"]["id"]
            async with leap(b.ws_url, b.project_id, token) as holder:
                body = {"e": "all", "channels": channels, "tokens": [token], "idempotency_key": "k"}
                for _ in range(2):
                    assert (await ok(api.post("/broadcast", json=body)))["succeeded"] == 25
                ops = [
                    {"op": "publish", "channel": c, "e": "one", "d": i}
                    for i, c in enumerate(channels)
                ]
                ops.append({"op": "direct", "token": token, "e": "one"})
                assert (await ok(api.post("/batch", json={"requests": ops})))["failed"] == 0
                got = [await watcher.dispatch("MESSAGE", timeout=10) for _ in range(48)]
                assert sorted((d["c"], d["d"]["e"]) for d in got) == sorted(
                    [(c, "all") for c in channels] + [(c, "one") for c in channels]
                )
                dms = [
                    (await holder.dispatch("DIRECT_MESSAGE", timeout=10))["d"]["e"] for _ in "ab"
                ]
                assert dms == ["all", "one"]
                await watcher.nothing(0.3)
                await holder.nothing(0.1)
    finally:
        for server in (a, b):
            assert stop(server, signal.SIGTERM) == 0
