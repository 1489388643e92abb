"""``/v1/settings``: the project's default history for channels created without one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from switchboard import AsyncSwitchboard
from switchboard.server.config import Limits
from tests.conftest import Server, start_node

pytestmark = pytest.mark.timeout(30)


async def data(call: Any) -> Any:
    response = await call
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def history_of(http: httpx.AsyncClient, channel: str, body: dict[str, Any]) -> Any:
    made = await data(http.put(f"/channels/{channel}", json={"type": "public", **body}))
    return made["channel"].get("history")


async def test_a_project_default_applies_to_new_channels_only(http: httpx.AsyncClient) -> None:
    assert await data(http.get("/settings")) == {
        "settings": {"history": None, "new_channel_history": None, "inbox": None}
    }
    assert await history_of(http, "before", {}) is None
    changed = await data(http.patch("/settings", json={"history": {"size": 20, "ttl_s": 60}}))
    assert changed["settings"] == {
        "history": {"size": 20, "ttl_s": 60},
        "new_channel_history": {"size": 20, "ttl_s": 60},
        "inbox": None,
    }
    assert await history_of(http, "after", {}) == {"size": 20, "ttl_s": 60}
    # A channel's own setting wins; an existing channel is not changed.
    assert await history_of(http, "own", {"history": {"size": 3}}) == {"size": 3, "ttl_s": 300}
    assert await history_of(http, "none", {"history": None}) is None
    assert (await data(http.get("/channels/before")))["channel"].get("history") is None
    # Messages of a channel that took the default are kept.
    await data(http.post("/channels/after/messages", json={"e": "m", "d": 1}))
    kept = await data(http.get("/channels/after/messages"))
    assert [m["d"] for m in kept["messages"]] == [1]
    # {} changes nothing; null removes the project's default.
    assert (await data(http.patch("/settings", json={})))["settings"]["history"] == {
        "size": 20,
        "ttl_s": 60,
    }
    removed = await data(http.patch("/settings", json={"history": None}))
    assert removed["settings"] == {"history": None, "new_channel_history": None, "inbox": None}
    assert await history_of(http, "later", {}) is None


async def test_a_project_may_turn_a_server_default_off(tmp_path: Path) -> None:
    server: Server = await start_node(tmp_path / "d", limits=Limits(history_size=50))
    assert server.node is not None
    try:
        async with httpx.AsyncClient(base_url=server.api, headers=server.headers) as http:
            got = await data(http.get("/settings"))
            assert got["settings"]["new_channel_history"] == {"size": 50, "ttl_s": 300}
            assert await history_of(http, "a", {}) == {"size": 50, "ttl_s": 300}
            off = await data(http.patch("/settings", json={"history": {"size": 0}}))
            assert off["settings"] == {
                "history": {"size": 0, "ttl_s": 300},
                "new_channel_history": None,
                "inbox": None,
            }
            assert await history_of(http, "b", {}) is None
            await data(http.patch("/settings", json={"history": None}))
            assert await history_of(http, "c", {}) == {"size": 50, "ttl_s": 300}
    finally:
        await server.node.stop()


@pytest.mark.parametrize(
    "body",
    [
        {"history": {"size": 10_001}},
        {"history": {"size": 5, "ttl_s": 0}},
        {"history": {"size": -1}},
        {"history": {"size": "5"}},
        {"history": 5},
        {"unknown": 1},
    ],
)
async def test_bad_settings_are_refused_and_change_nothing(
    http: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    await data(http.patch("/settings", json={"history": {"size": 7}}))
    response = await http.patch("/settings", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert (await data(http.get("/settings")))["settings"]["history"] == {"size": 7, "ttl_s": 300}


async def test_the_sdks_read_and_change_it(node: Server) -> None:
    async with AsyncSwitchboard(node.project_token, node.base_url) as sb:
        assert (await sb.settings.get()).history is None
        settings = await sb.settings.set_history(25, ttl=90)
        assert settings.history is not None and (settings.history.size, settings.history.ttl) == (
            25,
            90,
        )
        assert settings.new_channel_history == settings.history
        channel = await sb.channels.create("public", "fed")
        assert channel.history is not None and channel.history.size == 25
        cleared = await sb.settings.clear_history()
        assert cleared.history is None and cleared.new_channel_history is None
