"""The realtime client when connections end: restarts, drops at the worst moment,
4001, 4006 and heartbeats.

The races come from the bugs Pusher's and Centrifugo's clients shipped: a channel
unsubscribed just before a drop must stay unsubscribed, and a subscribe still
unanswered at the drop must complete after it. The :class:`Relay` makes the drop
happen exactly there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.server import ServerConnection

from switchboard import AsyncSwitchboard, AuthenticationFailed
from switchboard.client import connect
from tests.conftest import Server, start_node, stop
from tests.sdk.conftest import FAST, Recorder, Restartable, client_for, reach
from tests.sdk.relay import DOWN, UP, Relay, is_dispatch, is_op


def channel_is(event: str, channel: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: is_dispatch(event)(f) and f["d"]["c"] == channel


async def test_client_survives_a_server_restart(spawn_server: Callable[..., Server]) -> None:
    server = await asyncio.to_thread(spawn_server)
    async with AsyncSwitchboard(server.project_token, server.base_url) as sb:
        token = await sb.channels.tokens.create({"user": "ada"})
        await sb.channels.create("private", "game", {"round": 1})
        await sb.channels.create("unprotected", "lobby")
        await sb.channels.subscribe_token("game", token)
    async with Relay(server.base_url) as relay:
        user = client_for(server, token.id, url=relay.url)
        anon = client_for(server, url=relay.url)
        async with user, anon:
            await anon.subscribe("lobby")
            moves, hellos, states, direct = Recorder(), Recorder(), Recorder(), Recorder()
            user.on_message("game", "MOVE", moves)
            user.on_state_update("game", states)
            user.on_direct_message("DM", direct)
            anon.on_message("lobby", "HI", hellos)
            user_states, anon_states = user.connection_states(), anon.connection_states()

            await asyncio.to_thread(stop, server)
            await reach(user_states, "errored")
            mark = relay.mark()
            assert server.data_dir is not None and server.node is None
            port = int(server.base_url.rsplit(":", 1)[1])
            server = await asyncio.to_thread(
                spawn_server,
                server.data_dir,
                port=port,
                credentials=(server.project_id, server.project_token),
            )
            await reach(user_states, "connected")
            await reach(anon_states, "connected")
            # Without a token the client subscribes again; with one INIT lists "game".
            assert await anon.subscribe("lobby") == {}
            assert user.channels == {"game"}
            subscribes = [
                e.frame["d"]["c"]
                for e in relay.log[mark:]
                if e.direction == UP and is_dispatch("SUBSCRIBE")(e.frame)
            ]
            assert subscribes == ["lobby"]

            async with AsyncSwitchboard(server.project_token, server.base_url) as sb:
                await sb.channels.publish_message("game", "MOVE", {"x": 1})
                await sb.channels.publish_message("lobby", "HI", "again")
                await sb.channels.patch_state("game", {"round": 2})
                await sb.channels.tokens.publish_direct_message(token, "DM", "back")
            assert await moves.wait() == [{"x": 1}]
            assert await hellos.wait() == ["again"]
            assert await states.wait() == [{"round": 2}]
            assert await direct.wait() == ["back"]
            assert user.statistics().connections == 2


async def test_unsubscribe_lost_in_a_drop_is_sent_again(sb: AsyncSwitchboard, node: Server) -> None:
    token = await sb.channels.tokens.create()
    await sb.channels.create("private", "game")
    await sb.channels.create("public", "ctl")
    await sb.channels.subscribe_tokens("game", [token])
    async with (
        Relay(node.base_url) as relay,
        client_for(node, token.id, url=relay.url) as client,
    ):
        await client.subscribe("ctl")
        lost, control = Recorder(), Recorder()
        client.on_message("game", "E", lost)
        client.on_message("ctl", "E", control)

        # The link dies just as UNSUBSCRIBE leaves: the server never sees it.
        relay.silence_up = is_dispatch("UNSUBSCRIBE")
        mark = relay.mark()
        await client.unsubscribe("game")
        await relay.seen(UP, is_dispatch("UNSUBSCRIBE"), after=mark)
        states = client.connection_states()
        relay.silence_up = None
        relay.cut()
        await reach(states, "errored", "connected")

        init = await relay.seen(DOWN, is_dispatch("INIT"), after=mark)
        assert {c["id"] for c in init.frame["d"]["d"]["channels"]} == {"game", "ctl"}
        again = await relay.seen(UP, is_dispatch("UNSUBSCRIBE"), after=init.index)
        await relay.seen(DOWN, is_op(4), after=again.index)  # acked: handled

        assert [t.id for t in await sb.channels.get_all_tokens("game")] == []
        assert client.channels == {"ctl"}
        assert client.channel_state("game") is None
        await sb.channels.publish_message("game", "E", "must not arrive")
        await sb.channels.publish_message("ctl", "E", "sync point")
        await control.wait()
        assert lost.calls == []


async def test_unsubscribe_while_offline_holds_after_reconnect(restartable: Restartable) -> None:
    server = restartable.server
    async with AsyncSwitchboard(server.project_token, server.base_url) as sb:
        token = await sb.channels.tokens.create()
        await sb.channels.create("private", "game")
        await sb.channels.create("public", "sync")
        await sb.channels.subscribe_token("game", token)
        async with client_for(server, token.id) as client:
            states = client.connection_states()
            assert client.channels == {"game"}
            await restartable.stop()
            await reach(states, "errored")
            await client.unsubscribe("game")  # nothing can be sent now
            await restartable.start()
            await reach(states, "connected")
            await client.subscribe("sync")  # answered after the UNSUBSCRIBE it follows
            assert client.channels == {"sync"}
            assert [t.id for t in await sb.channels.get_all_tokens("game")] == []


async def test_tokenless_client_does_not_rejoin_what_it_left(
    sb: AsyncSwitchboard, node: Server
) -> None:
    await sb.channels.create("unprotected", "lobby")
    await sb.channels.create("unprotected", "ctl")
    async with Relay(node.base_url) as relay, client_for(node, url=relay.url) as client:
        await client.subscribe("lobby")
        await client.subscribe("ctl")
        lost, control = Recorder(), Recorder()
        client.on_message("lobby", "E", lost)
        client.on_message("ctl", "E", control)
        await client.unsubscribe("lobby")
        states = client.connection_states()
        mark = relay.mark()
        relay.cut()
        await reach(states, "errored", "connected")
        assert await client.subscribe("ctl") == {}  # rejoined by the client itself
        rejoined = [
            e.frame["d"]["c"]
            for e in relay.log[mark:]
            if e.direction == UP and is_dispatch("SUBSCRIBE")(e.frame)
        ]
        assert rejoined == ["ctl"]
        await sb.channels.publish_message("lobby", "E", "must not arrive")
        await sb.channels.publish_message("ctl", "E", "sync point")
        await control.wait()
        assert lost.calls == []


@pytest.mark.parametrize("with_token", [True, False], ids=["token", "tokenless"])
async def test_subscribe_pending_at_a_drop_completes_after_it(
    sb: AsyncSwitchboard, node: Server, with_token: bool
) -> None:
    await sb.channels.create("public" if with_token else "unprotected", "square", {"n": 7})
    token = (await sb.channels.tokens.create()).id if with_token else None
    async with Relay(node.base_url) as relay, client_for(node, token, url=relay.url) as client:
        relay.silence_up = is_dispatch("SUBSCRIBE")  # the server never sees it
        mark = relay.mark()
        pending = asyncio.ensure_future(client.subscribe("square"))
        await relay.seen(UP, is_dispatch("SUBSCRIBE"), after=mark)
        relay.silence_up = None
        relay.cut()
        async with asyncio.timeout(5):
            assert await pending == {"n": 7}
        assert client.channels == {"square"}
        assert client.statistics().connections == 2


async def test_subscribe_answer_lost_in_a_drop_comes_from_init(
    sb: AsyncSwitchboard, node: Server
) -> None:
    await sb.channels.create("public", "square", {"n": 7})
    token = await sb.channels.tokens.create()
    async with (
        Relay(node.base_url) as relay,
        client_for(node, token.id, url=relay.url) as client,
    ):
        # The server subscribes the token durably, but its AVAILABLE is lost.
        relay.silence_down = is_dispatch("AVAILABLE")
        mark = relay.mark()
        pending = asyncio.ensure_future(client.subscribe("square"))
        await relay.seen(DOWN, is_dispatch("AVAILABLE"), after=mark)
        relay.silence_down = None
        relay.cut()
        async with asyncio.timeout(5):
            assert await pending == {"n": 7}
        subscribes = [
            e for e in relay.log[mark:] if e.direction == UP and is_dispatch("SUBSCRIBE")(e.frame)
        ]
        assert len(subscribes) == 1  # INIT listed it: no second SUBSCRIBE


async def test_subscribe_while_the_server_is_down(restartable: Restartable) -> None:
    server = restartable.server
    async with AsyncSwitchboard(server.project_token, server.base_url) as sb:
        await sb.channels.create("unprotected", "lobby", {"up": True})
    async with client_for(server) as client:
        states = client.connection_states()
        await restartable.stop()
        await reach(states, "errored")
        pending = asyncio.ensure_future(client.subscribe("lobby"))
        await restartable.start()
        async with asyncio.timeout(5):
            assert await pending == {"up": True}


async def test_4001_at_connect_stops_without_retrying(node: Server) -> None:
    async with Relay(node.base_url) as relay:
        states = Recorder()
        with pytest.raises(AuthenticationFailed) as caught:
            await connect(
                node.project_id,
                "leap_token_nope",
                url=relay.url,
                reconnect_delay=FAST,
                on_connection_state_change=states,
            )
        assert "unknown token" in caught.value.reason
        assert relay.links == 1
        assert states.calls == ["connecting", "authenticating", "errored"]
    with pytest.raises(AuthenticationFailed):
        async with connect("project_nope", url=node.ws_url):
            pass


async def test_4001_mid_session_stops_the_client(sb: AsyncSwitchboard, node: Server) -> None:
    token = await sb.channels.tokens.create()
    client = await connect(node.project_id, token.id, url=node.ws_url, reconnect_delay=FAST)
    events, states = client.events(), client.connection_states()
    await sb.channels.tokens.delete(token)
    with pytest.raises(AuthenticationFailed):
        async with asyncio.timeout(5):
            await client.wait_closed()
    assert client.connection_state == "errored"
    assert client.last_close is not None and client.last_close[0] == 4001
    with pytest.raises(AuthenticationFailed):
        await client.subscribe("anything")
    with pytest.raises(AuthenticationFailed):
        await client.publish("anything", "E")
    with pytest.raises(AuthenticationFailed):
        async for _ in events:
            pass
    with pytest.raises(AuthenticationFailed):
        assert [s async for s in states] == ["errored"]
    await client.close()
    assert client.connection_state == "errored"


async def test_4006_redirect_to_a_second_server(sb: AsyncSwitchboard, node: Server) -> None:
    await sb.channels.create("unprotected", "lobby", {"here": True})

    async def redirect(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"op": 1, "d": {"heartbeat_interval": 30000}}))
        await ws.close(4006, node.ws_url)

    async with websockets.serve(redirect, "127.0.0.1", 0) as first:
        port = first.sockets[0].getsockname()[1]
        async with connect(
            node.project_id, url=f"ws://127.0.0.1:{port}/ws", reconnect_delay=(5, 10)
        ) as client:
            # Followed at once (a 5 s backoff would time this test out).
            assert client.url.startswith(node.ws_url + "?")
            assert client.last_close == (4006, node.ws_url)
            assert await client.subscribe("lobby") == {"here": True}


async def test_heartbeats_with_the_real_server(tmp_path: Path) -> None:
    server = await start_node(tmp_path / "hb", heartbeat_interval_ms=50)
    assert server.node is not None
    try:
        async with (
            Relay(server.base_url) as relay,
            client_for(server, url=relay.url) as client,
        ):
            await relay.seen(UP, lambda f: f == {"op": 3}, count=3)
            await relay.seen(DOWN, is_op(4), count=3)
            assert client.statistics().heartbeats_sent >= 3
    finally:
        await server.node.stop()


async def test_probes_are_echoed_and_a_silent_server_is_left() -> None:
    frames: list[dict[str, Any]] = []
    connections = 0

    async def peer(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        await ws.send(json.dumps({"op": 1, "d": {"heartbeat_interval": 50}}))
        assert json.loads(await ws.recv())["op"] == 2
        init = {
            "cid": "c1",
            "connection_count": 1,
            "metadata": None,
            "scope": "noauth",
            "channels": [],
        }
        await ws.send(json.dumps({"op": 0, "d": {"c": None, "u": True, "e": "INIT", "d": init}}))
        if connections > 1:
            await ws.wait_closed()
            return
        await ws.send(json.dumps({"op": 3, "d": {"tag": "probe-1"}}))
        beats = 0
        with contextlib.suppress(websockets.ConnectionClosed):  # the client gives up on us
            async for message in ws:
                frame = json.loads(message)
                frames.append(frame)
                if frame == {"op": 3}:
                    beats += 1
                    if beats <= 2:  # then go silent, as a dead link would
                        await ws.send(json.dumps({"op": 4}))

    async with websockets.serve(peer, "127.0.0.1", 0) as fake:
        port = fake.sockets[0].getsockname()[1]
        async with connect(
            "project_x", url=f"ws://127.0.0.1:{port}/ws", reconnect_delay=FAST
        ) as client:
            await reach(client.connection_states(), "errored", "connected")
            stats = client.statistics()
    assert {"op": 3, "d": {"tag": "probe-1"}} in frames
    assert frames.count({"op": 3}) == 3  # the third beat found the second one unacked
    assert (stats.probes_answered, stats.heartbeat_acks, stats.connections) == (1, 2, 2)
