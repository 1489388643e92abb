"""Inbox recovery over raw Leap frames (docs/inbox.md, docs/protocol.md "History
recovery"): IDENTIFY ``recover: {"$inbox": {offset, epoch}}`` replays the token's missed
direct messages, then ``RECOVERY`` with ``c: null``; the failures; the seam between the
replay and live direct messages, with direct messages streaming while sockets are killed
and come back."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import msgspec
import pytest

from switchboard.server.history import INBOX_KEY, HistoryPage
from tests.conftest import Server
from tests.e2e.leap import Leap, leap
from tests.edge.test_gateway import make_token, ok

pytestmark = pytest.mark.timeout(60)


async def inbox_on(http: httpx.AsyncClient, size: int = 100, ttl_s: int = 300) -> None:
    await ok(http.patch("/settings", json={"inbox": {"size": size, "ttl_s": ttl_s}}))


async def send(http: httpx.AsyncClient, token: str, *values: int) -> None:
    for value in values:
        await ok(http.post(f"/channels/tokens/{token}/messages", json={"e": "dm", "d": value}))


async def epoch_of(http: httpx.AsyncClient, token: str) -> str:
    epoch: str = (await ok(http.get(f"/channels/tokens/{token}/messages")))["epoch"]
    return epoch


async def identify(client: Leap, project_id: str, token: str, recover: Any) -> dict[str, Any]:
    client.hello = await client.recv()
    d = {"project_id": project_id, "token": token}
    if recover is not None:
        d["recover"] = recover
    await client.send({"op": 2, "d": d})
    return await client.dispatch("INIT")


async def until_recovery(client: Leap) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The replayed DIRECT_MESSAGE dispatches, then the RECOVERY (c: null) that ends them."""
    replayed: list[dict[str, Any]] = []
    while True:
        d = await client.dispatch()
        if d["e"] == "RECOVERY":
            assert d["u"] is True and d["c"] is None, d
            return replayed, d
        assert d["e"] == "DIRECT_MESSAGE" and d["u"] is True and d["c"] is None, d
        replayed.append(d)


def values(dispatches: list[dict[str, Any]]) -> list[tuple[int, Any]]:
    return [(d["d"]["offset"], d["d"]["d"]) for d in dispatches]


async def test_identify_recovers_the_missed_direct_messages_then_goes_live(
    node: Server, http: httpx.AsyncClient
) -> None:
    await inbox_on(http)
    token = await make_token(http)
    await send(http, token, 10, 20, 30, 40)
    epoch = await epoch_of(http, token)
    async with leap(node.ws_url) as client:
        await identify(client, node.project_id, token, {"$inbox": {"offset": 1, "epoch": epoch}})
        replayed, recovery = await until_recovery(client)
        assert values(replayed) == [(2, 20), (3, 30), (4, 40)]
        assert replayed[0]["d"] == {"e": "dm", "d": 20, "offset": 2, "epoch": epoch}
        assert recovery["d"] == {"recovered": True, "epoch": epoch, "top_offset": 4}
        await client.nothing()
        await send(http, token, 50)
        live = await client.dispatch("DIRECT_MESSAGE")
        assert live["u"] is False and live["d"] == {"e": "dm", "d": 50, "offset": 5, "epoch": epoch}


async def test_without_a_position_the_answer_is_where_the_inbox_stands(
    node: Server, http: httpx.AsyncClient
) -> None:
    token = await make_token(http)
    async with leap(node.ws_url) as client:  # inboxes off: recover {} says nothing of them
        await identify(client, node.project_id, token, {})
        await client.nothing()
    assert node.node is not None  # ... and the node knows it now: no read at the next one
    assert (node.project_id, INBOX_KEY) in node.node.service.no_history
    async with leap(node.ws_url) as client:  # ... unless the client claimed a position
        await identify(client, node.project_id, token, {"$inbox": {"offset": 3, "epoch": "e"}})
        replayed, recovery = await until_recovery(client)
        assert replayed == []
        assert recovery["d"] == {
            "recovered": False,
            "reason": "no_history",
            "epoch": None,
            "top_offset": None,
        }
    await inbox_on(http)
    await send(http, token, 1, 2)
    epoch = await epoch_of(http, token)
    async with leap(node.ws_url) as client:
        await identify(client, node.project_id, token, {})
        assert await until_recovery(client) == (
            [],
            {
                "c": None,
                "u": True,
                "e": "RECOVERY",
                "d": {"recovered": True, "epoch": epoch, "top_offset": 2},
            },
        )
    # Hop's clients send no recover: nothing new but the offsets on DIRECT_MESSAGE.
    async with leap(node.ws_url, node.project_id, token) as client:
        await client.nothing()


async def test_the_gap_cannot_be_filled(node: Server, http: httpx.AsyncClient) -> None:
    await inbox_on(http, size=3)
    token = await make_token(http)
    await send(http, token, *range(1, 11))
    epoch = await epoch_of(http, token)
    cases = [
        ({"offset": 1, "epoch": epoch}, "too_old"),
        ({"offset": 6, "epoch": epoch}, "too_old"),  # first kept is 8: 7 is gone
        ({"offset": 3, "epoch": "00000000"}, "epoch_changed"),
        ({"offset": 11, "epoch": epoch}, "offset_ahead"),
    ]
    for since, reason in cases:
        async with leap(node.ws_url) as client:
            await identify(client, node.project_id, token, {"$inbox": since})
            replayed, recovery = await until_recovery(client)
            assert replayed == []
            assert recovery["d"] == {
                "recovered": False,
                "reason": reason,
                "epoch": epoch,
                "top_offset": 10,
            }
    async with leap(node.ws_url) as client:
        await identify(client, node.project_id, token, {"$inbox": {"offset": 7, "epoch": epoch}})
        replayed, recovery = await until_recovery(client)
        assert values(replayed) == [(8, 8), (9, 9), (10, 10)] and recovery["d"]["recovered"]
    # Off and on again: a new epoch, so an old position cannot be trusted.
    await ok(http.patch("/settings", json={"inbox": None}))
    await inbox_on(http, size=3)
    async with leap(node.ws_url) as client:
        await identify(client, node.project_id, token, {"$inbox": {"offset": 10, "epoch": epoch}})
        _, recovery = await until_recovery(client)
        assert recovery["d"]["reason"] == "epoch_changed"
        assert recovery["d"]["top_offset"] == 0 and recovery["d"]["epoch"] != epoch


async def test_tokenless_and_project_connections_have_no_inbox(
    node: Server, http: httpx.AsyncClient
) -> None:
    await inbox_on(http)
    async with leap(node.ws_url) as client:
        client.hello = await client.recv()
        recover = {"$inbox": {"offset": 0, "epoch": "x"}}
        await client.send({"op": 2, "d": {"project_id": node.project_id, "recover": recover}})
        await client.dispatch("INIT")
        await client.nothing()


def slow_reads(
    node: Server, during: Callable[[], Awaitable[None]], *, before_reading: bool
) -> list[int]:
    """Make node's inbox reads run ``during`` inside them: before the read (what it sends
    is in the replay and also held live) or after it (only held live)."""
    assert node.node is not None
    store = node.node.service.store
    read = store.read_inbox
    calls: list[int] = []

    async def read_inbox(
        project_id: str, token_id: str, since: int, limit: int
    ) -> HistoryPage | None:
        calls.append(since)
        if len(calls) == 1 and before_reading:
            await during()
        page = await read(project_id, token_id, since, limit)
        if len(calls) == 1 and not before_reading:
            await during()
        return page

    store.read_inbox = read_inbox  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("before_reading", [True, False])
async def test_direct_messages_sent_during_the_read_come_once_in_order(
    node: Server, http: httpx.AsyncClient, before_reading: bool
) -> None:
    await inbox_on(http)
    token = await make_token(http)
    await send(http, token, 1, 2, 3)
    epoch = await epoch_of(http, token)
    assert node.node is not None
    service = node.node.service

    async def send_meanwhile() -> None:
        project = await service.store.get_project(node.project_id)
        assert project is not None
        for value in (4, 5, 6):
            await service.direct_message(project, token, "dm", msgspec.Raw(b"%d" % value))

    calls = slow_reads(node, send_meanwhile, before_reading=before_reading)
    async with leap(node.ws_url, node.project_id, token) as other:  # not recovering
        async with leap(node.ws_url) as client:
            await identify(
                client, node.project_id, token, {"$inbox": {"offset": 1, "epoch": epoch}}
            )
            replayed, recovery = await until_recovery(client)
            live = [await client.dispatch("DIRECT_MESSAGE") for _ in range(5 - len(replayed))]
            await client.nothing()
        # The token's other connection got each live one once, as it was sent.
        plain = [await other.dispatch("DIRECT_MESSAGE") for _ in range(3)]
        assert [d["d"]["offset"] for d in plain] == [4, 5, 6]
    assert calls == [1]
    assert [d["d"]["offset"] for d in replayed + live] == [2, 3, 4, 5, 6]
    assert all(d["u"] is True for d in replayed) and all(d["u"] is False for d in live)
    assert [d["d"]["offset"] for d in replayed] == ([2, 3, 4, 5, 6] if before_reading else [2, 3])
    assert recovery["d"]["recovered"] is True


TOKENS = 6
CONNECTIONS_PER_TOKEN = 2
MESSAGES = 120


async def test_killed_sockets_that_come_back_miss_nothing_and_see_nothing_twice(
    node: Server, http: httpx.AsyncClient
) -> None:
    """Direct messages stream to 6 tokens while each token's 2 connections are killed
    (the socket aborted, no close frame) and reconnect from their last position, again
    and again: each connection's offsets, across all its sockets, are 1..N exactly once.
    Every third message goes to all the tokens as one broadcast (one event for all of
    them), the others one request per token."""
    await inbox_on(http, size=1000)
    tokens = [await make_token(http) for _ in range(TOKENS)]
    epoch = await epoch_of(http, tokens[0])
    done = asyncio.Event()
    rng = random.Random(21)
    killed: list[int] = []

    async def one_socket(token: str, at: int) -> tuple[list[int], bool]:
        """Reconnect from ``at``; read until killed (or every message seen)."""
        seen: list[int] = []
        async with leap(node.ws_url) as client:
            # From the first socket on, the client holds a position (0 at first).
            await identify(
                client, node.project_id, token, {"$inbox": {"offset": at, "epoch": epoch}}
            )
            recovered = False
            deadline = asyncio.get_running_loop().time() + rng.uniform(0.05, 0.4)
            while True:
                left = deadline - asyncio.get_running_loop().time()
                try:
                    d = await client.dispatch(timeout=max(left, 0.001) if not done.is_set() else 5)
                except TimeoutError:
                    if done.is_set():
                        return seen, True
                    client.ws.transport.abort()  # killed: no close frame
                    killed.append(len(seen))
                    return seen, False
                if d["e"] == "RECOVERY":
                    assert d["d"]["recovered"] is True, d
                    recovered = True
                    continue
                assert d["e"] == "DIRECT_MESSAGE", d
                assert d["u"] is (not recovered), d
                seen.append(d["d"]["offset"])
                if seen[-1] == MESSAGES:
                    return seen, True

    async def connection(token: str) -> list[int]:
        offsets: list[int] = []
        while True:
            more, finished = await one_socket(token, offsets[-1] if offsets else 0)
            offsets += more
            if finished and offsets and offsets[-1] == MESSAGES:
                return offsets

    readers = [
        asyncio.create_task(connection(t)) for t in tokens for _ in range(CONNECTIONS_PER_TOKEN)
    ]
    await asyncio.sleep(0.2)
    for n in range(1, MESSAGES + 1):
        if n % 3 == 0:
            answer = await ok(http.post("/broadcast", json={"e": "dm", "d": n, "tokens": tokens}))
            assert answer["failed"] == 0, answer
        else:
            await asyncio.gather(*(send(http, t, n) for t in tokens))
    done.set()
    for task in readers:
        assert await asyncio.wait_for(task, 30) == list(range(1, MESSAGES + 1))
    # Sockets were killed all through the stream (and came back each time).
    assert len(killed) >= 2 * len(readers), killed
