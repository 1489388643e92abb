"""Batches on a two-node cluster (one real Redis): every subscriber, on either node, gets
each message of many concurrent broadcasts and batches once, in each channel's order;
an idempotency key holds across nodes (docs/batch.md)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, node_pair
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
