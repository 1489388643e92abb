"""Presence over real sockets on one node: REST presence and opt-in join/leave dispatches."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from switchboard.server.ids import member_id
from tests.conftest import Server
from tests.e2e.leap import Leap, leap
from tests.edge.test_gateway import make_token, ok

pytestmark = pytest.mark.timeout(30)


async def presence(http: httpx.AsyncClient, channel: str) -> Any:
    return await ok(http.get(f"/channels/{channel}/presence"))


async def until(http: httpx.AsyncClient, channel: str, check: Any) -> Any:
    """Poll presence until ``check(data)`` holds (a leave is carried out after the close)."""
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        data = await presence(http, channel)
        if check(data):
            return data
        assert asyncio.get_running_loop().time() < deadline, data
        await asyncio.sleep(0.02)


async def subscribe_presence(client: Leap, channel: str) -> list[dict[str, Any]]:
    await client.send({"op": 0, "d": {"c": channel, "e": "SUBSCRIBE", "d": {"presence": True}}})
    assert (await client.dispatch("AVAILABLE"))["c"] == channel
    snapshot = await client.dispatch("PRESENCE")
    assert snapshot["c"] == channel and snapshot["u"] is True
    members: list[dict[str, Any]] = snapshot["d"]["presence"]
    return members


async def test_rest_presence_lists_tokens_and_counts_tokenless(
    node: Server, http: httpx.AsyncClient
) -> None:
    await ok(http.put("/channels/lobby", json={"type": "unprotected"}))
    alice = await make_token(http, {"name": "alice"})
    assert await presence(http, "lobby") == {
        "presence": [],
        "tokenless_connections": 0,
        "total_connections": 0,
    }
    async with (
        leap(node.ws_url, node.project_id, alice) as a1,
        leap(node.ws_url, node.project_id, alice) as a2,
        leap(node.ws_url, node.project_id) as anon,
        leap(node.ws_url, node.project_id, node.project_token) as console,
    ):
        for client in (a1, anon, console):
            assert (await client.subscribe("lobby"))["e"] == "AVAILABLE"
        # a2 holds the durable subscription a1 made (AVAILABLE through the token).
        assert (await a2.dispatch("AVAILABLE"))["c"] == "lobby"
        data = await presence(http, "lobby")
        assert data == {
            "presence": [
                {
                    "token_id": alice,
                    "member_id": member_id(alice),
                    "state": {"name": "alice"},
                    "connections": 2,
                }
            ],
            "tokenless_connections": 1,
            "total_connections": 3,
        }
        stats = await ok(http.get("/channels/lobby/stats"))
        assert stats["stats"]["online_count"] == data["total_connections"]
    await until(http, "lobby", lambda d: d["total_connections"] == 0 and not d["presence"])


async def test_rest_presence_of_an_unknown_channel_is_404(http: httpx.AsyncClient) -> None:
    r = await http.get("/channels/nope/presence")
    assert r.status_code == 404


async def test_join_and_leave_reach_only_those_who_asked(
    node: Server, http: httpx.AsyncClient
) -> None:
    await ok(http.put("/channels/room", json={"type": "public"}))
    watcher_token = await make_token(http, {"name": "watcher"})
    plain_token = await make_token(http, {"name": "plain"})
    bob = await make_token(http, {"name": "bob"})
    async with (
        leap(node.ws_url, node.project_id, watcher_token) as watcher,
        leap(node.ws_url, node.project_id, plain_token) as plain,
    ):
        assert await subscribe_presence(watcher, "room") == []
        # The watcher's own join is announced to it too: it is a member like any other.
        join = await watcher.dispatch("PRESENCE_JOIN")
        assert join["d"] == {"member_id": member_id(watcher_token), "state": {"name": "watcher"}}
        assert (await plain.subscribe("room"))["e"] == "AVAILABLE"
        assert (await watcher.dispatch("PRESENCE_JOIN"))["d"]["member_id"] == member_id(plain_token)

        async with leap(node.ws_url, node.project_id, bob) as b:
            assert (await b.subscribe("room"))["e"] == "AVAILABLE"
            join = await watcher.dispatch("PRESENCE_JOIN")
            assert join == {
                "c": "room",
                "u": False,
                "e": "PRESENCE_JOIN",
                "d": {"member_id": member_id(bob), "state": {"name": "bob"}},
            }
            # A second socket of bob's is no new member: no JOIN for it.
            async with leap(node.ws_url, node.project_id, bob) as b2:
                assert [c["id"] for c in b2.init["channels"]] == ["room"]
                await watcher.nothing(0.3)
            # One of two sockets closed: bob is still there.
            await watcher.nothing(0.3)
            # Nobody who did not ask gets presence dispatches.
            await plain.nothing(0.1)
        leave = await watcher.dispatch("PRESENCE_LEAVE")
        assert leave["d"] == {"member_id": member_id(bob), "state": {"name": "bob"}}

        # UNSUBSCRIBE leaves too; so does a state change reach later dispatches.
        await ok(http.patch(f"/channels/tokens/{plain_token}", json={"state": {"name": "p2"}}))
        await plain.dispatch("TOKEN_STATE_UPDATE")
        await plain.unsubscribe("room")
        leave = await watcher.dispatch("PRESENCE_LEAVE")
        assert leave["d"] == {"member_id": member_id(plain_token), "state": {"name": "p2"}}
        await plain.nothing(0.1)


async def test_a_late_watcher_gets_the_members_already_there(
    node: Server, http: httpx.AsyncClient
) -> None:
    await ok(http.put("/channels/hall", json={"type": "unprotected"}))
    carol = await make_token(http, {"name": "carol"})
    watcher_token = await make_token(http, {})
    async with (
        leap(node.ws_url, node.project_id, carol) as c,
        leap(node.ws_url, node.project_id) as anon,
        leap(node.ws_url, node.project_id, watcher_token) as watcher,
    ):
        assert (await c.subscribe("hall"))["e"] == "AVAILABLE"
        assert (await anon.subscribe("hall"))["e"] == "AVAILABLE"
        # Tokenless connections are counted by REST presence, never listed or announced.
        assert await subscribe_presence(watcher, "hall") == [
            {"member_id": member_id(carol), "state": {"name": "carol"}}
        ]
        assert (await watcher.dispatch("PRESENCE_JOIN"))["d"]["member_id"] == member_id(
            watcher_token
        )
        async with leap(node.ws_url, node.project_id) as anon2:
            assert (await anon2.subscribe("hall"))["e"] == "AVAILABLE"
        await watcher.nothing(0.3)


async def test_a_tokenless_connection_may_not_watch(node: Server, http: httpx.AsyncClient) -> None:
    await ok(http.put("/channels/open", json={"type": "unprotected"}))
    async with leap(node.ws_url, node.project_id) as anon:
        await anon.send({"op": 0, "d": {"c": "open", "e": "SUBSCRIBE", "d": {"presence": True}}})
        assert (await anon.dispatch("AVAILABLE"))["c"] == "open"
        error = await anon.dispatch("ERROR")
        assert error["d"]["code"] == "forbidden"


async def test_subscribe_data_that_is_not_a_presence_request_is_ignored(
    node: Server, http: httpx.AsyncClient
) -> None:
    await ok(http.put("/channels/odd", json={"type": "public"}))
    token = await make_token(http, {})
    async with leap(node.ws_url, node.project_id, token) as client:
        for d in ({"presence": "yes"}, [1], "x", {"other": 1}):
            await client.send({"op": 0, "d": {"c": "odd", "e": "SUBSCRIBE", "d": d}})
            assert (await client.dispatch("AVAILABLE"))["c"] == "odd"
        await client.nothing(0.2)


async def test_deleting_the_channel_ends_the_watch(node: Server, http: httpx.AsyncClient) -> None:
    await ok(http.put("/channels/gone", json={"type": "public"}))
    token = await make_token(http, {})
    async with leap(node.ws_url, node.project_id, token) as watcher:
        await subscribe_presence(watcher, "gone")
        await watcher.dispatch("PRESENCE_JOIN")
        await ok(http.delete("/channels/gone"))
        assert (await watcher.dispatch("UNAVAILABLE"))["d"] == {"graceful": True}
        await watcher.nothing(0.3)
    assert node.node is not None
    assert node.node.hub.presence.watches == {}


async def test_watchers_asking_at_once_share_one_watch(
    node: Server, http: httpx.AsyncClient
) -> None:
    await ok(http.put("/channels/busy", json={"type": "public"}))
    tokens = [await make_token(http, {"n": n}) for n in range(3)]
    newcomer = await make_token(http, {"n": "new"})
    async with (
        leap(node.ws_url, node.project_id, tokens[0]) as w0,
        leap(node.ws_url, node.project_id, tokens[1]) as w1,
        leap(node.ws_url, node.project_id, tokens[2]) as w2,
    ):
        watchers = (w0, w1, w2)
        # Sent together: the later ones wait for the first one's snapshot.
        for w in watchers:
            await w.send({"op": 0, "d": {"c": "busy", "e": "SUBSCRIBE", "d": {"presence": True}}})

        async def until_newcomer(w: Leap) -> None:
            while True:
                d = await w.dispatch()
                if d["e"] == "PRESENCE_JOIN" and d["d"]["member_id"] == member_id(newcomer):
                    return

        async with leap(node.ws_url, node.project_id, newcomer) as n:
            await asyncio.sleep(0.2)  # every watcher holds the channel now
            assert (await n.subscribe("busy"))["e"] == "AVAILABLE"
            await asyncio.gather(*(until_newcomer(w) for w in watchers))
            # One watcher unsubscribes: the others hear the newcomer leave; it does not.
            await w0.unsubscribe("busy")
            await asyncio.sleep(0.2)
        for w in (w1, w2):
            while (d := await w.dispatch())["e"] != "PRESENCE_LEAVE" or d["d"]["member_id"] != (
                member_id(newcomer)
            ):
                pass
        await w0.nothing(0.3)
    assert node.node is not None
    assert node.node.hub.presence.watches == {}
