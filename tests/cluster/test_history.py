"""Channel history across two real ``switchboard serve --redis`` processes on one Redis:
one offset sequence whichever node a message goes through, the same history read from
either node, trimming seen from both, and a policy change on one node reaching client
messages on the other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, launch, stop
from tests.e2e.leap import Leap, leap

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def nodes(redis_url: str, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    a = launch(tmp_path / "a", "--redis", redis_url)
    b = launch(tmp_path / "b", "--redis", redis_url, credentials=(a.project_id, a.project_token))
    try:
        yield a, b
    finally:
        for server in (a, b):
            if server.process is not None and server.process.poll() is None:
                stop(server)


@pytest.fixture
async def rest(nodes: tuple[Server, Server]) -> AsyncIterator[tuple[httpx.AsyncClient, ...]]:
    a, b = nodes
    async with (
        httpx.AsyncClient(base_url=a.api, headers=a.headers) as via_a,
        httpx.AsyncClient(base_url=b.api, headers=b.headers) as via_b,
    ):
        yield via_a, via_b


async def ok(call: Any) -> Any:
    response: httpx.Response = await call
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def history(http: httpx.AsyncClient, channel: str) -> dict[str, Any]:
    page: dict[str, Any] = await ok(
        http.get(f"/channels/{channel}/messages", params={"limit": 1000})
    )
    return page


async def message(client: Leap) -> dict[str, Any]:
    d: dict[str, Any] = (await client.dispatch("MESSAGE"))["d"]
    return d


async def test_one_offset_sequence_through_both_nodes(
    nodes: tuple[Server, Server], rest: tuple[httpx.AsyncClient, ...]
) -> None:
    a, b = nodes
    via_a, via_b = rest
    await ok(via_a.put("/channels/room", json={"type": "public", "history": {"size": 100}}))
    token = (await ok(via_a.post("/channels/tokens", json={})))["token"]["id"]
    async with (
        leap(a.ws_url, a.project_id, token) as on_a,
        leap(b.ws_url, b.project_id, token) as on_b,
    ):
        assert (await on_a.subscribe("room"))["e"] == "AVAILABLE"
        await on_b.dispatch("AVAILABLE")  # the token's connection on the other node joins
        sent: list[Any] = []
        seen_a: list[dict[str, Any]] = []
        seen_b: list[dict[str, Any]] = []
        for i in range(10):
            # REST through A, then through B: both sockets get each.
            for n, http in enumerate((via_a, via_b)):
                sent.append(["rest", i, n])
                await ok(http.post("/channels/room/messages", json={"e": "m", "d": sent[-1]}))
                seen_a.append(await message(on_a))
                seen_b.append(await message(on_b))
            # A client MESSAGE on each node: the other socket gets it.
            sent.append(["client", i, 0])
            await on_a.publish("room", "m", sent[-1])
            seen_b.append(await message(on_b))
            sent.append(["client", i, 1])
            await on_b.publish("room", "m", sent[-1])
            seen_a.append(await message(on_a))
    epoch = (await history(via_a, "room"))["epoch"]
    # One sequence 1..40 in publish order, whichever node took the message: each
    # message's offset is its place in `sent`.
    assert sorted({m["offset"] for m in seen_a + seen_b}) == list(range(1, 41))
    for seen in (seen_a, seen_b):
        assert {m["epoch"] for m in seen} == {epoch}
        offsets = [m["offset"] for m in seen]
        assert offsets == sorted(offsets)
        assert [m["d"] for m in seen] == [sent[o - 1] for o in offsets]
    # Either node answers the same history, in that order.
    page_a, page_b = await history(via_a, "room"), await history(via_b, "room")
    assert page_a == page_b
    assert [m["offset"] for m in page_a["messages"]] == list(range(1, 41))
    assert [m["d"] for m in page_a["messages"]] == sent
    assert (page_a["top_offset"], page_a["first_offset"]) == (40, 1)


async def test_trimming_is_seen_from_both_nodes(rest: tuple[httpx.AsyncClient, ...]) -> None:
    via_a, via_b = rest
    await ok(via_b.put("/channels/t", json={"type": "public", "history": {"size": 3, "ttl_s": 1}}))
    for n in range(6):
        http = via_a if n % 2 == 0 else via_b
        await ok(http.post("/channels/t/messages", json={"e": "m", "d": n}))
    for http in rest:
        page = await history(http, "t")
        assert [(m["offset"], m["d"]) for m in page["messages"]] == [(4, 3), (5, 4), (6, 5)]
        assert (page["top_offset"], page["first_offset"]) == (6, 4)
    await asyncio.sleep(1.1)  # the bound under test is a wall-clock age
    for http in rest:
        page = await history(http, "t")
        assert (page["messages"], page["top_offset"], page["first_offset"]) == ([], 6, 7)
    # A change of bounds through one node is the policy both answer with.
    await ok(via_a.patch("/channels/t", json={"history": {"size": 50, "ttl_s": 60}}))
    for http in rest:
        channel = (await ok(http.get("/channels/t")))["channel"]
        assert channel["history"] == {"size": 50, "ttl_s": 60}
    await ok(via_b.post("/channels/t/messages", json={"e": "m", "d": 6}))
    pages = [await history(http, "t") for http in rest]
    assert pages[0] == pages[1]
    assert [m["offset"] for m in pages[0]["messages"]] == [7]


async def test_a_policy_change_on_one_node_reaches_client_messages_on_the_other(
    nodes: tuple[Server, Server], rest: tuple[httpx.AsyncClient, ...]
) -> None:
    """Node B skips the store for client MESSAGEs to a channel it knows keeps no
    history; turning history on through node A must end that on B too (the broker's
    HistoryChanged event), and turning it off again must be seen as well."""
    a, b = nodes
    via_a, _ = rest
    await ok(via_a.put("/channels/c", json={"type": "public"}))
    token = (await ok(via_a.post("/channels/tokens", json={})))["token"]["id"]
    async with (
        leap(b.ws_url, b.project_id, token) as on_b,
        leap(a.ws_url, a.project_id, token) as on_a,
    ):
        assert (await on_b.subscribe("c"))["e"] == "AVAILABLE"
        await on_a.dispatch("AVAILABLE")
        for n in range(3):  # B now knows c keeps no history
            await on_b.publish("c", "m", n)
            assert await message(on_a) == {"e": "m", "d": n}
        await ok(via_a.patch("/channels/c", json={"history": {"size": 100}}))
        # The event crosses Redis's pub/sub: B may take a message or two published in
        # the same instant as the change for earlier, but never goes on without offsets.
        sent, kept = 3, []
        while not kept:
            await on_b.publish("c", "m", sent)
            got = await message(on_a)
            if "offset" in got:
                kept.append(got)
            sent += 1
            assert sent < 50, "node B never learnt that c keeps history"
        for _ in range(5):
            await on_b.publish("c", "m", sent)
            kept.append(await message(on_a))
            sent += 1
        assert [m["offset"] for m in kept] == list(range(1, 7))
        page = await history(via_a, "c")
        assert [m["d"] for m in page["messages"]] == [m["d"] for m in kept]
        # Off again: B's appends find it off (no cache to go stale that way).
        await ok(via_a.patch("/channels/c", json={"history": None}))
        await on_b.publish("c", "m", "after")
        assert await message(on_a) == {"e": "m", "d": "after"}
