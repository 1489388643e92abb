"""Channel history over REST and on the wire (docs/history.md): opt-in, bounded,
offsets within an epoch, and nothing new for a channel without it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from switchboard import (
    AsyncSwitchboard,
    HistorySettings,
    InvalidRequest,
    NotFound,
    Switchboard,
)
from switchboard.server.api.views import HistoryView
from switchboard.server.config import Limits
from switchboard.server.permissions import Permission
from tests.conftest import Server, start_node
from tests.e2e.leap import leap

pytestmark = pytest.mark.timeout(30)


def data(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def history(http: httpx.AsyncClient, channel: str, **query: int) -> dict[str, Any]:
    body = data(await http.get(f"/channels/{channel}/messages", params=query))
    msgspec.convert(body, HistoryView)  # exactly the documented shape
    result: dict[str, Any] = body
    return result


async def publish(http: httpx.AsyncClient, channel: str, n: int) -> None:
    assert data(await http.post(f"/channels/{channel}/messages", json={"e": "m", "d": n})) == {}


async def test_off_by_default(http: httpx.AsyncClient) -> None:
    await http.put("/channels/plain", json={"type": "public"})
    await publish(http, "plain", 1)
    response = await http.get("/channels/plain/messages")
    assert response.status_code == 400
    assert "no history" in response.json()["error"]["message"]


async def test_bounded_by_size_and_paged_with_since(http: httpx.AsyncClient) -> None:
    data(await http.put("/channels/h", json={"type": "public", "history": {"size": 5}}))
    for n in range(8):
        await publish(http, "h", n)
    page = await history(http, "h", limit=2)
    assert [(m["offset"], m["e"], m["d"]) for m in page["messages"]] == [(4, "m", 3), (5, "m", 4)]
    assert (page["top_offset"], page["first_offset"], page["has_more"]) == (8, 4, True)
    assert page["messages"][0]["created_at"].endswith("Z")
    page = await history(http, "h", since=5, limit=2)
    assert [m["offset"] for m in page["messages"]] == [6, 7]
    page = await history(http, "h", since=7, limit=2)
    assert [m["offset"] for m in page["messages"]] == [8]
    assert page["has_more"] is False
    assert (await http.get("/channels/h/messages", params={"limit": 0})).status_code == 400
    assert (await http.get("/channels/h/messages", params={"since": -1})).status_code == 400
    assert (await http.get("/channels/nope/messages")).status_code == 404


async def test_bounded_by_age(http: httpx.AsyncClient) -> None:
    data(await http.put("/channels/h", json={"type": "public", "history": {"size": 9, "ttl_s": 1}}))
    await publish(http, "h", 1)
    await asyncio.sleep(1.1)  # the bound under test is a wall-clock age
    page = await history(http, "h")
    assert (page["messages"], page["top_offset"], page["first_offset"]) == ([], 1, 2)


async def test_recreating_the_channel_changes_the_epoch(http: httpx.AsyncClient) -> None:
    data(await http.put("/channels/h", json={"type": "public", "history": {"size": 5}}))
    await publish(http, "h", 1)
    first = await history(http, "h")
    data(await http.delete("/channels/h"))
    data(await http.put("/channels/h", json={"type": "public", "history": {"size": 5}}))
    again = await history(http, "h")
    assert again["epoch"] != first["epoch"]
    assert (again["messages"], again["top_offset"]) == ([], 0)


async def test_bad_history_settings_are_400(http: httpx.AsyncClient) -> None:
    for bad in ({"size": -1}, {"size": 10_001}, {"size": 5, "ttl_s": 0}, {"sise": 5}, 5):
        response = await http.put("/channels/h", json={"type": "public", "history": bad})
        assert response.status_code == 400, bad
    # null: no history, whatever the server's default.
    data(await http.put("/channels/h", json={"type": "public", "history": None}))
    assert (await http.get("/channels/h/messages")).status_code == 400


async def test_the_policy_is_shown_on_channels_that_keep_history(http: httpx.AsyncClient) -> None:
    made = data(await http.put("/channels/h", json={"type": "public", "history": {"size": 5}}))
    assert made["channel"]["history"] == {"size": 5, "ttl_s": 300}
    plain = data(await http.put("/channels/plain", json={"type": "public"}))
    # A channel without history has exactly Hop's keys.
    assert set(plain["channel"]) == {"id", "project", "state", "type", "capabilities", "created_at"}
    assert data(await http.get("/channels/h"))["channel"]["history"] == {"size": 5, "ttl_s": 300}
    assert "history" not in data(await http.get("/channels/plain"))["channel"]
    listed = data(await http.get("/channels"))["channels"]
    assert {c["id"]: c.get("history") for c in listed} == {
        "h": {"size": 5, "ttl_s": 300},
        "plain": None,
    }


async def test_the_policy_changes_after_creation(http: httpx.AsyncClient) -> None:
    data(await http.put("/channels/h", json={"type": "public"}))
    changed = data(await http.patch("/channels/h", json={"history": {"size": 3, "ttl_s": 60}}))
    assert changed["channel"]["history"] == {"size": 3, "ttl_s": 60}
    assert changed["channel"]["id"] == "h" and changed["channel"]["type"] == "public"
    for n in range(4):
        await publish(http, "h", n)
    first = await history(http, "h")
    assert [m["d"] for m in first["messages"]] == [1, 2, 3]
    # New bounds: the same epoch, the kept messages stay (trimmed at the next publish).
    data(await http.patch("/channels/h", json={"history": {"size": 10}}))
    assert data(await http.get("/channels/h"))["channel"]["history"] == {"size": 10, "ttl_s": 300}
    await publish(http, "h", 4)
    again = await history(http, "h")
    assert again["epoch"] == first["epoch"]
    assert [m["offset"] for m in again["messages"]] == [2, 3, 4, 5]
    # Off: the messages go; on again: a new epoch from offset 1.
    off = data(await http.patch("/channels/h", json={"history": None}))
    assert "history" not in off["channel"]
    assert (await http.get("/channels/h/messages")).status_code == 400
    await publish(http, "h", 5)
    data(await http.patch("/channels/h", json={"history": {"size": 3}}))
    fresh = await history(http, "h")
    assert fresh["epoch"] != first["epoch"]
    assert (fresh["messages"], fresh["top_offset"]) == ([], 0)
    data(await http.patch("/channels/h", json={"history": {"size": 0}}))
    assert (await http.get("/channels/h/messages")).status_code == 400
    # Nothing present, nothing changed.
    assert "history" not in data(await http.patch("/channels/h", json={}))["channel"]


async def test_bad_policy_changes(http: httpx.AsyncClient) -> None:
    data(await http.put("/channels/h", json={"type": "public", "history": {"size": 5}}))
    for bad in ({"history": {"size": -1}}, {"history": {"ttl_s": 5}}, {"type": "private"}, []):
        response = await http.patch("/channels/h", json=bad)
        assert response.status_code == 400, bad
        assert response.json()["success"] is False
    assert data(await http.get("/channels/h"))["channel"]["history"] == {"size": 5, "ttl_s": 300}
    response = await http.patch("/channels/nope", json={"history": {"size": 5}})
    assert response.status_code == 404


async def test_server_default_applies_to_channels_without_their_own(tmp_path: Path) -> None:
    server = await start_node(tmp_path / "d", limits=Limits(history_size=3, history_ttl_s=60))
    try:
        async with httpx.AsyncClient(base_url=server.api, headers=server.headers) as http:
            data(await http.put("/channels/a", json={"type": "public"}))
            data(await http.put("/channels/b", json={"type": "public", "history": {"size": 0}}))
            for n in range(4):
                await publish(http, "a", n)
            assert [m["d"] for m in (await history(http, "a"))["messages"]] == [1, 2, 3]
            assert (await http.get("/channels/b/messages")).status_code == 400
    finally:
        assert server.node is not None
        await server.node.stop()


async def test_live_message_carries_its_offset_only_with_history(
    http: httpx.AsyncClient, node: Server
) -> None:
    data(await http.put("/channels/h", json={"type": "unprotected", "history": {"size": 5}}))
    data(await http.put("/channels/plain", json={"type": "unprotected"}))
    epoch = (await history(http, "h"))["epoch"]
    async with leap(node.ws_url) as client:
        await client.identify(node.project_id)
        await client.subscribe("h")
        await client.subscribe("plain")
        await publish(http, "h", 1)
        message = await client.dispatch("MESSAGE")
        assert message["d"] == {"e": "m", "d": 1, "offset": 1, "epoch": epoch}
        await publish(http, "plain", 2)
        assert (await client.dispatch("MESSAGE"))["d"] == {"e": "m", "d": 2}


async def test_client_messages_get_offsets_too(http: httpx.AsyncClient, node: Server) -> None:
    data(await http.put("/channels/h", json={"type": "public", "history": {"size": 5}}))
    token = data(await http.post("/channels/tokens", json={}))["token"]["id"]
    async with leap(node.ws_url) as sender, leap(node.ws_url) as reader:
        await sender.identify(node.project_id, token)
        await reader.identify(node.project_id, token)
        await sender.subscribe("h")
        await reader.dispatch("AVAILABLE")  # the token's other connection joins too
        await publish(http, "h", 1)
        await sender.publish("h", "chat", {"x": 1})
        assert (await reader.dispatch("MESSAGE"))["d"]["offset"] == 1
        assert (await reader.dispatch("MESSAGE"))["d"]["offset"] == 2
    page = await history(http, "h")
    assert [(m["e"], m["d"]) for m in page["messages"]] == [("m", 1), ("chat", {"x": 1})]


async def test_a_policy_change_reaches_client_messages_at_once(
    http: httpx.AsyncClient, node: Server
) -> None:
    """A client MESSAGE to a channel known to keep no history skips the store; a policy
    change must end that at once (here one node: the change and the event are one step)."""
    assert node.node is not None
    service = node.node.service
    data(await http.put("/channels/c", json={"type": "public"}))
    token = data(await http.post("/channels/tokens", json={}))["token"]["id"]
    async with leap(node.ws_url) as sender, leap(node.ws_url) as reader:
        await sender.identify(node.project_id, token)
        await reader.identify(node.project_id, token)
        await sender.subscribe("c")
        await reader.dispatch("AVAILABLE")
        await sender.publish("c", "m", 0)
        assert (await reader.dispatch("MESSAGE"))["d"] == {"e": "m", "d": 0}
        assert (node.project_id, "c") in service.no_history  # known: no store read next
        await sender.publish("c", "m", 1)
        assert (await reader.dispatch("MESSAGE"))["d"] == {"e": "m", "d": 1}
        data(await http.patch("/channels/c", json={"history": {"size": 5}}))
        assert (node.project_id, "c") not in service.no_history
        await sender.publish("c", "m", 2)
        on = (await reader.dispatch("MESSAGE"))["d"]
        assert (on["d"], on["offset"]) == (2, 1)
        data(await http.patch("/channels/c", json={"history": None}))
        await sender.publish("c", "m", 3)
        assert (await reader.dispatch("MESSAGE"))["d"] == {"e": "m", "d": 3}
        data(await http.patch("/channels/c", json={"history": {"size": 5}}))
        await sender.publish("c", "m", 4)
        again = (await reader.dispatch("MESSAGE"))["d"]
        assert (again["d"], again["offset"]) == (4, 1) and again["epoch"] != on["epoch"]
        # Known again to keep none, then deleted and made again with history: the new
        # channel is not taken for the old.
        data(await http.patch("/channels/c", json={"history": None}))
        await sender.publish("c", "m", 9)
        assert (await reader.dispatch("MESSAGE"))["d"] == {"e": "m", "d": 9}
        assert (node.project_id, "c") in service.no_history
        data(await http.delete("/channels/c"))
        data(await http.put("/channels/c", json={"type": "public", "history": {"size": 5}}))
        await sender.subscribe("c")
        await reader.dispatch("UNAVAILABLE")
        await reader.dispatch("AVAILABLE")
        await sender.publish("c", "m", 5)
        fresh = (await reader.dispatch("MESSAGE"))["d"]
        assert (fresh["d"], fresh["offset"]) == (5, 1)
    page = await history(http, "c")
    assert [(m["offset"], m["d"]) for m in page["messages"]] == [(1, 5)]


async def test_permissions_read_channels(http: httpx.AsyncClient, node: Server) -> None:
    assert node.node is not None
    secret = await node.node.service.create_project_token(
        node.project_id, Permission.CREATE_CHANNEL
    )
    data(await http.put("/channels/h", json={"type": "public", "history": {"size": 5}}))
    response = await http.get("/channels/h/messages", headers={"Authorization": secret})
    assert response.status_code == 403
    assert response.json()["error"]["permission"] == "read_channels"


async def test_python_sdks(node: Server) -> None:
    async with AsyncSwitchboard(node.project_token, base_url=node.base_url) as sb:
        await sb.channels.create("public", "h", history_size=3, history_ttl=60)
        await sb.channels.create("public", "plain", history_size=0)
        for n in range(5):
            await sb.channels.publish_message("h", "m", n)
        page = await sb.channels.get_messages("h", limit=2)
        assert [(m.offset, m.data) for m in page.messages] == [(3, 2), (4, 3)]
        assert (page.top_offset, page.first_offset, page.has_more) == (5, 3, True)
        rest = await sb.channels.get_messages("h", since=page.messages[-1].offset)
        assert [m.offset for m in rest.messages] == [5] and rest.epoch == page.epoch
        with pytest.raises(InvalidRequest):
            await sb.channels.get_messages("plain")
        # The policy, read and changed.
        assert (await sb.channels.get("h")).history == HistorySettings(size=3, ttl=60)
        assert (await sb.channels.get("plain")).history is None
        assert {c.id: c.history for c in await sb.channels.get_all()} == {
            "h": HistorySettings(3, 60),
            "plain": None,
        }
        changed = await sb.channels.set_history("h", 10)
        assert changed.history == HistorySettings(10, 300) and changed.id == "h"
        assert (await sb.channels.get_messages("h")).epoch == page.epoch
        assert (await sb.channels.set_history("h", 0)).history is None
        turned_on = await sb.channels.set_history("plain", 5, ttl=30)
        assert turned_on.history == HistorySettings(5, 30)
        with pytest.raises(NotFound):
            await sb.channels.set_history("nope", 5)
        with pytest.raises(TypeError):
            await sb.channels.set_history("h", -1)


async def test_the_sync_sdk_sets_history(node: Server) -> None:
    def run() -> None:
        with Switchboard(node.project_token, base_url=node.base_url) as sb:
            sb.channels.create("public", "h")
            assert sb.channels.set_history("h", 4, ttl=20).history == HistorySettings(4, 20)
            assert sb.channels.get("h").history == HistorySettings(4, 20)
            sb.channels.publish_message("h", "m", 1)
            assert [m.data for m in sb.channels.get_messages("h").messages] == [1]

    await asyncio.to_thread(run)  # the server runs in this test's event loop
