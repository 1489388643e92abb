"""``POST /v1/broadcast`` and ``POST /v1/batch`` against a real node, on SQLite and on
Redis: results per target and per item, caps refused whole, idempotency, permissions,
and what subscribers receive (docs/batch.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchboard.server.permissions import Permission as P
from tests.conftest import Server, running_node
from tests.e2e.leap import Leap, leap


@pytest.fixture(params=["sqlite", "redis"])
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Server]:
    extra: dict[str, Any] = {}
    if request.param == "redis":
        extra["redis_url"] = request.getfixturevalue("redis_url")
    async with running_node(tmp_path / "data", **extra) as node:
        yield node


@pytest.fixture
async def api(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.api, headers=server.headers) as client:
        yield client


def data(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    return body["data"]


def refused(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == code, body
    message: str = body["error"]["message"]
    return message


async def new_token(api: httpx.AsyncClient) -> str:
    token: str = data(await api.post("/channels/tokens", json={}))["token"]["id"]
    return token


async def messages(client: Leap, n: int) -> list[tuple[str | None, str, Any]]:
    """The next ``n`` MESSAGE dispatches: (channel, event, data)."""
    got = []
    for _ in range(n):
        d = await client.dispatch("MESSAGE")
        got.append((d["c"], d["d"]["e"], d["d"]["d"]))
    return got


async def test_broadcast_reaches_every_channel_and_token_once(
    api: httpx.AsyncClient, server: Server
) -> None:
    await api.put("/channels/kept", json={"type": "unprotected", "history": {"size": 10}})
    await api.put("/channels/plain", json={"type": "unprotected"})
    token = await new_token(api)
    async with (
        leap(server.ws_url, server.project_id, token) as to_token,
        leap(server.ws_url, server.project_id) as watcher,
    ):
        await watcher.subscribe("kept")
        await watcher.subscribe("plain")
        body = {
            "e": "NEWS",
            "d": {"n": 1},
            "channels": ["kept", "plain", "missing"],
            "tokens": [token, "leap_token_nobody"],
        }
        answer = data(await api.post("/broadcast", json=body))
        assert answer["succeeded"] == 3 and answer["failed"] == 2
        kept, plain, missing, direct, nobody = answer["results"]
        assert kept["channel"] == "kept" and kept["success"] and kept["data"]["offset"] == 1
        assert plain == {"channel": "plain", "success": True, "data": {}}
        assert missing["channel"] == "missing" and missing["error"]["code"] == "not_found"
        assert direct == {"token": token, "success": True, "data": {}}
        assert nobody["error"]["code"] == "not_found"
        got = await messages(watcher, 2)
        assert sorted(got) == [("kept", "NEWS", {"n": 1}), ("plain", "NEWS", {"n": 1})]
        d = await to_token.dispatch("DIRECT_MESSAGE")
        assert d["d"] == {"e": "NEWS", "d": {"n": 1}}
        await watcher.nothing(0.2)
        await to_token.nothing(0.1)
    history = data(await api.get("/channels/kept/messages"))
    assert [m["d"] for m in history["messages"]] == [{"n": 1}]


async def test_a_broadcast_over_its_caps_is_one_400_and_sends_nothing(
    api: httpx.AsyncClient, server: Server
) -> None:
    await api.put("/channels/c", json={"type": "unprotected", "history": {"size": 10}})
    async with leap(server.ws_url, server.project_id) as watcher:
        await watcher.subscribe("c")
        for body in [
            {"e": "x", "channels": ["c"] + [f"n{i}" for i in range(1000)]},
            {"e": "x", "tokens": ["c"] * 1001},
            {"e": "x", "channels": ["c", "c"]},
            {"e": "", "channels": ["c"]},
            {"e": "x", "channels": ["c"], "extra": 1},
            {"e": "x", "channels": ["c"], "idempotency_key": "has space"},
            {"channels": ["c"]},
        ]:
            refused(await api.post("/broadcast", json=body), 400, "invalid_request")
        refused(await api.post("/broadcast", content=b"{nope"), 400, "invalid_request")
        big = {"e": "x", "d": "y" * 70_000, "channels": ["c"]}
        refused(await api.post("/broadcast", json=big), 413, "payload_too_large")
        await watcher.nothing(0.3)
    assert data(await api.get("/channels/c/messages"))["messages"] == []


async def test_a_retried_broadcast_is_not_sent_twice(
    api: httpx.AsyncClient, server: Server
) -> None:
    await api.put("/channels/c", json={"type": "unprotected"})
    body = {"e": "x", "d": 1, "channels": ["c"], "idempotency_key": "order-42"}
    async with leap(server.ws_url, server.project_id) as watcher:
        await watcher.subscribe("c")
        first = data(await api.post("/broadcast", json=body))
        again = await asyncio.gather(*(api.post("/broadcast", json=body) for _ in range(5)))
        await watcher.dispatch("MESSAGE")
        await watcher.nothing(0.3)
    assert "duplicate" not in first
    for response in again:
        if response.status_code == 409:  # a retry that met the first still running
            refused(response, 409, "in_progress")
        else:
            assert data(response) == {**first, "duplicate": True}
    # Another key, or none, is another message.
    async with leap(server.ws_url, server.project_id) as watcher:
        await watcher.subscribe("c")
        data(await api.post("/broadcast", json={**body, "idempotency_key": "order-43"}))
        data(await api.post("/broadcast", json={"e": "x", "channels": ["c"]}))
        assert len(await messages(watcher, 2)) == 2


async def test_a_batch_runs_in_order_and_a_bad_item_fails_alone(
    api: httpx.AsyncClient, server: Server
) -> None:
    await api.put("/channels/room", json={"type": "private", "state": {"v": 0}})
    token = await new_token(api)
    requests: list[Any] = [
        {"op": "subscribe_token", "channel": "room", "token": token},
        {"op": "publish", "channel": "room", "e": "m", "d": 1},
        {"op": "set_state", "channel": "room", "state": {"v": 1}},
        {"op": "patch_state", "channel": "room", "state": {"w": 2}},
        {"op": "publish", "channel": "room", "e": "m", "d": 2},
        {"op": "direct", "token": token, "e": "dm", "d": "hi"},
        {"op": "shout", "channel": "room"},
        {"op": "publish", "channel": "room", "e": "m", "d": 3, "data": 3},
        "not an object",
        {"op": "set_state", "channel": "room", "state": [1]},
        {"op": "publish", "channel": "nowhere", "e": "m"},
        {"op": "remove_token", "channel": "room", "token": token},
        {"op": "publish", "channel": "room", "e": "m", "d": 4},
    ]
    async with leap(server.ws_url, server.project_id, token) as client:
        answer = data(await api.post("/batch", json={"requests": requests}))
        results = answer["results"]
        assert [r["success"] for r in results] == [True] * 6 + [False] * 5 + [True] * 2
        assert answer["succeeded"] == 8 and answer["failed"] == 5
        assert {r["error"]["code"] for r in results[6:10]} == {"invalid_request"}
        assert results[10]["error"]["code"] == "not_found"
        got = [(d["c"], d["e"], d["d"]) for d in [await client.dispatch() for _ in range(7)]]
        assert got[0][:2] == ("room", "AVAILABLE")
        assert got[0][2]["channel"]["state"] == {"v": 0}
        assert got[1:6] == [
            ("room", "MESSAGE", {"e": "m", "d": 1}),
            ("room", "STATE_UPDATE", {"state": {"v": 1}}),
            ("room", "STATE_UPDATE", {"state": {"v": 1, "w": 2}}),
            ("room", "MESSAGE", {"e": "m", "d": 2}),
            (None, "DIRECT_MESSAGE", {"e": "dm", "d": "hi"}),
        ]
        assert got[6][:2] == ("room", "UNAVAILABLE")
        await client.nothing(0.2)  # the last publish came after the token left


async def test_a_batch_over_its_caps_or_not_a_batch_is_one_400(
    api: httpx.AsyncClient, server: Server
) -> None:
    await api.put("/channels/c", json={"type": "unprotected"})
    one = {"op": "publish", "channel": "c", "e": "x"}
    async with leap(server.ws_url, server.project_id) as watcher:
        await watcher.subscribe("c")
        for body in [
            {"requests": [one] * 1001},
            {"requests": one},
            {"request": [one]},
            {"requests": [one], "parallel": "yes"},
            [one],
        ]:
            refused(await api.post("/batch", json=body), 400, "invalid_request")
        await watcher.nothing(0.3)
    assert len(data(await api.post("/batch", json={"requests": [one] * 1000}))["results"]) == 1000


async def test_parallel_batches_and_item_idempotency(
    api: httpx.AsyncClient, server: Server
) -> None:
    await api.put("/channels/c", json={"type": "unprotected"})
    item = {"op": "publish", "channel": "c", "e": "x", "idempotency_key": "k"}
    async with leap(server.ws_url, server.project_id) as watcher:
        await watcher.subscribe("c")
        first = data(await api.post("/batch", json={"requests": [item, item], "parallel": True}))
        assert first["results"] == [
            {"success": True, "data": {}},
            {"success": True, "data": {}, "duplicate": True},
        ]
        again = data(await api.post("/batch", json={"requests": [item]}))
        assert again["results"] == [{"success": True, "data": {}, "duplicate": True}]
        await watcher.dispatch("MESSAGE")
        await watcher.nothing(0.3)
    # A failed item's key is freed: the retry, once the channel exists, goes through.
    late = {"op": "publish", "channel": "later", "e": "x", "idempotency_key": "k2"}
    assert not data(await api.post("/batch", json={"requests": [late]}))["results"][0]["success"]
    await api.put("/channels/later", json={"type": "unprotected"})
    assert data(await api.post("/batch", json={"requests": [late]}))["results"][0]["success"]


async def test_each_item_needs_its_own_permission(api: httpx.AsyncClient, server: Server) -> None:
    assert server.node is not None
    service = server.node.service
    await api.put("/channels/c", json={"type": "unprotected"})
    token = await new_token(api)
    publisher = await service.create_project_token(server.project_id, P.PUBLISH_CHANNEL_MESSAGES)
    reader = await service.create_project_token(server.project_id, P.READ_CHANNELS)
    async with httpx.AsyncClient(base_url=server.api, headers={"Authorization": publisher}) as c:
        body = {"e": "x", "channels": ["c"], "tokens": [token]}
        results = data(await c.post("/broadcast", json=body))["results"]
        assert results[0]["success"]
        assert results[1]["error"]["code"] == "missing_permission"
        assert results[1]["error"]["permission"] == "message_token"
        requests = [
            {"op": "publish", "channel": "c", "e": "x"},
            {"op": "set_state", "channel": "c", "state": {}},
            {"op": "subscribe_token", "channel": "c", "token": token},
        ]
        results = data(await c.post("/batch", json={"requests": requests}))["results"]
        assert [r.get("error", {}).get("permission") for r in results] == [
            None,
            "update_channel_state",
            "manage_channel_subscribers",
        ]
    async with httpx.AsyncClient(base_url=server.api, headers={"Authorization": reader}) as c:
        # None of the flags an item may need: refused before the body is read.
        refused(await c.post("/broadcast", content=b"{nope"), 403, "missing_permission")
        refused(await c.post("/batch", json={"requests": []}), 403, "missing_permission")


async def test_batch_direct_messages_keep_the_inbox_order(
    api: httpx.AsyncClient, server: Server
) -> None:
    data(await api.patch("/settings", json={"inbox": {"size": 10, "ttl_s": 60}}))
    token = await new_token(api)
    async with leap(server.ws_url, server.project_id, token) as client:
        answer = data(await api.post("/broadcast", json={"e": "a", "tokens": [token]}))
        assert answer["results"][0]["data"]["offset"] == 1
        ops = [{"op": "direct", "token": token, "e": "b", "d": i} for i in range(3)]
        results = data(await api.post("/batch", json={"requests": ops}))["results"]
        assert [r["data"]["offset"] for r in results] == [2, 3, 4]
        got = [(await client.dispatch("DIRECT_MESSAGE"))["d"] for _ in range(4)]
        assert [d["offset"] for d in got] == [1, 2, 3, 4]
    kept = data(await api.get(f"/channels/tokens/{token}/messages"))
    assert [m["e"] for m in kept["messages"]] == ["a", "b", "b", "b"]


async def test_single_publish_and_direct_take_an_idempotency_key(
    api: httpx.AsyncClient, server: Server
) -> None:
    await api.put("/channels/c", json={"type": "unprotected"})
    token = await new_token(api)
    async with (
        leap(server.ws_url, server.project_id) as watcher,
        leap(server.ws_url, server.project_id, token) as holder,
    ):
        await watcher.subscribe("c")
        for path in ("/channels/c/messages", f"/channels/tokens/{token}/messages"):
            body = {"e": "once", "d": 1, "idempotency_key": f"single-{path}"}
            sent = await asyncio.gather(*(api.post(path, json=body) for _ in range(4)))
            answers = [r.json() for r in sent]
            assert sum(1 for a in answers if a.get("data") == {}) <= 1
            assert all(
                a["data"] in ({}, {"duplicate": True})
                if a["success"]
                else a["error"]["code"] == "in_progress"
                for a in answers
            )
            assert data(await api.post(path, json=body)) == {"duplicate": True}
        await watcher.dispatch("MESSAGE")
        await holder.dispatch("DIRECT_MESSAGE")
        await watcher.nothing(0.2)
        await holder.nothing(0.1)
    # A failed send (no such channel) frees its key.
    body = {"e": "x", "idempotency_key": "late"}
    refused(await api.post("/channels/later/messages", json=body), 404, "not_found")
    await api.put("/channels/later", json={"type": "unprotected"})
    assert data(await api.post("/channels/later/messages", json=body)) == {}
