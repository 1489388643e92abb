"""Inbox recovery in the realtime client (docs/inbox.md): it holds its token's inbox
position (``"$inbox"``) and, after a reconnect, gets the direct messages it missed,
each once, or says the gap cannot be filled."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import pytest

from switchboard import AsyncSwitchboard, Unavailable
from switchboard.client import INBOX, Client, DirectMessage, Recovery
from tests.conftest import Server, stop
from tests.sdk.conftest import Recorder, Restartable, client_for, reach
from tests.sdk.relay import Relay
from tests.sdk.test_history_recovery import GatedRelay

pytestmark = pytest.mark.timeout(60)


class Inbox:
    """Every direct message the client's listener got, and the events behind them."""

    def __init__(self, client: Client) -> None:
        self.data = Recorder()
        client.on_direct_message("dm", self.data)
        self.events: list[DirectMessage] = []
        self.recoveries: list[Recovery] = []
        self._stream = client.events()

    async def recovery(self) -> Recovery:
        async with asyncio.timeout(10):
            async for event in self._stream:
                if isinstance(event, DirectMessage):
                    self.events.append(event)
                elif isinstance(event, Recovery) and event.channel == INBOX:
                    self.recoveries.append(event)
                    return event
        raise AssertionError("no RECOVERY of the inbox")

    async def messages(self, count: int) -> list[DirectMessage]:
        async with asyncio.timeout(10):
            async for event in self._stream:
                if isinstance(event, DirectMessage):
                    self.events.append(event)
                    if len(self.events) >= count:
                        break
        return self.events


async def send(sb: AsyncSwitchboard, token: str, *values: int) -> None:
    for value in values:
        await sb.channels.tokens.publish_direct_message(token, "dm", value)


async def test_a_token_client_gets_its_missed_direct_messages_across_a_server_restart(
    spawn_server: Callable[..., Server],
) -> None:
    server = await asyncio.to_thread(spawn_server)
    async with AsyncSwitchboard(server.project_token, server.base_url) as sb:
        await sb.settings.set_inbox(100)
        token = await sb.channels.tokens.create({"user": "ada"})
        async with GatedRelay(server.base_url) as relay:
            user = client_for(server, token.id, url=relay.url)
            inbox = Inbox(user)  # before it connects: its first RECOVERY comes with INIT
            async with user:
                first = await inbox.recovery()  # where the inbox stood: nothing yet
                assert (first.recovered, first.top_offset) == (True, 0)
                await send(sb, token.id, 1, 2)
                assert [m.data for m in await inbox.messages(2)] == [1, 2]
                position = user.position(INBOX)
                assert position is not None and position[1] == 2

                states = user.connection_states()
                relay.gate.clear()
                await asyncio.to_thread(stop, server, signal.SIGKILL)  # nothing drains
                await reach(states, "errored")
                port = int(server.base_url.rsplit(":", 1)[1])
                server = await asyncio.to_thread(
                    spawn_server,
                    server.data_dir,
                    port=port,
                    credentials=(server.project_id, server.project_token),
                )
                await send(sb, token.id, 3, 4, 5)  # while the client is away
                relay.back()

                recovery = await inbox.recovery()
                assert (recovery.recovered, recovery.epoch, recovery.top_offset) == (
                    True,
                    position[0],
                    5,
                )
                await send(sb, token.id, 6)
                got = await inbox.messages(6)
                assert [(m.offset, m.data, m.recovered) for m in got] == [
                    (1, 1, False),
                    (2, 2, False),
                    (3, 3, True),
                    (4, 4, True),
                    (5, 5, True),
                    (6, 6, False),
                ]
                assert await inbox.data.wait(6) == [1, 2, 3, 4, 5, 6]
                assert user.positions()[INBOX] == (position[0], 6)


async def test_a_gap_too_old_is_reported_so_the_app_reloads(
    sb: AsyncSwitchboard, node: Server
) -> None:
    await sb.settings.set_inbox(3)
    token = await sb.channels.tokens.create()
    async with GatedRelay(node.base_url) as relay:
        client = client_for(node, token.id, url=relay.url)
        failed = Recorder()
        client.on_recovery_failed(lambda channel, reason: failed((channel, reason)))
        inbox = Inbox(client)
        async with client:
            first = await inbox.recovery()  # where the inbox stood, with INIT
            assert (first.recovered, first.top_offset) == (True, 0)
            await send(sb, token.id, 0)
            await inbox.messages(1)
            await relay.away(client.connection_states())
            await send(sb, token.id, *range(1, 11))  # 10 while away; 3 are kept
            relay.back()
            recovery = await inbox.recovery()
            assert (recovery.recovered, recovery.reason, recovery.top_offset) == (
                False,
                "too_old",
                11,
            )
            assert await failed.wait() == [(INBOX, "too_old")]
            assert inbox.data.calls == [0]  # nothing half-recovered
            assert client.position(INBOX) == (recovery.epoch, 11)
            await send(sb, token.id, 11)
            assert (await inbox.messages(2))[-1].offset == 12


CLIENTS = 8
MESSAGES = 150


async def test_many_clients_cut_again_and_again_get_each_direct_message_once(
    sb: AsyncSwitchboard, node: Server
) -> None:
    """Direct messages stream to 8 token clients while every link is cut (no close
    frame) every ~150 ms: each client's listener gets 1..N, once each, in order."""
    await sb.settings.set_inbox(1000)
    tokens = [(await sb.channels.tokens.create()).id for _ in range(CLIENTS)]
    async with Relay(node.base_url) as relay:
        clients = [client_for(node, t, url=relay.url) for t in tokens]
        recorders = [Recorder() for _ in clients]
        for client, recorder in zip(clients, recorders, strict=True):
            client.on_direct_message("dm", recorder)
            await client.__aenter__()
        try:
            sending = True

            async def cutter() -> int:
                cuts = 0
                while sending:
                    await asyncio.sleep(0.15)
                    relay.cut()
                    cuts += 1
                return cuts

            cutting = asyncio.create_task(cutter())
            for n in range(1, MESSAGES + 1):
                await asyncio.gather(*(send(sb, t, n) for t in tokens))
            sending = False
            assert await cutting >= 3
            for recorder in recorders:
                async with asyncio.timeout(20):
                    while len(recorder.calls) < MESSAGES:
                        await asyncio.sleep(0.05)
                assert recorder.calls == list(range(1, MESSAGES + 1))
            assert all(c.statistics().connections > 2 for c in clients)
        finally:
            for client in clients:
                await client.__aexit__(None, None, None)


async def test_many_clients_across_server_restarts_get_each_direct_message_once(
    restartable: Restartable,
) -> None:
    """The SQLite server is stopped and started again twice while direct messages stream
    to 6 token clients (sent again only when the server refused the connection, so never
    twice): each client's listener gets 1..N once each, in order, across the restarts."""
    server = restartable.server
    async with AsyncSwitchboard(server.project_token, server.base_url, max_retries=0) as sb:
        await sb.settings.set_inbox(1000)
        tokens = [(await sb.channels.tokens.create()).id for _ in range(6)]
        clients = [client_for(server, t) for t in tokens]
        recorders = [Recorder() for _ in clients]
        for client, recorder in zip(clients, recorders, strict=True):
            client.on_direct_message("dm", recorder)
            await client.__aenter__()
        try:

            async def send_once(token: str, n: int) -> None:
                while True:
                    try:
                        return await sb.channels.tokens.publish_direct_message(token, "dm", n)
                    except Unavailable as exc:
                        # Not reached, or refused by the draining node before any work.
                        assert exc.code == "unreachable" or "shutting down" in exc.message, exc
                        await asyncio.sleep(0.05)

            async def restarts() -> None:
                for _ in range(2):
                    await asyncio.sleep(0.4)
                    await restartable.stop()
                    await asyncio.sleep(0.2)
                    await restartable.start()

            restarting = asyncio.create_task(restarts())
            n = 0
            while not restarting.done() or n < 60:
                n += 1
                await asyncio.gather(*(send_once(t, n) for t in tokens))
            await restarting
            for recorder in recorders:
                async with asyncio.timeout(20):
                    while len(recorder.calls) < n:
                        await asyncio.sleep(0.05)
                assert recorder.calls == list(range(1, n + 1))
            assert all(c.statistics().connections >= 3 for c in clients)
        finally:
            for client in clients:
                await client.__aexit__(None, None, None)
