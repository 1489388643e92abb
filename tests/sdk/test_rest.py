"""The server SDK against the real server: every method, async and sync (``api``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import switchboard
from switchboard import (
    APIError,
    AsyncSwitchboard,
    Channel,
    ChannelType,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    Stats,
    Switchboard,
    Token,
    Unauthorized,
)
from switchboard._rest import _channel_calls
from switchboard.client import connect
from tests.conftest import Server
from tests.sdk.conftest import Recorder, Threaded


async def test_channels_create_get_list_delete(api: Any, node: Server) -> None:
    generated = await api.channels.create(ChannelType.PUBLIC)
    assert isinstance(generated, Channel)
    assert generated.id.startswith("channel_")
    assert generated.type is ChannelType.PUBLIC
    assert generated.state == {}
    assert generated.project_id == node.project_id
    assert generated.created_at.tzinfo is not None

    game = await api.channels.create("private", "game", {"round": 1})
    assert (game.id, game.type, game.state) == ("game", ChannelType.PRIVATE, {"round": 1})
    assert game.raw["project"]["id"] == node.project_id
    assert await api.channels.get("game") == game
    assert await api.channels.get(game) == game  # a Channel works where an ID does

    assert [c.id for c in await api.channels.get_all()] == [generated.id, "game"]
    await api.channels.delete(generated)
    assert [c.id for c in await api.channels.get_all()] == ["game"]
    with pytest.raises(NotFound) as caught:
        await api.channels.get(generated.id)
    assert caught.value.status == 404
    assert caught.value.code == "not_found"
    assert generated.id in caught.value.message


async def test_get_all_reads_every_page(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_channel_calls, "LIST_PAGE_SIZE", 2)
    for n in range(5):
        await api.channels.create("unprotected", f"c{n}")
    assert [c.id for c in await api.channels.get_all()] == ["c0", "c1", "c2", "c3", "c4"]


async def test_state_set_patch_and_functions(api: Any, node: Server) -> None:
    await api.channels.create("unprotected", "room", {"a": 1})
    assert await api.channels.get_state("room") == {"a": 1}
    await api.channels.set_state("room", {"b": 2})
    assert await api.channels.get_state("room") == {"b": 2}
    await api.channels.patch_state("room", {"c": 3})
    assert await api.channels.get_state("room") == {"b": 2, "c": 3}
    # Hop's SetStateAction: a function of the current state.
    await api.channels.set_state("room", lambda old: {**old, "b": old["b"] + 1})
    assert await api.channels.get_state("room") == {"b": 3, "c": 3}
    await api.channels.patch_state("room", lambda old: {"c": old["c"] * 10})
    assert (await api.channels.get("room")).state == {"b": 3, "c": 30}


async def test_messages_reach_a_realtime_client(api: Any, node: Server) -> None:
    await api.channels.create("unprotected", "news")
    token = await api.channels.tokens.create({"user": "ada"})
    async with connect(node.project_id, token.id, url=node.ws_url) as client:
        news, direct = Recorder(), Recorder()
        client.on_message("news", "POST", news)
        client.on_direct_message("PING", direct)
        await client.subscribe("news")
        await api.channels.publish_message("news", "POST", {"title": "hi"})
        await api.channels.tokens.publish_direct_message(token, "PING", [1, 2])
        assert await news.wait() == [{"title": "hi"}]
        assert await direct.wait() == [[1, 2]]


async def test_token_methods(api: Any, node: Server) -> None:
    expiry = datetime.now(UTC) + timedelta(days=1)
    token = await api.channels.tokens.create({"user": "42"}, expires_at=expiry)
    assert isinstance(token, Token)
    assert token.id.startswith("leap_token_")
    assert (token.state, token.is_online, token.project_id) == (
        {"user": "42"},
        False,
        node.project_id,
    )
    assert token.expires_at is not None
    assert abs(token.expires_at - expiry) < timedelta(seconds=1)
    plain = await api.channels.tokens.create()
    assert (plain.state, plain.expires_at) == ({}, None)

    assert await api.channels.tokens.get(token.id) == token
    assert {t.id for t in await api.channels.tokens.get_all()} == {token.id, plain.id}
    updated = await api.channels.tokens.set_state(token, {"user": "43"})
    assert updated.state == {"user": "43"}
    assert (await api.channels.tokens.get(token)).state == {"user": "43"}

    assert await api.channels.tokens.is_online(token) is False
    async with connect(node.project_id, token.id, url=node.ws_url) as client:
        assert client.metadata == {"user": "43"}
        assert await api.channels.tokens.is_online(token.id) is True
    await api.channels.tokens.delete(plain)
    with pytest.raises(NotFound):
        await api.channels.tokens.get(plain.id)


async def test_subscribers_tokens_and_stats(api: Any, node: Server) -> None:
    await api.channels.create("private", "game")
    a, b, c = [await api.channels.tokens.create({"n": n}) for n in range(3)]
    await api.channels.subscribe_token("game", a)
    await api.channels.subscribe_tokens("game", [b.id, c])
    assert {t.id for t in await api.channels.get_all_tokens("game")} == {a.id, b.id, c.id}
    await api.channels.remove_token("game", a.id)
    assert {t.id for t in await api.channels.get_all_tokens("game")} == {b.id, c.id}

    assert await api.channels.get_stats("game") == Stats(online_count=0)
    async with connect(node.project_id, b.id, url=node.ws_url) as client:
        assert client.channels == {"game"}
        assert (await api.channels.get_stats("game")).online_count == 1
        [listed] = [t for t in await api.channels.get_all_tokens("game") if t.id == b.id]
        assert listed.is_online is True
        gone = Recorder()
        client.on_state_update("game", gone)
        events = client.events()
        await api.channels.remove_tokens("game", (t for t in [b, c]))
        async for event in events:
            if isinstance(event, switchboard.client.Unavailable):
                assert event.graceful is True
                break
        assert client.channels == frozenset()
        assert client.channel_state("game") is None
    assert await api.channels.get_all_tokens("game") == []


async def test_many_tokens_tries_every_one_then_raises(api: Any) -> None:
    await api.channels.create("private", "game")
    good = await api.channels.tokens.create()
    with pytest.raises(NotFound) as caught:
        await api.channels.subscribe_tokens(
            "game", ["leap_token_missing1", good.id, "leap_token_missing2"]
        )
    assert "2 of 3 calls failed" in "".join(caught.value.__notes__)
    assert [t.id for t in await api.channels.get_all_tokens("game")] == [good.id]
    await api.channels.subscribe_tokens("game", [])  # nothing to do, no request


async def test_server_errors_become_api_errors(api: Any, node: Server) -> None:
    await api.channels.create("private", "game")
    with pytest.raises(Conflict) as conflict:
        await api.channels.create("public", "game")
    assert (conflict.value.status, conflict.value.code) == (409, "already_exists")
    with pytest.raises(InvalidRequest) as invalid:
        await api.channels.create("private", "has space")
    assert invalid.value.status == 400
    assert "channel ID" in invalid.value.message
    with pytest.raises(PayloadTooLarge):
        await api.channels.set_state("game", {"blob": "x" * 70_000})
    with pytest.raises(NotFound):
        await api.channels.publish_message("nope", "E", {})
    with pytest.raises(NotFound):
        await api.channels.tokens.publish_direct_message("leap_token_nope", "E", {})
    with pytest.raises(InvalidRequest):
        await api.channels.tokens.create(expires_at="2000-01-01T00:00:00Z")
    assert isinstance(conflict.value, APIError)
    assert str(conflict.value).startswith("409 already_exists: ")


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_auth_and_project_errors(node: Server, kind: str) -> None:
    def make(token: str, **kwargs: Any) -> Any:
        if kind == "async":
            return AsyncSwitchboard(token, node.base_url + "/v1", **kwargs)
        return Threaded(Switchboard(token, node.base_url + "/v1", **kwargs))

    bad = make("ptk_not_a_real_token")
    with pytest.raises(Unauthorized) as caught:
        await bad.channels.get_all()
    assert caught.value.code == "invalid_auth"
    other = make(node.project_token, project="project_other")
    with pytest.raises(Forbidden):
        await other.channels.tokens.get_all()
    mine = make(node.project_token, project=node.project_id)
    assert await mine.channels.get_all() == []
    for client in (bad, other, mine):
        if kind == "async":
            await client.aclose()
        else:
            await client.close()


async def test_context_managers(node: Server) -> None:
    async with AsyncSwitchboard(node.project_token, node.base_url) as sb:
        assert await sb.channels.get_all() == []
        assert repr(sb) == f"AsyncSwitchboard(base_url={node.base_url!r})"

    def sync_block() -> list[Channel]:
        with Switchboard(node.project_token, node.base_url) as sync:
            return sync.channels.get_all()

    assert await asyncio.to_thread(sync_block) == []
