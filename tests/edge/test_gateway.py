"""The Leap gateway over real sockets: handshake, access rules, fan-out, lifecycle."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from switchboard.server.config import Limits
from tests.conftest import Server, start_node
from tests.e2e.leap import Leap, leap, stalled_subscriber


async def ok(response: Any) -> Any:
    r = await response
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def make_token(http: httpx.AsyncClient, state: Any = None, **extra: Any) -> str:
    body = {"state": state or {}, **extra}
    token: str = (await ok(http.post("/channels/tokens", json=body)))["token"]["id"]
    return token


async def make_channel(
    http: httpx.AsyncClient, channel_id: str, kind: str, state: Any = None
) -> None:
    await ok(http.put(f"/channels/{channel_id}", json={"type": kind, "state": state or {}}))


# Handshake.


async def test_init_for_a_token(node: Server, http: httpx.AsyncClient) -> None:
    token = await make_token(http, {"userId": "u1"})
    await make_channel(http, "game", "private", {"round": 1})
    await ok(http.put(f"/channels/game/subscribers/{token}"))
    async with leap(node.ws_url, node.project_id, token) as client:
        init = client.init
        assert init["scope"] == "token"
        assert init["metadata"] == {"userId": "u1"}
        assert init["connection_count"] == 1
        assert init["cid"]
        assert init["channels"] == [
            {
                "id": "game",
                "project_id": node.project_id,
                "type": "private",
                "state": {"round": 1},
                "capabilities": 0,
            }
        ]
        async with leap(node.ws_url, node.project_id, token) as second:
            assert second.init["connection_count"] == 2
            assert second.init["cid"] != init["cid"]


async def test_hello_then_both_paths(node: Server) -> None:
    for path in ("/ws", "/1.0/ws"):
        url = node.base_url.replace("http", "ws") + path
        async with leap(url, node.project_id) as client:
            assert client.hello == {"op": 1, "d": {"heartbeat_interval": 30000}}
            assert client.init["scope"] == "noauth"
            assert client.init["metadata"] is None
            assert client.init["channels"] == []


@pytest.mark.parametrize("project", ["project_unknown", ""])
async def test_unknown_project_closes_4001(node: Server, project: str) -> None:
    async with leap(node.ws_url) as client:
        await client.recv()
        await client.send({"op": 2, "d": {"project_id": project}})
        assert (await client.closed())[0] == 4001


async def test_bad_tokens_close_4001(node: Server, http: httpx.AsyncClient) -> None:
    assert node.node is not None
    _, other_secret = await node.node.service.create_project("other")
    async with httpx.AsyncClient(
        base_url=node.api, headers={"Authorization": other_secret}
    ) as theirs:
        foreign = await make_token(theirs)
    for token in ["leap_token_nope", foreign, "ptk_nope", other_secret, "garbage"]:
        async with leap(node.ws_url) as client:
            await client.recv()
            await client.send({"op": 2, "d": {"project_id": node.project_id, "token": token}})
            code, reason = await client.closed()
            assert code == 4001, (token, code, reason)
            assert token not in reason


async def test_project_token_gives_project_scope(node: Server, http: httpx.AsyncClient) -> None:
    await make_channel(http, "secret", "private")
    async with leap(node.ws_url, node.project_id, node.project_token) as console:
        assert console.init["scope"] == "project"
        available = await console.subscribe("secret")
        assert available["e"] == "AVAILABLE"
        stats = await ok(http.get("/channels/secret/stats"))
        assert stats == {"stats": {"online_count": 0}}  # a console is not an online user
        await ok(http.post("/channels/secret/messages", json={"e": "ping", "d": 1}))
        message = await console.dispatch("MESSAGE")
        assert message["d"] == {"e": "ping", "d": 1}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('{"op":0,"d":{"c":"a","e":"SUBSCRIBE","d":null}}', 4003),
        ('{"op":7}', 4004),
        ("this is not json", 4005),
        ('{"op":2,"d":{"project_id":null}}', 4005),
    ],
)
async def test_protocol_violations_close_with_their_code(
    node: Server, frame: str, code: int
) -> None:
    async with leap(node.ws_url) as client:
        await client.recv()
        await client.send(frame)
        assert (await client.closed())[0] == code
    # The server keeps serving everyone else.
    async with leap(node.ws_url, node.project_id) as other:
        assert other.init["scope"] == "noauth"


async def test_unsupported_encoding_closes_4005(node: Server) -> None:
    async with leap(node.ws_url, query="?encoding=etf") as client:
        assert (await client.closed())[0] == 4005


async def test_zlib_compression_sends_binary_zlib_frames(
    node: Server, http: httpx.AsyncClient
) -> None:
    await make_channel(http, "z", "unprotected")
    async with websockets.connect(node.ws_url + "?encoding=json&compression=zlib") as ws:
        client = Leap(ws)
        raw = await ws.recv()
        assert isinstance(raw, bytes)
        client.hello = json.loads(__import__("zlib").decompress(raw))
        await client.send({"op": 2, "d": {"project_id": node.project_id}})
        await client.dispatch("INIT")
        assert (await client.subscribe("z"))["e"] == "AVAILABLE"
        await ok(http.post("/channels/z/messages", json={"e": "e", "d": "é" * 100}))
        assert (await client.dispatch("MESSAGE"))["d"] == {"e": "e", "d": "é" * 100}


async def test_identify_deadline(tmp_path: Path) -> None:
    server = await start_node(tmp_path / "d", identify_timeout_s=0.2)
    try:
        async with leap(server.ws_url) as client:
            await client.recv()
            assert (await client.closed(timeout=5))[0] == 4002
    finally:
        assert server.node is not None
        await server.node.stop()


async def test_heartbeats_probe_and_deadline(tmp_path: Path) -> None:
    server = await start_node(tmp_path / "d", heartbeat_interval_ms=400)
    try:
        async with leap(server.ws_url, server.project_id) as client:
            await client.send({"op": 3})
            assert await client.recv() == {"op": 4}
            probe = await client.recv(timeout=5)
            assert probe["op"] == 3 and isinstance(probe["d"]["tag"], str)
            await client.send({"op": 3, "d": {"tag": probe["d"]["tag"]}})
            ack = await client.recv()
            assert ack["op"] == 4 and ack["d"]["tag"] == probe["d"]["tag"]
            assert isinstance(ack["d"]["latency"], int)
            # Now stay silent: 1.5 × 0.4 s + 5 s later the server gives up with 4007.
            code, _ = await client.closed(timeout=10)
            assert code == 4007
    finally:
        assert server.node is not None
        await server.node.stop()


# Who may subscribe to what.


@pytest.mark.parametrize(
    ("kind", "who", "expected"),
    [
        ("unprotected", "none", "AVAILABLE"),
        ("unprotected", "token", "AVAILABLE"),
        ("public", "none", "NOT_GRANTED"),
        ("public", "token", "AVAILABLE"),
        ("private", "none", "NOT_GRANTED"),
        ("private", "token", "NOT_GRANTED"),
        ("private", "granted", "AVAILABLE"),
    ],
)
async def test_access_rules(
    node: Server, http: httpx.AsyncClient, kind: str, who: str, expected: str
) -> None:
    await make_channel(http, "room", kind, {"k": kind})
    token = await make_token(http) if who != "none" else None
    async with leap(node.ws_url, node.project_id, token) as client:
        if who == "granted":
            await ok(http.put(f"/channels/room/subscribers/{token}"))
            await client.dispatch("AVAILABLE")  # pushed to the online token
        answer = await client.subscribe("room")
        assert answer["c"] == "room"
        assert answer["u"] is True
        if expected == "AVAILABLE":
            assert answer["e"] == "AVAILABLE"
            assert answer["d"]["channel"]["state"] == {"k": kind}
            assert answer["d"]["channel"]["id"] == "room"
        else:
            assert answer["e"] == "UNAVAILABLE"
            assert answer["d"] == {"graceful": False, "error_code": expected}


async def test_unknown_channel_is_unavailable_unknown(node: Server) -> None:
    async with leap(node.ws_url, node.project_id) as client:
        for channel in ["nope", "tokens", "bad id!", "x" * 200]:
            answer = await client.subscribe(channel)
            assert answer["e"] == "UNAVAILABLE"
            assert answer["d"]["error_code"] == "UNKNOWN"


# Fan-out.


async def test_messages_state_and_direct_messages(node: Server, http: httpx.AsyncClient) -> None:
    token = await make_token(http)
    await make_channel(http, "game", "public", {"a": 1})
    async with (
        leap(node.ws_url, node.project_id, token) as alice,
        leap(node.ws_url, node.project_id) as anon,
    ):
        await make_channel(http, "open", "unprotected")
        assert (await alice.subscribe("game"))["e"] == "AVAILABLE"
        assert (await anon.subscribe("open"))["e"] == "AVAILABLE"

        await ok(http.post("/channels/game/messages", json={"e": "MOVE", "d": {"x": [1, 2.5]}}))
        message = await alice.dispatch("MESSAGE")
        assert message == {
            "c": "game",
            "u": False,
            "e": "MESSAGE",
            "d": {"e": "MOVE", "d": {"x": [1, 2.5]}},
        }
        await anon.nothing()

        await ok(http.put("/channels/game/state", json={"b": 2}))
        assert (await alice.dispatch("STATE_UPDATE"))["d"] == {"state": {"b": 2}}
        await ok(http.patch("/channels/game/state", json={"c": 3}))
        assert (await alice.dispatch("STATE_UPDATE"))["d"] == {"state": {"b": 2, "c": 3}}

        await ok(http.post(f"/channels/tokens/{token}/messages", json={"e": "DM", "d": "hi"}))
        dm = await alice.dispatch("DIRECT_MESSAGE")
        assert dm == {"c": None, "u": False, "e": "DIRECT_MESSAGE", "d": {"e": "DM", "d": "hi"}}

        await ok(http.patch(f"/channels/tokens/{token}", json={"state": {"role": "admin"}}))
        update = await alice.dispatch("TOKEN_STATE_UPDATE")
        assert update == {
            "c": None,
            "u": False,
            "e": "TOKEN_STATE_UPDATE",
            "d": {"state": {"role": "admin"}},
        }

        await ok(http.post("/channels/open/messages", json={"e": "hello"}))
        assert (await anon.dispatch("MESSAGE"))["d"] == {"e": "hello", "d": None}
        await alice.nothing()


async def test_publish_order_is_kept(node: Server, http: httpx.AsyncClient) -> None:
    await make_channel(http, "seq", "unprotected")
    async with leap(node.ws_url, node.project_id) as a, leap(node.ws_url, node.project_id) as b:
        await a.subscribe("seq")
        await b.subscribe("seq")
        for i in range(200):
            await ok(http.post("/channels/seq/messages", json={"e": "n", "d": i}))
        for client in (a, b):
            got = [(await client.dispatch("MESSAGE"))["d"]["d"] for _ in range(200)]
            assert got == list(range(200))


async def test_client_publish(node: Server, http: httpx.AsyncClient) -> None:
    token = await make_token(http)
    await make_channel(http, "chat", "unprotected")
    async with (
        leap(node.ws_url, node.project_id, token) as alice,
        leap(node.ws_url, node.project_id, token) as alice2,
        leap(node.ws_url, node.project_id) as anon,
    ):
        await alice.subscribe("chat")
        await alice2.dispatch("AVAILABLE")  # the token's other connection joins too
        await anon.subscribe("chat")
        await alice.publish("chat", "say", {"text": "hi"})
        for other in (alice2, anon):
            assert (await other.dispatch("MESSAGE"))["d"] == {"e": "say", "d": {"text": "hi"}}
        await alice.nothing()  # not echoed to the sender

        await anon.publish("chat", "say", "anon")
        refused = await anon.dispatch("ERROR")
        assert refused["d"]["code"] == "forbidden" and refused["c"] == "chat"
        await alice.publish("elsewhere", "say", 1)
        assert (await alice.dispatch("ERROR"))["d"]["code"] == "forbidden"
        await alice.send({"op": 0, "d": {"c": "chat", "e": "SET_CHANNEL_STATE", "d": {"x": 1}}})
        assert (await alice.dispatch("ERROR"))["d"]["code"] == "forbidden"
        assert (await ok(http.get("/channels/chat/state"))) == {"state": {}}


async def test_a_flood_of_client_messages_is_rate_limited(tmp_path: Path) -> None:
    server = await start_node(tmp_path / "d", limits=Limits(client_messages_per_second=10))
    try:
        async with httpx.AsyncClient(base_url=server.api, headers=server.headers) as http:
            token = await make_token(http)
            await make_channel(http, "chat", "unprotected")
        async with (
            leap(server.ws_url, server.project_id, token) as flooder,
            leap(server.ws_url, server.project_id) as reader,
        ):
            await flooder.subscribe("chat")
            await reader.subscribe("chat")
            for i in range(30):
                await flooder.publish("chat", "n", i)
            errors = 0
            for _ in range(20):
                frame = await flooder.dispatch("ERROR")
                assert frame["d"]["code"] == "rate_limited"
                errors += 1
            delivered = [(await reader.dispatch("MESSAGE"))["d"]["d"] for _ in range(10)]
            assert delivered == list(range(10))
            assert errors == 20
            await reader.nothing()
            # Still connected and still served.
            await flooder.send({"op": 3})
            assert await flooder.recv() == {"op": 4}
    finally:
        assert server.node is not None
        await server.node.stop()


# Lifecycle.


async def test_grant_and_removal_reach_online_tokens(node: Server, http: httpx.AsyncClient) -> None:
    token = await make_token(http)
    await make_channel(http, "vip", "private", {"v": 1})
    async with (
        leap(node.ws_url, node.project_id, token) as a,
        leap(node.ws_url, node.project_id, token) as b,
    ):
        await ok(http.put(f"/channels/vip/subscribers/{token}"))
        for client in (a, b):
            available = await client.dispatch("AVAILABLE")
            assert available["c"] == "vip"
            assert available["d"]["channel"] == {
                "id": "vip",
                "project_id": node.project_id,
                "type": "private",
                "state": {"v": 1},
                "capabilities": 0,
            }
        assert await ok(http.get("/channels/vip/stats")) == {"stats": {"online_count": 2}}
        await ok(http.post("/channels/vip/messages", json={"e": "x"}))
        await a.dispatch("MESSAGE")
        await b.dispatch("MESSAGE")
        await ok(http.delete(f"/channels/vip/subscribers/{token}"))
        for client in (a, b):
            gone = await client.dispatch("UNAVAILABLE")
            assert gone["c"] == "vip" and gone["d"] == {"graceful": True}
        await ok(http.post("/channels/vip/messages", json={"e": "x"}))
        await a.nothing()
        assert await ok(http.get("/channels/vip/stats")) == {"stats": {"online_count": 0}}


async def test_channel_delete_makes_it_unavailable(node: Server, http: httpx.AsyncClient) -> None:
    token = await make_token(http)
    await make_channel(http, "doomed", "unprotected")
    async with (
        leap(node.ws_url, node.project_id, token) as a,
        leap(node.ws_url, node.project_id) as anon,
    ):
        await a.subscribe("doomed")
        await anon.subscribe("doomed")
        await ok(http.delete("/channels/doomed"))
        for client in (a, anon):
            assert (await client.dispatch("UNAVAILABLE"))["d"] == {"graceful": True}
    # Recreated, it starts with no subscribers, and the token's INIT does not list it.
    await make_channel(http, "doomed", "unprotected")
    assert await ok(http.get("/channels/doomed/tokens")) == {"tokens": []}
    async with leap(node.ws_url, node.project_id, token) as again:
        assert again.init["channels"] == []


async def test_token_delete_closes_its_sockets_4001(node: Server, http: httpx.AsyncClient) -> None:
    token = await make_token(http)
    other = await make_token(http)
    async with (
        leap(node.ws_url, node.project_id, token) as a,
        leap(node.ws_url, node.project_id, other) as b,
    ):
        await ok(http.delete(f"/channels/tokens/{token}"))
        assert (await a.closed())[0] == 4001
        await b.send({"op": 3})
        assert await b.recv() == {"op": 4}
    async with leap(node.ws_url) as again:
        await again.recv()
        await again.send({"op": 2, "d": {"project_id": node.project_id, "token": token}})
        assert (await again.closed())[0] == 4001


async def test_expiry_cuts_a_token_off(node: Server, http: httpx.AsyncClient) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=1.0)).isoformat()
    token = await make_token(http, expires_at=soon)
    async with leap(node.ws_url, node.project_id, token) as client:
        code, reason = await client.closed(timeout=5)
        assert code == 4001 and "expired" in reason
    async with leap(node.ws_url) as again:
        await again.recv()
        await again.send({"op": 2, "d": {"project_id": node.project_id, "token": token}})
        assert (await again.closed())[0] == 4001
    # Moving the expiry into the past cuts live sockets off at once.
    other = await make_token(http)
    async with leap(node.ws_url, node.project_id, other) as client:
        await ok(
            http.patch(f"/channels/tokens/{other}", json={"expires_at": "2000-01-01T00:00:00Z"})
        )
        assert (await client.closed())[0] == 4001


async def test_token_subscriptions_are_durable(node: Server, http: httpx.AsyncClient) -> None:
    token = await make_token(http)
    await make_channel(http, "pub", "public", {"p": 1})
    await make_channel(http, "open", "unprotected")
    async with leap(node.ws_url, node.project_id, token) as client:
        await client.subscribe("pub")
        await client.subscribe("open")
    async with leap(node.ws_url, node.project_id, token) as client:
        assert [c["id"] for c in client.init["channels"]] == ["pub", "open"]
        assert client.init["channels"][0]["state"] == {"p": 1}
        # Without subscribing again, it receives.
        await ok(http.post("/channels/pub/messages", json={"e": "x"}))
        await client.dispatch("MESSAGE")
        await client.unsubscribe("pub")
        await client.nothing()  # no answer to UNSUBSCRIBE
    async with leap(node.ws_url, node.project_id, token) as client:
        assert [c["id"] for c in client.init["channels"]] == ["open"]
    tokens = await ok(http.get("/channels/open/tokens"))
    assert [t["id"] for t in tokens["tokens"]] == [token]


async def test_tokenless_subscriptions_end_with_the_socket(
    node: Server, http: httpx.AsyncClient
) -> None:
    await make_channel(http, "open", "unprotected")
    async with leap(node.ws_url, node.project_id) as client:
        await client.subscribe("open")
        assert await ok(http.get("/channels/open/stats")) == {"stats": {"online_count": 1}}
        await client.unsubscribe("open")
        await ok(http.post("/channels/open/messages", json={"e": "x"}))
        await client.nothing()
    async with leap(node.ws_url, node.project_id) as client:
        assert client.init["channels"] == []
    assert await ok(http.get("/channels/open/tokens")) == {"tokens": []}


async def test_is_online_and_online_count(node: Server, http: httpx.AsyncClient) -> None:
    token = await make_token(http)
    await make_channel(http, "room", "unprotected")

    async def online() -> bool:
        value: bool = (await ok(http.get(f"/channels/tokens/{token}")))["token"]["is_online"]
        return value

    assert not await online()
    async with leap(node.ws_url, node.project_id, token) as client:
        assert await online()
        listed = await ok(http.get("/channels/tokens"))
        assert listed["tokens"][0]["is_online"] is True
        await client.subscribe("room")
        async with leap(node.ws_url, node.project_id) as anon:
            await anon.subscribe("room")
            assert await ok(http.get("/channels/room/stats")) == {"stats": {"online_count": 2}}
    for _ in range(50):  # the server notices the closed sockets as their close completes
        if not await online():
            break
        await asyncio.sleep(0.02)
    assert not await online()
    assert await ok(http.get("/channels/room/stats")) == {"stats": {"online_count": 0}}


async def test_connections_per_token_are_limited(tmp_path: Path) -> None:
    server = await start_node(tmp_path / "d", limits=Limits(max_connections_per_token=2))
    try:
        async with httpx.AsyncClient(base_url=server.api, headers=server.headers) as http:
            token = await make_token(http)
        async with (
            leap(server.ws_url, server.project_id, token),
            leap(server.ws_url, server.project_id, token),
            leap(server.ws_url) as third,
        ):
            await third.recv()
            await third.send({"op": 2, "d": {"project_id": server.project_id, "token": token}})
            code, reason = await third.closed()
            assert code == 4000 and "connections" in reason
    finally:
        assert server.node is not None
        await server.node.stop()


async def test_a_client_that_never_reads_is_cut_off_and_others_are_served(tmp_path: Path) -> None:
    server = await start_node(tmp_path / "d", limits=Limits(max_buffered_bytes=256 * 1024))
    assert server.node is not None
    try:
        async with httpx.AsyncClient(base_url=server.api, headers=server.headers) as http:
            await make_channel(http, "firehose", "unprotected")
            # The stalled client: a raw socket that completes the handshake, then never reads.
            _, writer = await stalled_subscriber(server.node.port, server.project_id, "firehose")
            async with leap(server.ws_url, server.project_id) as healthy:
                await healthy.subscribe("firehose")
                while server.node.hub.channel_connections(server.project_id, "firehose") < 2:
                    await asyncio.sleep(0.01)
                blob = "x" * 60_000
                # The kernel's socket buffers take several MB before the server's own
                # buffer grows; publish until the policy fires (about 10 MB at most).
                sent = 0
                while server.node.hub.writer.closed_slow == 0 and sent < 200:
                    await ok(http.post("/channels/firehose/messages", json={"e": "b", "d": blob}))
                    await healthy.dispatch("MESSAGE")
                    sent += 1
                assert server.node.hub.writer.closed_slow == 1
                # The healthy reader got every message, and still does.
                await ok(http.post("/channels/firehose/messages", json={"e": "after"}))
                assert (await healthy.dispatch("MESSAGE"))["d"]["e"] == "after"
                assert server.node.hub.channel_connections(server.project_id, "firehose") == 1
            writer.close()
    finally:
        await server.node.stop()


async def test_oversize_client_frame_closes_1009(node: Server) -> None:
    async with leap(node.ws_url, node.project_id) as client:
        await client.send("x" * (300 * 1024))
        assert (await client.closed())[0] == 1009
