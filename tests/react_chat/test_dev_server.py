"""`npm run dev`: the same app from Vite's dev server, beside the built one.

The dev server serves the sources through Vite's dependency pre-bundling, a different
path from `vite build` for @onehop/client's CommonJS dependency (eventemitter3), so it
gets its own test: alice on the dev server (its /api proxied to the backend), bob on the
built page the backend serves, talking in both directions. React's development build
runs here too, and its console must stay free of warnings.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tests.conftest import Server
from tests.react_chat.chat import ChatBrowser
from tests.react_chat.conftest import StartBackend


async def test_dev_server_page_talks_to_the_built_page(
    chromium: ChatBrowser,
    spawn_server: Callable[..., Server],
    start_backend: StartBackend,
    dev_server: Callable[[str], Awaitable[str]],
) -> None:
    from playwright.async_api import expect

    server = spawn_server()
    backend = await start_backend(server)
    dev_url = await dev_server(backend.url)

    alice, bob = await chromium.user("alice"), await chromium.user("bob")
    await alice.sign_in(dev_url)
    await bob.sign_in(backend.url)
    assert [s.url for s in alice.sockets] == [server.ws_url]

    await alice.say("from the dev server")
    await expect(bob.messages.last).to_have_text("alice: from the dev server")
    await bob.say("from the build")
    await expect(alice.messages.last).to_have_text("bob: from the build")
    await bob.send_direct("alice", "psst")
    await expect(alice.direct.last).to_have_text("bob to you: psst")
    await expect(alice.members).to_have_text(["alice", "bob"])
    assert alice.errors == [] and bob.errors == []
    # React's development build warns about misused hooks; @onehop/react 1.6.5 (built for
    # React 18) gives it nothing to say under React 19 and StrictMode.
    assert alice.warnings == [], alice.warnings
