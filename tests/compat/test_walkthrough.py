"""Hop's Tokens walkthrough, end to end, with Hop's own SDKs pointed at Switchboard.

A backend process (@onehop/js) and a browser process (@onehop/client `hop.init`), as an
application would run them; the browser is ended abruptly, as a closed tab would be.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.compat.conftest import JS
from tests.conftest import Server, join_node, launch, start_node, stop

pytestmark = pytest.mark.compat


@pytest.fixture(
    params=[
        "one node",
        "three nodes on Redis",
        "two workers on Redis",
        "three nodes on a Redis Cluster",
    ]
)
async def topology(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Server, Server, Server]]:
    """(backend's node, browser's node, the node later checks go to)."""
    if request.param == "two workers on Redis":
        # One port, two processes (serve --workers 2): the kernel deals each connection
        # to either, so the backend's and the browser's land where they land.
        workers = launch(
            tmp_path / "w", "--workers", "2", "--redis", request.getfixturevalue("redis_url")
        )
        try:
            yield workers, workers, workers
        finally:
            assert stop(workers) == 0
        return
    if request.param == "one node":
        servers = [await start_node(tmp_path / "one")]
    else:
        cluster = request.param == "three nodes on a Redis Cluster"
        redis_url = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")
        first = await start_node(tmp_path / "a", redis_url=redis_url)
        servers = [first] + [
            await join_node(first, tmp_path / name, redis_url=redis_url) for name in "bc"
        ]
    try:
        yield servers[0], servers[1 % len(servers)], servers[2 % len(servers)]
    finally:
        for server in servers:
            assert server.node is not None
            await server.node.stop()


async def test_tokens_walkthrough(topology: tuple[Server, Server, Server], js: JS) -> None:
    node, browser_node, check_node = topology
    # Backend: a token per user with state {userId}; private channel `game`; subscribe them.
    setup = await js.run("walkthrough.cjs", "backend_setup", node)
    tokens = setup["tokens"]
    for user_id in ("user_1", "user_2"):
        token = setup[f"token_{user_id}"]
        assert token["id"] == tokens[user_id]
        assert token["id"].startswith("leap_token_")
        assert token["state"] == {"userId": user_id}
        assert token["is_online"] is False
    assert setup["channel"]["id"] == "game"
    assert setup["channel"]["type"] == "private"
    assert setup["subscribed"] == ["user_1", "user_2"]
    assert setup["online_before"] is False

    # Browser of user_1: hop.init({projectId, token}) and its listeners.
    browser = await js.start("walkthrough.cjs", "browser", browser_node, SB_TOKEN=tokens["user_1"])
    ready = (await browser.expect("ready"))["value"]
    assert ready == {
        "connection": "connected",
        "game": {"state": {"status": "waiting"}, "subscription": "available", "error": None},
    }

    # Backend, while the browser is connected.
    act = await js.run(
        "walkthrough.cjs",
        "backend_act",
        node,
        SB_TOKEN=tokens["user_1"],
        SB_OTHER_TOKEN=tokens["user_2"],
    )
    assert act["online_while_connected"] is True
    assert act["other_user_online"] is False
    assert act["online_by_object"] is True
    assert act["stats"] == {"online_count": 1}
    assert act.undefined("direct_message")
    assert act.undefined("message")
    assert act.undefined("state")

    # What the browser got.
    assert (await browser.expect("direct_message"))["value"] == {
        "title": "Your turn",
        "body": "Make a move",
    }
    assert (await browser.expect("message"))["value"] == {"from": "user_2", "square": "e4"}
    new_state = {"status": "playing", "turn": "user_1"}
    assert (await browser.expect("state_update"))["value"] == {
        "channel": "game",
        "state": new_state,
        "map": {"state": new_state, "subscription": "available", "error": None},
    }

    # The tab closes: the token is offline, the subscription stays.
    await browser.kill()
    offline = await js.run(
        "walkthrough.cjs", "backend_offline", check_node, SB_TOKEN=tokens["user_1"]
    )
    assert offline["online_after_close"] is False
    assert offline["stats_after_close"] == {"online_count": 0}
    assert offline["token_after_close"]["is_online"] is False
    async with httpx.AsyncClient(base_url=check_node.api, headers=check_node.headers) as http:
        r = await http.get("/channels/game/tokens")
    assert sorted(t["state"]["userId"] for t in r.json()["data"]["tokens"]) == ["user_1", "user_2"]
