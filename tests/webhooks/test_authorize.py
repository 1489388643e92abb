"""The subscribe hook: a token's SUBSCRIBE to a private channel it was not granted asks
the app, and a 2xx grants it for that connection."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import Server
from tests.e2e.leap import leap
from tests.webhooks.conftest import data
from tests.webhooks.receiver import Received, Receiver

pytestmark = pytest.mark.timeout(60)


def by_channel(received: Received) -> int:
    if received.path != "/authorize":
        return 200
    return 200 if received.json["data"]["channel_id"].startswith("vip") else 403


async def setup(api: httpx.AsyncClient, hooks: Receiver) -> tuple[str, str]:
    secret = (await data(api.put("/webhooks", json={"authorize_url": hooks.authorize_url})))[
        "secret"
    ]
    for channel in ("vip-room", "staff"):
        await data(api.put(f"/channels/{channel}", json={"type": "private", "state": {"c": 1}}))
    made = await data(api.post("/channels/tokens", json={"state": {"user": "ann"}}))
    return secret, made["token"]["id"]


async def test_the_hook_grants_or_refuses_and_is_signed(
    wnode: Server, api: httpx.AsyncClient, hooks: Receiver
) -> None:
    hooks.answer = by_channel  # type: ignore[assignment]
    secret, token = await setup(api, hooks)
    async with leap(wnode.ws_url, wnode.project_id, token) as client:
        granted = await client.subscribe("vip-room")
        assert granted["e"] == "AVAILABLE" and granted["d"]["channel"]["state"] == {"c": 1}
        refused = await client.subscribe("staff")
        assert refused["e"] == "UNAVAILABLE" and refused["d"]["error_code"] == "NOT_GRANTED"
        # Granted for this connection: it gets the channel's messages.
        await data(api.post("/channels/vip-room/messages", json={"e": "m", "d": 1}))
        assert (await client.dispatch("MESSAGE"))["c"] == "vip-room"
    asks = [r for r in hooks.received if r.path == "/authorize"]
    assert [a.json["data"]["channel_id"] for a in asks] == ["vip-room", "staff"]
    for ask in asks:
        assert ask.signed_by(secret)
        assert ask.json["type"] == "subscribe.authorize"
        assert ask.json["data"]["token_id"] == token
        assert ask.json["data"]["token_state"] == {"user": "ann"}
        assert ask.headers["X-Switchboard-Event"] == "subscribe.authorize"
    # The grant is the connection's alone: nothing durable was recorded.
    assert (await data(api.get("/channels/vip-room/tokens")))["tokens"] == []
    log = (await data(api.get("/webhooks/deliveries")))["deliveries"]
    assert sorted(e["status"] for e in log if e["type"] == "subscribe.authorize") == [
        "granted",
        "refused",
    ]


async def test_a_granted_token_is_not_asked(
    wnode: Server, api: httpx.AsyncClient, hooks: Receiver
) -> None:
    _, token = await setup(api, hooks)
    await data(api.put(f"/channels/staff/subscribers/{token}"))
    async with leap(wnode.ws_url, wnode.project_id, token) as client:
        # Granted by the backend: in INIT already; a SUBSCRIBE again needs no hook.
        assert [c["id"] for c in client.init["channels"]] == ["staff"]
        assert (await client.subscribe("staff"))["e"] == "AVAILABLE"
    assert [r for r in hooks.received if r.path == "/authorize"] == []


async def test_a_silent_hook_refuses_within_its_bound(tmp_path: object, hooks: Receiver) -> None:
    from pathlib import Path

    from tests.conftest import start_node

    never = asyncio.Event()

    async def hang(_: Received) -> int:
        await never.wait()
        return 200

    hooks.answer = hang  # type: ignore[assignment]
    server = await start_node(Path(str(tmp_path)) / "d", webhook_authorize_timeout_s=0.5)
    try:
        async with httpx.AsyncClient(base_url=server.api, headers=server.headers) as api:
            _, token = await setup(api, hooks)
            async with leap(server.ws_url, server.project_id, token) as client:
                started = asyncio.get_running_loop().time()
                refused = await client.subscribe("vip-room")
                waited = asyncio.get_running_loop().time() - started
                assert refused["d"]["error_code"] == "NOT_GRANTED"
                assert 0.4 < waited < 2.0, waited
                # The socket still works.
                await data(api.put(f"/channels/staff/subscribers/{token}"))
                assert (await client.dispatch("AVAILABLE"))["c"] == "staff"
    finally:
        never.set()
        assert server.node is not None
        await server.node.stop()


async def test_without_a_hook_nothing_is_asked(
    wnode: Server, api: httpx.AsyncClient, hooks: Receiver
) -> None:
    await data(api.put("/webhooks", json={"url": hooks.url}))  # events only
    await data(api.put("/channels/staff", json={"type": "private"}))
    token = (await data(api.post("/channels/tokens", json={})))["token"]["id"]
    async with leap(wnode.ws_url, wnode.project_id, token) as client:
        assert (await client.subscribe("staff"))["d"]["error_code"] == "NOT_GRANTED"
    assert [r for r in hooks.received if r.path == "/authorize"] == []


async def test_tokenless_and_public_subscribes_never_ask(
    wnode: Server, api: httpx.AsyncClient, hooks: Receiver
) -> None:
    await setup(api, hooks)
    await data(api.put("/channels/open", json={"type": "public"}))
    token = (await data(api.post("/channels/tokens", json={})))["token"]["id"]
    async with leap(wnode.ws_url, wnode.project_id) as anonymous:
        assert (await anonymous.subscribe("vip-room"))["d"]["error_code"] == "NOT_GRANTED"
    async with leap(wnode.ws_url, wnode.project_id, token) as client:
        assert (await client.subscribe("open"))["e"] == "AVAILABLE"
    assert [r for r in hooks.received if r.path == "/authorize"] == []
