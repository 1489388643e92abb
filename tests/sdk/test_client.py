"""The realtime client against the real server: states, subscriptions, listeners,
events, publishing, compression and bad arguments."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from switchboard import AsyncSwitchboard, ConnectionClosed, SubscriptionRefused
from switchboard.client import (
    Available,
    Client,
    ConnectionState,
    DirectMessage,
    ErrorEvent,
    Init,
    Message,
    StateUpdate,
    TokenStateUpdate,
    Unavailable,
    connect,
)
from tests.conftest import Server, free_port
from tests.sdk.conftest import FAST, Recorder, client_for, reach
from tests.sdk.relay import DOWN, UP, Relay


async def test_connect_walks_the_states_and_reads_init(sb: AsyncSwitchboard, node: Server) -> None:
    token = await sb.channels.tokens.create({"user": "ada"})
    await sb.channels.create("private", "game", {"round": 1})
    await sb.channels.subscribe_token("game", token)
    states = Recorder()
    async with connect(
        node.project_id, token.id, url=node.ws_url, on_connection_state_change=states
    ) as client:
        assert states.calls == ["connecting", "authenticating", "connected"]
        assert client.connection_state is ConnectionState.CONNECTED
        assert (client.metadata, client.scope) == ({"user": "ada"}, "token")
        assert client.cid
        # With a token INIT lists the subscriptions: no SUBSCRIBE needed.
        assert client.channels == {"game"}
        assert client.channel_state("game") == {"round": 1}
        assert await client.subscribe("game") == {"round": 1}
        stream = client.connection_states()
    assert str(client.connection_state) == "idle"
    assert [s async for s in stream] == ["idle"]
    assert states.calls[-1] == "idle"


async def test_tokenless_init(node: Server) -> None:
    async with connect(node.project_id, url=node.base_url) as client:  # http:// URL accepted
        assert (client.scope, client.metadata, client.channels) == ("noauth", None, frozenset())
        assert client.url.startswith(node.ws_url.replace("http", "ws"))
        assert "encoding=json" in client.url and "compression=none" in client.url


async def test_subscribe_answers_and_refusals(sb: AsyncSwitchboard, node: Server) -> None:
    await sb.channels.create("unprotected", "lobby", {"open": True})
    await sb.channels.create("public", "square", {"n": 1})
    await sb.channels.create("private", "vault")
    token = await sb.channels.tokens.create()
    async with connect(node.project_id, url=node.ws_url) as anon:
        assert await anon.subscribe("lobby") == {"open": True}
        assert anon.channels == {"lobby"}
        for channel, code in [
            ("square", "NOT_GRANTED"),
            ("vault", "NOT_GRANTED"),
            ("missing", "UNKNOWN"),
        ]:
            with pytest.raises(SubscriptionRefused) as refused:
                await anon.subscribe(channel)
            assert (refused.value.channel, refused.value.error_code) == (channel, code)
            assert anon.channel_state(channel) is None
    async with connect(node.project_id, token.id, url=node.ws_url) as user:
        assert await user.subscribe("square") == {"n": 1}
        with pytest.raises(SubscriptionRefused) as refused:
            await user.subscribe("vault")
        assert refused.value.error_code == "NOT_GRANTED"
        # Concurrent subscribes to one channel share one SUBSCRIBE and one answer.
        results = await asyncio.gather(user.subscribe("lobby"), user.subscribe("lobby"))
        assert list(results) == [{"open": True}, {"open": True}]
        await sb.channels.subscribe_token("vault", token)  # a grant while online: AVAILABLE
        assert await user.subscribe("vault") == {}
    async with connect(node.project_id, node.project_token, url=node.ws_url) as console:
        assert console.scope == "project"
        assert await console.subscribe("vault") == {}


async def test_listeners_fire_and_removers_remove(sb: AsyncSwitchboard, node: Server) -> None:
    token = await sb.channels.tokens.create()
    await sb.channels.create("public", "game", {"turn": 0})
    async with connect(node.project_id, token.id, url=node.ws_url) as client:
        await client.subscribe("game")
        moves, chats, states, direct = Recorder(), Recorder(), Recorder(), Recorder()
        remove_moves = client.on_message("game", "MOVE", moves)
        client.on_message("game", "CHAT", chats)
        client.on_state_update("game", states)
        client.on_direct_message("NOTE", direct)

        def broken(data: Any) -> None:
            raise RuntimeError("a listener bug must not break the client")

        client.on_message("game", "MOVE", broken)
        awaited: list[Any] = []

        async def async_listener(data: Any) -> None:
            await asyncio.sleep(0)
            awaited.append(data)

        client.on_message("game", "MOVE", async_listener)

        await sb.channels.publish_message("game", "MOVE", {"x": 1})
        await sb.channels.publish_message("game", "CHAT", "hello")
        assert await moves.wait() == [{"x": 1}]
        assert await chats.wait() == ["hello"]
        remove_moves()
        remove_moves()  # twice is harmless
        await sb.channels.publish_message("game", "MOVE", {"x": 2})
        await sb.channels.publish_message("game", "CHAT", "again")
        await chats.wait(2)  # sent after the second MOVE: that one has arrived too
        assert moves.calls == [{"x": 1}]
        assert awaited[:1] == [{"x": 1}]

        await sb.channels.patch_state("game", {"turn": 1})
        assert await states.wait() == [{"turn": 1}]
        assert client.channel_state("game") == {"turn": 1}
        await sb.channels.tokens.publish_direct_message(token, "NOTE", {"text": "hi"})
        assert await direct.wait() == [{"text": "hi"}]
        await sb.channels.tokens.publish_direct_message(token, "OTHER", {})


async def test_events_are_typed(sb: AsyncSwitchboard, node: Server) -> None:
    token = await sb.channels.tokens.create({"v": 1})
    await sb.channels.create("public", "game")
    client = client_for(node, token.id)
    events = client.events()
    async with client:
        await client.subscribe("game")
        await sb.channels.publish_message("game", "MOVE", [1])
        await sb.channels.set_state("game", {"s": 2})
        await sb.channels.tokens.publish_direct_message(token, "DM", None)
        await sb.channels.tokens.set_state(token, {"v": 2})
        await sb.channels.delete("game")
        seen: list[Any] = []
        async with asyncio.timeout(5):
            async for event in events:
                seen.append(event)
                if isinstance(event, Unavailable):
                    break
    init = seen[0]
    assert isinstance(init, Init)
    assert (init.scope, init.metadata, init.connection_count, init.channels) == (
        "token",
        {"v": 1},
        1,
        (),
    )
    available = seen[1]
    assert isinstance(available, Available)
    assert (available.channel, available.info.type, available.info.state) == ("game", "public", {})
    assert seen[2:] == [
        Message("game", "MOVE", [1]),
        StateUpdate("game", {"s": 2}),
        DirectMessage("DM", None),
        TokenStateUpdate({"v": 2}),
        Unavailable("game", graceful=True, error_code=None),
    ]
    assert client.metadata == {"v": 2}
    assert client.channels == frozenset()
    # Closed: the iterator ends.
    assert [e async for e in events] == []


async def test_publish_reaches_other_subscribers(sb: AsyncSwitchboard, node: Server) -> None:
    await sb.channels.create("public", "room")
    alice, bob = await sb.channels.tokens.create(), await sb.channels.tokens.create()
    async with (
        connect(node.project_id, alice.id, url=node.ws_url) as a,
        connect(node.project_id, bob.id, url=node.ws_url) as b,
    ):
        await a.subscribe("room")
        await b.subscribe("room")
        to_a, to_b, errors = Recorder(), Recorder(), Recorder()
        a.on_message("room", "SAY", to_a)
        b.on_message("room", "SAY", to_b)
        a.on_error(errors)
        await a.publish("room", "SAY", {"text": "hi bob"})
        assert await to_b.wait() == [{"text": "hi bob"}]
        await a.publish("elsewhere", "SAY", "not subscribed")
        [error] = await errors.wait()
        assert isinstance(error, ErrorEvent)
        assert (error.channel, error.code) == ("elsewhere", "forbidden")
        await b.publish("room", "SAY", "hi alice")
        assert await to_a.wait() == ["hi alice"]  # the sender does not get its own


async def test_zlib_compression(sb: AsyncSwitchboard, node: Server) -> None:
    await sb.channels.create("unprotected", "lobby", {"k": "v"})
    async with Relay(node.base_url) as relay:
        async with connect(node.project_id, url=relay.url, compression="zlib") as client:
            assert "compression=zlib" in client.url
            assert await client.subscribe("lobby") == {"k": "v"}
            got = Recorder()
            client.on_message("lobby", "E", got)
            await sb.channels.publish_message("lobby", "E", {"big": "z" * 5000})
            assert await got.wait() == [{"big": "z" * 5000}]
        down = [entry for entry in relay.log if entry.direction == DOWN]
        assert down and all(entry.binary for entry in down)
        assert not any(entry.binary for entry in relay.log if entry.direction == UP)


async def test_unsubscribe(sb: AsyncSwitchboard, node: Server) -> None:
    token = await sb.channels.tokens.create()
    await sb.channels.create("public", "a")
    await sb.channels.create("public", "b")
    async with connect(node.project_id, token.id, url=node.ws_url) as client:
        await client.subscribe("a")
        got = Recorder()
        client.on_message("a", "E", got)
        await client.unsubscribe("a")
        assert client.channel_state("a") is None
        assert client.channels == frozenset()
        # The server handles frames in order: once b is answered, a is gone.
        await client.subscribe("b")
        assert [t.id for t in await sb.channels.get_all_tokens("a")] == []
        await sb.channels.publish_message("a", "E", "lost")
        await client.unsubscribe("never-subscribed")
    assert got.calls == []


async def test_unsubscribe_while_subscribe_pending(sb: AsyncSwitchboard, node: Server) -> None:
    token = await sb.channels.tokens.create()
    await sb.channels.create("public", "a")
    async with connect(node.project_id, token.id, url=node.ws_url) as client:
        pending = asyncio.ensure_future(client.subscribe("a"))
        # One turn of the loop: SUBSCRIBE goes out; its answer cannot be read yet.
        await asyncio.sleep(0)
        await client.unsubscribe("a")
        with pytest.raises(SubscriptionRefused):
            await pending
        assert await client.subscribe("a") == {}
        assert client.channels == {"a"}


async def test_closed_client_refuses_calls(node: Server) -> None:
    client = await connect(node.project_id, url=node.ws_url)
    await client.close()
    await client.close()
    await client.wait_closed()
    with pytest.raises(ConnectionClosed):
        await client.subscribe("x")
    with pytest.raises(ConnectionClosed):
        await client.publish("x", "E", 1)
    await client.unsubscribe("x")  # nothing to undo


async def test_connect_times_out(node: Server) -> None:
    states = Recorder()
    with pytest.raises(TimeoutError) as caught:
        await connect(
            node.project_id,
            url=f"ws://127.0.0.1:{free_port()}/ws",
            open_timeout=0.3,
            reconnect_delay=FAST,
            on_connection_state_change=states,
        )
    assert "could not connect" in str(caught.value)
    assert "errored" in states.calls and states.calls[-1] == "idle"


async def test_subscribe_waits_for_the_first_connection(sb: AsyncSwitchboard, node: Server) -> None:
    await sb.channels.create("unprotected", "lobby", {"x": 1})
    client = client_for(node)
    states = client.connection_states()
    client.start()
    # Asked before INIT: sent once connected.
    assert await client.subscribe("lobby") == {"x": 1}
    await reach(states, "connected")
    await client.close()


BAD: list[tuple[str, Any, type[Exception]]] = [
    ("project int", lambda: Client(5), TypeError),  # type: ignore[arg-type]
    ("project empty", lambda: Client(""), ValueError),
    ("token int", lambda: Client("p", 5), TypeError),  # type: ignore[arg-type]
    ("compression", lambda: Client("p", compression="gzip"), ValueError),
    ("url scheme", lambda: Client("p", url="ftp://x/ws"), ValueError),
    ("url type", lambda: Client("p", url=5), TypeError),  # type: ignore[arg-type]
    ("delay type", lambda: Client("p", reconnect_delay=1), TypeError),  # type: ignore[arg-type]
    ("delay order", lambda: Client("p", reconnect_delay=(2, 1)), ValueError),
    ("open_timeout", lambda: connect("p", open_timeout="1"), TypeError),  # type: ignore[arg-type]
    ("channel int", lambda: Client("p").channel_state(5), TypeError),  # type: ignore[arg-type]
    ("on_message event", lambda: Client("p").on_message("c", "", print), ValueError),
    ("on_message cb", lambda: Client("p").on_message("c", "E", "cb"), TypeError),  # type: ignore[arg-type]
    ("on_state cb", lambda: Client("p").on_state_update("c", None), TypeError),  # type: ignore[arg-type]
    ("on_direct event", lambda: Client("p").on_direct_message(3, print), TypeError),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("name", "make", "error"), BAD, ids=[b[0] for b in BAD])
async def test_bad_arguments(name: str, make: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        make()


async def test_bad_call_arguments(node: Server) -> None:
    async with connect(node.project_id, url=node.ws_url) as client:
        with pytest.raises(TypeError):
            await client.subscribe(5)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await client.subscribe("")
        with pytest.raises(TypeError):
            await client.unsubscribe(None)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await client.publish("c", "E", {1, 2})
        with pytest.raises(ValueError):
            await client.publish("c", "E", float("inf"))
        with pytest.raises(TypeError):
            await client.publish("c", None, 1)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        await Client(node.project_id).subscribe("c")
