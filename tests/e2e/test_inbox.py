"""Token inboxes over REST and on the wire (docs/inbox.md): opt-in per project, offsets
within the project's epoch, nothing new with the setting off, scoped to the project."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import msgspec
import pytest

from switchboard import AsyncSwitchboard, HistorySettings, InvalidRequest, NotFound, Switchboard
from switchboard.server.api.views import HistoryView
from tests.conftest import Server
from tests.e2e.leap import leap

pytestmark = pytest.mark.timeout(30)


def data(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def new_token(http: httpx.AsyncClient) -> str:
    token: str = data(await http.post("/channels/tokens", json={}))["token"]["id"]
    return token


async def send(http: httpx.AsyncClient, token: str, n: int) -> None:
    sent = await http.post(f"/channels/tokens/{token}/messages", json={"e": "dm", "d": n})
    assert data(sent) == {}  # as Hop answers: the position travels on the wire


async def inbox(http: httpx.AsyncClient, token: str, **query: int) -> dict[str, Any]:
    body = data(await http.get(f"/channels/tokens/{token}/messages", params=query))
    msgspec.convert(body, HistoryView)  # exactly the channel messages route's shape
    result: dict[str, Any] = body
    return result


async def test_off_by_default_then_kept_with_offsets(http: httpx.AsyncClient, node: Server) -> None:
    token = await new_token(http)
    assert data(await http.get("/settings"))["settings"]["inbox"] is None
    async with leap(node.ws_url, node.project_id, token) as client:
        await send(http, token, 0)
        # Off: exactly Hop's DIRECT_MESSAGE, and nothing to read.
        assert (await client.dispatch("DIRECT_MESSAGE"))["d"] == {"e": "dm", "d": 0}
        refused = await http.get(f"/channels/tokens/{token}/messages")
        assert refused.status_code == 400
        assert "inbox" in refused.json()["error"]["message"]
        on = data(await http.patch("/settings", json={"inbox": {"size": 3, "ttl_s": 60}}))
        assert on["settings"]["inbox"] == {"size": 3, "ttl_s": 60}
        for n in range(1, 6):
            await send(http, token, n)
        live = [(await client.dispatch("DIRECT_MESSAGE"))["d"] for _ in range(5)]
    epoch = live[0]["epoch"]
    assert isinstance(epoch, str) and len(epoch) == 8
    assert live == [{"e": "dm", "d": n, "offset": n, "epoch": epoch} for n in range(1, 6)]
    page = await inbox(http, token, limit=2)
    assert [(m["offset"], m["e"], m["d"]) for m in page["messages"]] == [(3, "dm", 3), (4, "dm", 4)]
    assert (page["epoch"], page["top_offset"], page["first_offset"]) == (epoch, 5, 3)
    assert (page["limit"], page["has_more"]) == (2, True)
    rest = await inbox(http, token, since=4)
    assert [m["offset"] for m in rest["messages"]] == [5] and rest["has_more"] is False
    # New bounds keep the epoch; off and on again starts a new one at offset 1.
    data(await http.patch("/settings", json={"inbox": {"size": 10}}))
    assert (await inbox(http, token))["epoch"] == epoch
    off = data(await http.patch("/settings", json={"inbox": None}))
    assert off["settings"]["inbox"] is None
    await send(http, token, 6)
    assert (await http.get(f"/channels/tokens/{token}/messages")).status_code == 400
    data(await http.patch("/settings", json={"inbox": {"size": 10}}))
    fresh = await inbox(http, token)
    assert (fresh["messages"], fresh["top_offset"], fresh["first_offset"]) == ([], 0, 1)
    assert fresh["epoch"] != epoch
    await send(http, token, 7)
    again = await inbox(http, token)
    assert [(m["offset"], m["d"]) for m in again["messages"]] == [(1, 7)]


async def test_size_zero_turns_it_off_and_bad_bounds_are_400(http: httpx.AsyncClient) -> None:
    data(await http.patch("/settings", json={"inbox": {"size": 5}}))
    assert data(await http.get("/settings"))["settings"]["inbox"] == {"size": 5, "ttl_s": 300}
    assert (
        data(await http.patch("/settings", json={"inbox": {"size": 0}}))["settings"]["inbox"]
        is None
    )
    for bad in ({"size": -1}, {"size": 10_001}, {"size": 5, "ttl_s": 0}, {"sizes": 1}, [1]):
        response = await http.patch("/settings", json={"inbox": bad})
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "invalid_request"
    assert data(await http.get("/settings"))["settings"]["inbox"] is None


async def test_reads_are_checked_and_scoped_to_the_project(
    http: httpx.AsyncClient, node: Server
) -> None:
    assert node.node is not None
    data(await http.patch("/settings", json={"inbox": {"size": 5}}))
    token = await new_token(http)
    await send(http, token, 1)
    for query, word in (({"since": -1}, "since"), ({"limit": 0}, "limit"), ({"limit": 1001}, "")):
        response = await http.get(f"/channels/tokens/{token}/messages", params=query)
        assert response.status_code == 400 and word in response.json()["error"]["message"]
    missing = await http.get("/channels/tokens/leap_token_nope/messages")
    assert missing.status_code == 404
    # Another project, with inboxes on too, cannot read (or learn of) this token's.
    _, other_secret = await node.node.service.create_project("other")
    async with httpx.AsyncClient(
        base_url=node.api, headers={"Authorization": other_secret}
    ) as theirs:
        data(await theirs.patch("/settings", json={"inbox": {"size": 5}}))
        response = await theirs.get(f"/channels/tokens/{token}/messages")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        response = await theirs.post(f"/channels/tokens/{token}/messages", json={"e": "x"})
        assert response.status_code == 404
    assert [m["d"] for m in (await inbox(http, token))["messages"]] == [1]


async def test_a_deleted_token_has_no_inbox(http: httpx.AsyncClient) -> None:
    data(await http.patch("/settings", json={"inbox": {"size": 5}}))
    token = await new_token(http)
    await send(http, token, 1)
    data(await http.delete(f"/channels/tokens/{token}"))
    assert (await http.get(f"/channels/tokens/{token}/messages")).status_code == 404


async def test_python_sdks(node: Server) -> None:
    async with AsyncSwitchboard(node.project_token, base_url=node.base_url) as sb:
        token = await sb.channels.tokens.create()
        with pytest.raises(InvalidRequest):
            await sb.channels.tokens.get_messages(token)
        settings = await sb.settings.set_inbox(3, ttl=60)
        assert settings.inbox == HistorySettings(3, 60)
        for n in range(5):
            await sb.channels.tokens.publish_direct_message(token, "dm", n)
        page = await sb.channels.tokens.get_messages(token, limit=2)
        assert [(m.offset, m.event, m.data) for m in page.messages] == [(3, "dm", 2), (4, "dm", 3)]
        assert (page.top_offset, page.first_offset, page.has_more) == (5, 3, True)
        rest = await sb.channels.tokens.get_messages(token.id, since=4)
        assert [m.offset for m in rest.messages] == [5] and rest.epoch == page.epoch
        with pytest.raises(NotFound):
            await sb.channels.tokens.get_messages("leap_token_nope")
        with pytest.raises(TypeError):
            await sb.channels.tokens.get_messages(token, since="1")  # type: ignore[arg-type]
        assert (await sb.settings.clear_inbox()).inbox is None
        assert (await sb.settings.get()).inbox is None

    def run() -> None:
        with Switchboard(node.project_token, base_url=node.base_url) as sync:
            assert sync.settings.set_inbox(4).inbox == HistorySettings(4, 300)
            sync.channels.tokens.publish_direct_message(token, "dm", "x")
            kept = sync.channels.tokens.get_messages(token)
            assert [(m.offset, m.data) for m in kept.messages] == [(1, "x")]
            assert sync.settings.set_inbox(0).inbox is None

    await asyncio.to_thread(run)
