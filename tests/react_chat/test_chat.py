"""Two users of the React chat in Chromium, on one `switchboard serve` process.

Everything goes through the built page and Hop's own browser SDKs: the token comes from
the example's backend, INIT brings the private room, ``useChannelMessage`` shows room
messages sent by the other page's ``sendMessage``, ``useDirectMessage`` the backend's
direct messages, ``useReadChannelState`` the topic and the member list, and
``useConnectionState`` the socket. Then one user's token is deleted (the page sees the
4001 and stays out), and the server is restarted under both pages (they come back by
themselves, with the room, and without subscribing again).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from tests.conftest import Server, stop
from tests.react_chat.chat import RECONNECT_TIMEOUT_MS, ChatBrowser, User
from tests.react_chat.conftest import StartBackend


async def chat_both_ways(alice: User, bob: User, round_: str) -> None:
    """Room messages both ways, a direct message, a topic change; each seen where it should."""
    from playwright.async_api import expect

    await alice.say(f"hello bob {round_}")
    await expect(bob.messages.last).to_have_text(f"alice: hello bob {round_}")
    await bob.say(f"hi alice {round_}")
    await expect(alice.messages.last).to_have_text(f"bob: hi alice {round_}")
    # The page shows its own message because it added it itself: no echo from the server
    # (bob's reply arrived after alice's message, so an echo would be there by now).
    await expect(alice.messages.filter(has_text=f"hello bob {round_}")).to_have_count(1)

    await bob.send_direct("alice", f"psst {round_}")
    await expect(alice.direct.last).to_have_text(f"bob to you: psst {round_}")

    await alice.set_topic(f"lunch {round_}")
    await expect(bob.topic).to_have_text(f"lunch {round_}")
    await expect(alice.topic).to_have_text(f"lunch {round_}")


async def test_two_users_chat_and_one_is_revoked(
    chromium: ChatBrowser, spawn_server: Callable[..., Server], start_backend: StartBackend
) -> None:
    from playwright.async_api import expect

    server = spawn_server()
    backend = await start_backend(server)
    alice, bob = await chromium.user("alice"), await chromium.user("bob")
    await alice.sign_in(backend.url)
    await bob.sign_in(backend.url)

    # Bob's sign-in patched the room's member list: alice sees it as a STATE_UPDATE.
    await expect(alice.members).to_have_text(["alice", "bob"])
    await expect(bob.members).to_have_text(["alice", "bob"])
    await chat_both_ways(alice, bob, "1")
    await expect(bob.direct).to_have_count(0)

    # The page never subscribed: the private room came with INIT, through the token. And it
    # never called Switchboard's REST API (so no CORS setting is needed): only its backend.
    for user in (alice, bob):
        assert [url for url in user.requests if not url.startswith(backend.url)] == []
        assert [s.url for s in user.sockets] == [server.ws_url]
        assert user.sockets[0].dispatches("SUBSCRIBE") == []
        assert [d["c"] for d in user.sockets[0].dispatches("MESSAGE")] == ["chat"]

    async with httpx.AsyncClient(base_url=server.api, headers=server.headers) as sb:
        tokens = (await sb.get("/channels/chat/tokens")).json()["data"]["tokens"]
        assert sorted(t["state"]["name"] for t in tokens) == ["alice", "bob"]
        assert all(t["is_online"] for t in tokens)

        # The operator kicks bob: the backend deletes his token.
        kicked = await sb.post(
            backend.url + "/api/kick", json={"name": "bob"}, headers=server.headers
        )
        assert kicked.status_code == 200, kicked.text

        await expect(bob.connection).to_have_text("errored")
        await expect(bob.revoked).to_be_visible()
        await expect(bob.page.get_by_role("button", name="Send", exact=True)).to_be_disabled()
        await expect(alice.members).to_have_text(["alice"])
        await expect(alice.connection).to_have_text("connected")
        assert (await sb.get("/channels/chat/tokens")).json()["data"]["tokens"][0]["state"] == {
            "name": "alice"
        }
    # Hop's client read the close code as "Invalid auth" and decided not to reconnect.
    assert any("Invalid auth" in line for line in bob.console), bob.console

    # Alice carries on; bob's page got nothing more and opened no new socket.
    await alice.say("still here")
    await alice.set_topic("after bob")
    await expect(alice.topic).to_have_text("after bob")
    await expect(bob.topic).to_have_text("lunch 1")
    assert len(bob.sockets) == 1 and bob.sockets[0].closed
    assert alice.errors == [] and bob.errors == []


async def test_pages_reconnect_after_a_server_restart(
    chromium: ChatBrowser, spawn_server: Callable[..., Server], start_backend: StartBackend
) -> None:
    from playwright.async_api import expect

    server = spawn_server()
    backend = await start_backend(server)
    alice, bob = await chromium.user("alice"), await chromium.user("bob")
    await alice.sign_in(backend.url)
    await bob.sign_in(backend.url)
    await chat_both_ways(alice, bob, "before")

    # SIGTERM: the server closes every socket with 1001 and exits; then it starts again
    # on the same port and data. Nobody touches the pages.
    assert stop(server, signal.SIGTERM) == 0
    for user in (alice, bob):
        await expect(user.connection).to_have_text("errored")
    spawn_server(
        server.data_dir,
        port=urlsplit(server.base_url).port,
        credentials=(server.project_id, server.project_token),
    )
    for user in (alice, bob):
        await expect(user.connection).to_have_text("connected", timeout=RECONNECT_TIMEOUT_MS)
        await expect(user.subscription).to_have_text("available")
        # Not mistaken for a revocation: the backend still knows the token.
        await expect(user.revoked).to_have_count(0)

    await chat_both_ways(alice, bob, "after")
    for user in (alice, bob):
        # A new socket on the same URL, and no SUBSCRIBE on it: INIT listed the room.
        assert len(user.sockets) >= 2 and user.sockets[0].closed
        assert {s.url for s in user.sockets} == {server.ws_url}
        assert user.sockets[-1].dispatches("SUBSCRIBE") == []
        assert user.errors == []
