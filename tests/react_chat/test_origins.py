"""`switchboard serve --ws-origin`: the page's origin must be listed, exactly.

Chromium sends the page's origin with the WebSocket upgrade. The server runs with the
backend's origin listed; bob, on the page the backend serves, connects. Alice opens the
same app from another origin (the proxy's), and her socket is refused before the
handshake. Hop's client cannot tell that from a network failure: it retries every
second, for as long as the page is open, and the page never learns why.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.conftest import Server, free_port
from tests.react_chat.chat import ChatBrowser
from tests.react_chat.conftest import StartBackend
from tests.react_chat.proxy import Proxy


async def test_only_the_listed_origin_connects(
    chromium: ChatBrowser, spawn_server: Callable[..., Server], start_backend: StartBackend
) -> None:
    from playwright.async_api import expect

    port = free_port()
    server = spawn_server(None, "--ws-origin", f"http://127.0.0.1:{port}")
    backend = await start_backend(server, port=port)
    bob = await chromium.user("bob")
    await bob.sign_in(backend.url)

    async with Proxy(backend.url, [server.ws_url]) as proxy:
        alice = await chromium.user("alice")
        await alice.join(proxy.urls[0])
        await expect(alice.connection).to_have_text("errored")
        # The client tries again by itself (a refused upgrade is a 1006, not a 4001), and
        # goes on: whichever attempt this waits for, there is a next one.
        async with alice.page.expect_websocket(timeout=10_000) as retried:
            pass
        assert (await retried.value).url == server.ws_url
        assert len(alice.sockets) >= 2
        assert {s.url for s in alice.sockets} == {server.ws_url}
        # ...and its token is fine, so the page does not call it a revocation.
        await expect(alice.revoked).to_have_count(0)
        await expect(bob.members).to_have_text(["bob", "alice"])
        await expect(bob.connection).to_have_text("connected")
