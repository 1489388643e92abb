"""Webhook events from a real node to a real HTTP receiver: what is sent, signed, when."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, launch, stop
from tests.e2e.leap import leap
from tests.webhooks.conftest import data
from tests.webhooks.receiver import Received, Receiver

pytestmark = pytest.mark.timeout(60)

LIFECYCLE = ["token.online", "token.offline", "channel.occupied", "channel.vacated"]


async def configure(api: httpx.AsyncClient, hooks: Receiver, **body: object) -> str:
    got = await data(api.put("/webhooks", json={"url": hooks.url, **body}))
    secret: str = got["secret"]
    return secret


async def token(api: httpx.AsyncClient) -> str:
    made = await data(api.post("/channels/tokens", json={"state": {"user": "ann"}}))
    return str(made["token"]["id"])


async def test_lifecycle_events_are_signed_and_sent_once_each(
    wnode: Server, api: httpx.AsyncClient, hooks: Receiver
) -> None:
    secret = await configure(api, hooks)
    await data(api.put("/channels/room", json={"type": "public"}))
    t = await token(api)
    async with leap(wnode.ws_url, wnode.project_id, t) as first:
        [online] = await hooks.wait_types("token.online")
        async with leap(wnode.ws_url, wnode.project_id, t) as second:
            await first.subscribe("room")
            await second.subscribe("room")
            [occupied] = await hooks.wait_types("channel.occupied")
        # One of two sockets left: the token is still online and the channel occupied.
        await first.nothing(0.3)
        assert hooks.of_type("token.offline", "channel.vacated") == []
    offline, vacated = await asyncio.gather(
        hooks.wait_types("token.offline"), hooks.wait_types("channel.vacated")
    )
    assert online.json["data"] == {"token_id": t}
    assert offline[0].json["data"] == {"token_id": t}
    assert occupied.json["data"] == {"channel_id": "room"}
    assert vacated[0].json["data"] == {"channel_id": "room"}
    events = hooks.of_type(*LIFECYCLE)
    assert sorted(e.type for e in events) == sorted(LIFECYCLE)
    for event in events:
        assert event.signed_by(secret)
        assert not event.signed_by(secret + "x")
        assert event.json["project_id"] == wnode.project_id
        assert event.headers["X-Switchboard-Event"] == event.type
        assert event.headers["X-Switchboard-Event-Id"] == event.json["id"]
        assert event.headers["Content-Type"] == "application/json"
    assert len({e.json["id"] for e in events}) == 4


async def test_only_the_chosen_events_are_sent(
    wnode: Server, api: httpx.AsyncClient, hooks: Receiver
) -> None:
    await configure(api, hooks, events=["channel.occupied", "message.published"])
    await data(api.put("/channels/room", json={"type": "public"}))
    t = await token(api)
    async with leap(wnode.ws_url, wnode.project_id, t) as client:
        await client.subscribe("room")
        await data(api.post("/channels/room/messages", json={"e": "hi", "d": {"n": 1}}))
        await client.dispatch("MESSAGE")
        await client.publish("room", "from-client", [1, 2])
        published = await hooks.wait_types("message.published", count=2)
    await hooks.wait_types("channel.occupied")
    by_source = {m.json["data"]["source"]: m.json["data"] for m in published}
    assert by_source["rest"] == {
        "channel_id": "room",
        "event": "hi",
        "data": {"n": 1},
        "source": "rest",
    }
    assert by_source["client"] == {
        "channel_id": "room",
        "event": "from-client",
        "data": [1, 2],
        "source": "client",
        "token_id": t,
    }
    assert hooks.of_type("token.online", "token.offline", "channel.vacated") == []


async def test_messages_are_not_sent_unless_asked(
    wnode: Server, api: httpx.AsyncClient, hooks: Receiver
) -> None:
    await configure(api, hooks)  # the default: lifecycle events only
    await data(api.put("/channels/room", json={"type": "unprotected"}))
    async with leap(wnode.ws_url, wnode.project_id) as anonymous:
        await anonymous.subscribe("room")
        await data(api.post("/channels/room/messages", json={"e": "hi", "d": 1}))
        await anonymous.dispatch("MESSAGE")
        await hooks.wait_types("channel.occupied")
    await hooks.wait_types("channel.vacated")
    assert hooks.of_type("message.published", "token.online") == []


async def test_a_project_without_webhooks_sends_nothing(
    wnode: Server, api: httpx.AsyncClient, hooks: Receiver
) -> None:
    await data(api.put("/channels/room", json={"type": "public"}))
    t = await token(api)
    async with leap(wnode.ws_url, wnode.project_id, t) as client:
        await client.subscribe("room")
    # Configured afterwards: the earlier connection made no event, and a new one does.
    await configure(api, hooks)
    async with leap(wnode.ws_url, wnode.project_id, t):
        await hooks.wait_types("token.online")
    await hooks.wait_types("token.offline")
    assert len(hooks.of_type("token.online")) == 1


async def test_a_slow_receiver_never_delays_fan_out(
    wnode: Server, api: httpx.AsyncClient, hooks: Receiver
) -> None:
    release = asyncio.Event()

    async def hold(_: object) -> int:
        await release.wait()
        return 200

    hooks.answer = hold
    await configure(api, hooks, events=["message.published"])
    await data(api.put("/channels/room", json={"type": "public"}))
    t = await token(api)
    async with leap(wnode.ws_url, wnode.project_id, t) as client:
        await client.subscribe("room")
        for n in range(50):
            await data(api.post("/channels/room/messages", json={"e": "m", "d": n}))
        got = [(await client.dispatch("MESSAGE"))["d"]["d"] for _ in range(50)]
        assert got == list(range(50))
        # Every webhook is still held by the receiver while all 50 were delivered.
        await hooks.wait_types("message.published", count=16)
        assert len(hooks.of_type("message.published")) <= 16  # the sender's concurrency
        release.set()
        await hooks.wait_types("message.published", count=50)


async def test_a_graceful_stop_sends_the_offline_events_of_the_sockets_it_closes(
    tmp_path: Path, hooks: Receiver
) -> None:
    # The first attempt of each offline or vacated event fails: a stop that left at once
    # would never make the second.
    refused: set[str] = set()

    def once_refused(received: Received) -> int:
        if received.type in ("token.offline", "channel.vacated") and received.type not in refused:
            refused.add(received.type)
            return 503
        return 200

    hooks.answer = once_refused  # type: ignore[assignment]
    server = launch(tmp_path / "d", "--webhook-retry-base", "0.05")
    try:
        async with httpx.AsyncClient(base_url=server.api, headers=server.headers) as api:
            await configure(api, hooks)
            await data(api.put("/channels/room", json={"type": "public"}))
            t = await token(api)
            async with leap(server.ws_url, server.project_id, t) as client:
                await client.subscribe("room")
                await hooks.wait_types("token.online")
                await hooks.wait_types("channel.occupied")
                # SIGTERM (in a thread: the receiver runs on this loop): 1001, then exit 0.
                stopping = asyncio.create_task(asyncio.to_thread(stop, server))
                assert (await client.closed())[0] == 1001
                assert await stopping == 0
        # Sent, and retried, before the process exited.
        assert [e.json["data"] for e in hooks.of_type("token.offline")] == [{"token_id": t}] * 2
        assert [e.json["data"] for e in hooks.of_type("channel.vacated")] == [
            {"channel_id": "room"}
        ] * 2
    finally:
        if server.process is not None and server.process.poll() is None:
            server.process.kill()


async def test_batch_publishes_are_sent_as_single_ones_are(
    wnode: Server, api: httpx.AsyncClient, hooks: Receiver
) -> None:
    await configure(api, hooks, events=["message.published"])
    for room in ("a", "b"):
        await data(api.put(f"/channels/{room}", json={"type": "public"}))
    await data(api.post("/broadcast", json={"e": "all", "d": 1, "channels": ["a", "b", "none"]}))
    ops = [
        {"op": "publish", "channel": "a", "e": "one", "d": 2},
        {"op": "direct", "token": await token(api), "e": "dm"},  # not a channel message
    ]
    await data(api.post("/batch", json={"requests": ops}))
    published = await hooks.wait_types("message.published", count=3)
    got = sorted((m.json["data"]["channel_id"], m.json["data"]["event"]) for m in published)
    assert got == [("a", "all"), ("a", "one"), ("b", "all")]
    assert {m.json["data"]["source"] for m in published} == {"rest"}
    await asyncio.sleep(0.2)
    assert len(hooks.of_type("message.published")) == 3
