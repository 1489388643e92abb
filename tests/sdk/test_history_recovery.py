"""History recovery in the realtime client (Switchboard's): it remembers the last
position per channel and, after a reconnect, gets what it missed, or says the gap
cannot be filled so that the app reloads.

"Away" is made exact by a relay whose gate holds new links: the client's reconnect
waits at the gate while the test publishes, then goes through."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection

from switchboard import AsyncSwitchboard
from switchboard.client import Client, ConnectionState, Message, Recovery
from tests.conftest import Server, stop
from tests.sdk.conftest import FAST, Recorder, client_for, reach
from tests.sdk.relay import Relay

pytestmark = pytest.mark.timeout(60)


class GatedRelay(Relay):
    """A :class:`Relay` whose new links wait while :attr:`gate` is clear, and whose
    upstream may change (to reconnect to another node)."""

    def __init__(self, upstream_base: str) -> None:
        super().__init__(upstream_base)
        self.gate = asyncio.Event()
        self.gate.set()

    def point_at(self, base_url: str) -> None:
        self.upstream = base_url.replace("http", "ws", 1)

    async def away(self, states: AsyncIterator[ConnectionState]) -> None:
        """Drop the client's link and hold its reconnects until :meth:`back`."""
        self.gate.clear()
        self.cut()
        await reach(states, "errored")

    def back(self) -> None:
        self.gate.set()

    async def _handle(self, down: ServerConnection) -> None:
        await self.gate.wait()
        await super()._handle(down)


class Received:
    """Every message the client's listener got, with the recovered flag from events()."""

    def __init__(self, client: Client, channel: str) -> None:
        self.data = Recorder()
        client.on_message(channel, "m", self.data)
        self.events: list[Message] = []
        self.recoveries: list[Recovery] = []
        self._stream = client.events()

    async def recovery(self) -> Recovery:
        async with asyncio.timeout(10):
            async for event in self._stream:
                if isinstance(event, Message):
                    self.events.append(event)
                elif isinstance(event, Recovery):
                    self.recoveries.append(event)
                    return event
        raise AssertionError("no RECOVERY")

    async def messages(self, count: int) -> list[Message]:
        async with asyncio.timeout(10):
            async for event in self._stream:
                if isinstance(event, Message):
                    self.events.append(event)
                    if len(self.events) >= count:
                        break
        return self.events


async def publish(sb: AsyncSwitchboard, channel: str, *values: int) -> None:
    for value in values:
        await sb.channels.publish_message(channel, "m", value)


async def test_a_token_client_gets_what_it_missed_across_a_server_restart(
    spawn_server: Callable[..., Server],
) -> None:
    server = await asyncio.to_thread(spawn_server)
    async with AsyncSwitchboard(server.project_token, server.base_url) as sb:
        token = await sb.channels.tokens.create({"user": "ada"})
        await sb.channels.create("private", "feed", history_size=100)
        await sb.channels.create("unprotected", "lobby", history_size=100)
        await sb.channels.subscribe_token("feed", token)
        async with GatedRelay(server.base_url) as relay:
            user = client_for(server, token.id, url=relay.url)
            anon = client_for(server, url=relay.url)
            async with user, anon:
                await anon.subscribe("lobby")
                feed, lobby = Received(user, "feed"), Received(anon, "lobby")
                await publish(sb, "feed", 1, 2)
                await publish(sb, "lobby", 1)
                assert [m.data for m in await feed.messages(2)] == [1, 2]
                assert [m.data for m in await lobby.messages(1)] == [1]
                epoch = user.position("feed")
                assert epoch is not None and epoch[1] == 2

                user_states, anon_states = user.connection_states(), anon.connection_states()
                relay.gate.clear()
                await asyncio.to_thread(stop, server, signal.SIGKILL)  # nothing drains
                await reach(user_states, "errored")
                await reach(anon_states, "errored")
                port = int(server.base_url.rsplit(":", 1)[1])
                server = await asyncio.to_thread(
                    spawn_server,
                    server.data_dir,
                    port=port,
                    credentials=(server.project_id, server.project_token),
                )
                await publish(sb, "feed", 3, 4, 5)  # while both clients are away
                await publish(sb, "lobby", 2, 3)
                relay.back()

                recovery = await feed.recovery()
                assert (recovery.recovered, recovery.epoch, recovery.top_offset) == (
                    True,
                    epoch[0],
                    5,
                )
                assert (await lobby.recovery()).recovered
                await publish(sb, "feed", 6)
                got = await feed.messages(6)
                assert [(m.offset, m.data, m.recovered) for m in got] == [
                    (1, 1, False),
                    (2, 2, False),
                    (3, 3, True),
                    (4, 4, True),
                    (5, 5, True),
                    (6, 6, False),
                ]
                assert await feed.data.wait(6) == [1, 2, 3, 4, 5, 6]  # same listeners
                assert await lobby.data.wait(3) == [1, 2, 3]
                assert user.statistics().connections == 2


async def test_a_gap_too_old_is_reported_so_the_app_reloads(
    sb: AsyncSwitchboard, node: Server
) -> None:
    token = await sb.channels.tokens.create()
    await sb.channels.create("public", "small", history_size=3)
    await sb.channels.subscribe_token("small", token)
    async with GatedRelay(node.base_url) as relay:
        client = client_for(node, token.id, url=relay.url)
        failed = Recorder()
        client.on_recovery_failed(lambda channel, reason: failed((channel, reason)))
        async with client:
            small = Received(client, "small")
            await publish(sb, "small", 0)
            await small.messages(1)
            await relay.away(client.connection_states())
            await publish(sb, "small", *range(1, 11))  # 10 while away; 3 are kept
            relay.back()
            recovery = await small.recovery()
            assert (recovery.recovered, recovery.reason, recovery.top_offset) == (
                False,
                "too_old",
                11,
            )
            assert await failed.wait() == [("small", "too_old")]
            assert small.data.calls == [0]  # nothing half-recovered
            assert client.position("small") == (recovery.epoch, 11)
            await publish(sb, "small", 11)
            assert (await small.messages(2))[-1].offset == 12


async def test_a_channel_made_again_is_reported_as_another_epoch(
    sb: AsyncSwitchboard, node: Server
) -> None:
    token = await sb.channels.tokens.create()
    await sb.channels.create("private", "feed", history_size=10)
    await sb.channels.subscribe_token("feed", token)
    async with GatedRelay(node.base_url) as relay:
        client = client_for(node, token.id, url=relay.url)
        failed = Recorder()
        client.on_recovery_failed(lambda channel, reason: failed((channel, reason)))
        async with client:
            feed = Received(client, "feed")
            await publish(sb, "feed", 1)
            await feed.messages(1)
            old = client.position("feed")
            await relay.away(client.connection_states())
            await sb.channels.delete("feed")
            await sb.channels.create("private", "feed", history_size=10)
            await sb.channels.subscribe_token("feed", token)
            await publish(sb, "feed", 2)
            relay.back()
            recovery = await feed.recovery()
            assert (recovery.recovered, recovery.reason) == (False, "epoch_changed")
            assert await failed.wait() == [("feed", "epoch_changed")]
            assert old is not None and recovery.epoch != old[0]
            assert client.position("feed") == (recovery.epoch, 1)
            await publish(sb, "feed", 3)
            assert (await feed.messages(2))[-1].offset == 2


async def test_positions_carry_over_to_a_new_client(sb: AsyncSwitchboard, node: Server) -> None:
    await sb.channels.create("unprotected", "feed", history_size=10)
    async with client_for(node) as first:
        await first.subscribe("feed")
        feed = Received(first, "feed")
        await publish(sb, "feed", 1)
        await feed.messages(1)
        saved = first.positions()
        assert first.position("feed") == (saved["feed"][0], 1)
        await first.unsubscribe("feed")
        assert first.position("feed") is None  # unsubscribed: nothing to recover
    await publish(sb, "feed", 2, 3)
    second = Client(node.project_id, url=node.ws_url, reconnect_delay=FAST, positions=saved)
    async with second:
        feed = Received(second, "feed")
        await second.subscribe("feed")
        assert (await feed.recovery()).recovered
        assert [(m.offset, m.recovered) for m in feed.events] == [(2, True), (3, True)]


async def test_recover_false_sends_nothing_new(sb: AsyncSwitchboard, node: Server) -> None:
    await sb.channels.create("unprotected", "feed", history_size=10)
    async with GatedRelay(node.base_url) as relay:
        client = client_for(node, url=relay.url, recover=False)
        async with client:
            feed = Received(client, "feed")
            await client.subscribe("feed")
            await publish(sb, "feed", 1)
            await feed.messages(1)
            await relay.away(client.connection_states())
            await publish(sb, "feed", 2)
            relay.back()
            await client.wait_connected()
            await client.subscribe("feed")
            await publish(sb, "feed", 3)
            got = await feed.messages(2)
            assert [m.offset for m in got] == [1, 3]  # 2 was missed: no recovery asked
            ups: list[Any] = [
                e.frame["d"]
                for e in relay.log
                if e.frame.get("op") in (0, 2) and e.direction == "client->server"
            ]
            assert all("recover" not in d and "since" not in (d.get("d") or {}) for d in ups)
