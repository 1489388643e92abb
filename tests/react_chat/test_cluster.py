"""The React chat on a 2-node cluster (two `switchboard serve --redis` processes, one Redis).

A small proxy (tests/react_chat/proxy.py) gives each node an origin of its own that
serves the same app: alice opens it on node A's port, bob on node B's, so everything
one page does reaches the other only through Redis. The backend talks REST to node A
alone; its direct messages and state patches reach bob on B, and its token delete
closes bob's socket on B with 4001.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import Server
from tests.react_chat.chat import ChatBrowser
from tests.react_chat.conftest import StartBackend
from tests.react_chat.proxy import Proxy
from tests.react_chat.test_chat import chat_both_ways


async def test_two_users_on_two_nodes_behind_a_proxy(
    chromium: ChatBrowser,
    spawn_server: Callable[..., Server],
    start_backend: StartBackend,
    redis_url: str,
    tmp_path: Path,
) -> None:
    from playwright.async_api import expect

    a = spawn_server(tmp_path / "a", "--redis", redis_url)
    b = spawn_server(
        tmp_path / "b", "--redis", redis_url, credentials=(a.project_id, a.project_token)
    )
    backend = await start_backend(a, "--socket-url", "/ws")

    async with Proxy(backend.url, [a.ws_url, b.ws_url]) as proxy:
        via_a, via_b = proxy.urls
        node_a, node_b = proxy.routes
        alice, bob = await chromium.user("alice"), await chromium.user("bob")
        await alice.sign_in(via_a)
        await bob.sign_in(via_b)
        # Each page resolved the relative socket URL against its own origin.
        assert [s.url for s in alice.sockets] == [via_a.replace("http", "ws", 1) + "ws"]
        assert [s.url for s in bob.sockets] == [via_b.replace("http", "ws", 1) + "ws"]
        assert (node_a.live, node_b.live) == (1, 1)

        await expect(alice.members).to_have_text(["alice", "bob"])
        await chat_both_ways(alice, bob, "across")
        await bob.send_direct("alice", "from B")
        await expect(alice.direct.last).to_have_text("bob to you: from B")

        # Both count as online, whichever node is asked (each node writes its own counts
        # to Redis just after they change: wait for that, briefly).
        for node in (a, b):
            async with httpx.AsyncClient(base_url=node.api, headers=node.headers) as sb:

                async def seen(sb: httpx.AsyncClient = sb) -> tuple[list[bool], int]:
                    tokens = (await sb.get("/channels/chat/tokens")).json()["data"]["tokens"]
                    stats = (await sb.get("/channels/chat/stats")).json()["data"]["stats"]
                    return [t["is_online"] for t in tokens], stats["online_count"]

                deadline = time.monotonic() + 5
                while (found := await seen()) != ([True, True], 2):
                    assert time.monotonic() < deadline, (node.base_url, found)
                    await asyncio.sleep(0.05)

        # The token is deleted through node A; bob's socket lives on node B.
        async with httpx.AsyncClient() as web:
            kicked = await web.post(
                backend.url + "/api/kick", json={"name": "bob"}, headers=a.headers
            )
            assert kicked.status_code == 200, kicked.text
        await expect(bob.connection).to_have_text("errored")
        await expect(bob.revoked).to_be_visible()
        assert node_b.close_codes == [4001]
        await expect(alice.members).to_have_text(["alice"])
        await expect(alice.connection).to_have_text("connected")
        assert any("Invalid auth" in line for line in bob.console), bob.console
        assert (node_a.opened, node_b.opened) == (1, 1)
        assert alice.errors == [] and bob.errors == []
