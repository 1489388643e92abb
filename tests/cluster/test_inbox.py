"""Token inboxes on a 2-node Redis cluster (docs/inbox.md): the setting reaches every
node at once, a client away from node A gets its missed direct messages through node B,
and clients bounced between the nodes while direct messages stream get each once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec
import pytest

from switchboard import AsyncSwitchboard
from switchboard.client import INBOX
from switchboard.server.history import INBOX_KEY
from tests.conftest import Server, node_pair
from tests.e2e.leap import leap
from tests.edge.test_inbox_recovery import identify, slow_reads, until_recovery
from tests.sdk.conftest import Recorder, client_for
from tests.sdk.test_history_recovery import GatedRelay
from tests.sdk.test_inbox_recovery import Inbox, send

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(params=["redis", "redis-cluster"])
async def cluster(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Server, Server]]:
    """Two nodes on one Redis, or on a Redis Cluster (a token's inbox under its
    project's hash tag, its direct messages on sharded topics)."""
    url = request.getfixturevalue("redis_url" if request.param == "redis" else "redis_cluster_url")
    async with node_pair(url, tmp_path) as nodes:
        yield nodes


async def test_turning_inboxes_on_through_a_reaches_b_at_once(
    cluster: tuple[Server, Server],
) -> None:
    a, b = cluster
    assert b.node is not None
    async with (
        AsyncSwitchboard(a.project_token, a.base_url) as via_a,
        AsyncSwitchboard(b.project_token, b.base_url) as via_b,
    ):
        token = await via_a.channels.tokens.create()
        async with leap(b.ws_url, b.project_id, token.id) as client:
            await via_b.channels.tokens.publish_direct_message(token, "dm", 0)
            assert (await client.dispatch("DIRECT_MESSAGE"))["d"] == {"e": "dm", "d": 0}
            assert (b.project_id, INBOX_KEY) in b.node.service.no_history  # off, known
            await via_a.settings.set_inbox(10)
            async with asyncio.timeout(5):  # the HistoryChanged event, over Redis
                while (b.project_id, INBOX_KEY) in b.node.service.no_history:
                    await asyncio.sleep(0.01)
            await via_b.channels.tokens.publish_direct_message(token, "dm", 1)
            kept = (await client.dispatch("DIRECT_MESSAGE"))["d"]
            assert (kept["d"], kept["offset"]) == (1, 1)
            page = await via_a.channels.tokens.get_messages(token)
            assert [(m.offset, m.data) for m in page.messages] == [(1, 1)]
            assert page.epoch == kept["epoch"]


async def test_away_from_node_a_the_client_recovers_through_node_b(
    cluster: tuple[Server, Server],
) -> None:
    a, b = cluster
    async with AsyncSwitchboard(a.project_token, a.base_url) as via_a:
        await via_a.settings.set_inbox(100)
        token = await via_a.channels.tokens.create()
        async with GatedRelay(a.base_url) as relay:
            client = client_for(a, token.id, url=relay.url)
            inbox = Inbox(client)
            async with client:
                await send(via_a, token.id, 1)
                await inbox.messages(1)
                await relay.away(client.connection_states())
                await send(via_a, token.id, 2, 3, 4)  # through A, while away
                relay.point_at(b.base_url)
                relay.back()
                recovery = await inbox.recovery()
                while recovery.top_offset == 0:  # the first connection's, read late
                    recovery = await inbox.recovery()
                assert recovery.recovered and recovery.top_offset == 4
                await send(via_a, token.id, 5)  # live, from A to B over Redis
                got = await inbox.messages(5)
                assert [(m.offset, m.recovered) for m in got] == [
                    (1, False),
                    (2, True),
                    (3, True),
                    (4, True),
                    (5, False),
                ]


async def test_the_seam_holds_when_the_live_copy_comes_from_the_other_node(
    cluster: tuple[Server, Server],
) -> None:
    a, b = cluster
    assert a.node is not None
    async with httpx.AsyncClient(base_url=a.api, headers=a.headers) as http:
        await http.patch("/settings", json={"inbox": {"size": 100}})
        token = (await http.post("/channels/tokens", json={})).json()["data"]["token"]["id"]
        for n in (1, 2, 3):
            await http.post(f"/channels/tokens/{token}/messages", json={"e": "dm", "d": n})
        epoch = (await http.get(f"/channels/tokens/{token}/messages")).json()["data"]["epoch"]
    service = a.node.service

    async def send_meanwhile() -> None:  # through A, while B's read is out
        project = await service.store.get_project(a.project_id)
        assert project is not None
        for n in (4, 5, 6):
            await service.direct_message(project, token, "dm", msgspec.Raw(b"%d" % n))

    slow_reads(b, send_meanwhile, before_reading=True)
    async with leap(b.ws_url) as client:
        await identify(client, b.project_id, token, {"$inbox": {"offset": 1, "epoch": epoch}})
        replayed, recovery = await until_recovery(client)
        assert [d["d"]["offset"] for d in replayed] == [2, 3, 4, 5, 6]
        assert recovery["d"]["top_offset"] == 6
        await client.nothing(0.5)  # the live copies of 4..6 came over Redis: left out


CLIENTS = 6
MESSAGES = 100


async def test_clients_bounced_between_the_nodes_get_each_direct_message_once(
    cluster: tuple[Server, Server],
) -> None:
    """Every link is cut every ~150 ms and comes back through the other node, while
    direct messages stream through node A, one request per token and one broadcast to
    all tokens by turns (a broadcast's tokens travel as one event on one Redis, one per
    token on a Redis Cluster): each client gets 1..N, once each, in order."""
    a, b = cluster
    async with AsyncSwitchboard(a.project_token, a.base_url) as via_a:
        await via_a.settings.set_inbox(1000)
        tokens = [(await via_a.channels.tokens.create()).id for _ in range(CLIENTS)]
        async with GatedRelay(a.base_url) as relay:
            clients = [client_for(a, t, url=relay.url) for t in tokens]
            recorders = [Recorder() for _ in clients]
            for client, recorder in zip(clients, recorders, strict=True):
                client.on_direct_message("dm", recorder)
                await client.__aenter__()
            try:
                sending = True

                async def bouncer() -> int:
                    bounces = 0
                    while sending:
                        await asyncio.sleep(0.15)
                        relay.point_at((b if bounces % 2 == 0 else a).base_url)
                        relay.cut()
                        bounces += 1
                    return bounces

                bouncing = asyncio.create_task(bouncer())
                for n in range(1, MESSAGES + 1):
                    if n % 2:
                        await asyncio.gather(*(send(via_a, t, n) for t in tokens))
                    else:
                        assert (await via_a.broadcast("dm", n, tokens=tokens)).failed == 0
                sending = False
                assert await bouncing >= 3
                for recorder in recorders:
                    async with asyncio.timeout(20):
                        while len(recorder.calls) < MESSAGES:
                            await asyncio.sleep(0.05)
                    assert recorder.calls == list(range(1, MESSAGES + 1))
                assert all(c.position(INBOX) is not None for c in clients)
            finally:
                for client in clients:
                    await client.__aexit__(None, None, None)


async def test_direct_messages_sent_through_both_nodes_at_once_all_arrive(
    cluster: tuple[Server, Server],
) -> None:
    """Two backends send to the same tokens at the same time, one through each node: each
    message takes its offset in the store, and its live copy may reach the client after a
    later one's. Every client still gets every message once (the order between the two
    senders is not defined; each sender's own order is kept)."""
    a, b = cluster
    async with (
        AsyncSwitchboard(a.project_token, a.base_url) as via_a,
        AsyncSwitchboard(b.project_token, b.base_url) as via_b,
    ):
        await via_a.settings.set_inbox(1000)
        tokens = [(await via_a.channels.tokens.create()).id for _ in range(CLIENTS)]
        clients = [client_for(a if i % 2 else b, t) for i, t in enumerate(tokens)]
        recorders = [Recorder() for _ in clients]
        for client, recorder in zip(clients, recorders, strict=True):
            client.on_direct_message("dm", recorder)
            await client.__aenter__()
        try:

            async def sender(sb: AsyncSwitchboard, values: range) -> None:
                for n in values:
                    await asyncio.gather(*(send(sb, t, n) for t in tokens))

            await asyncio.gather(
                sender(via_a, range(1, MESSAGES + 1)),
                sender(via_b, range(-1, -MESSAGES - 1, -1)),
            )
            for recorder in recorders:
                async with asyncio.timeout(20):
                    while len(recorder.calls) < 2 * MESSAGES:
                        await asyncio.sleep(0.05)
                await asyncio.sleep(0.2)  # a duplicate would come now
                assert sorted(recorder.calls) == sorted(
                    [*range(1, MESSAGES + 1), *range(-1, -MESSAGES - 1, -1)]
                )
                assert [n for n in recorder.calls if n > 0] == list(range(1, MESSAGES + 1))
                assert [n for n in recorder.calls if n < 0] == list(range(-1, -MESSAGES - 1, -1))
        finally:
            for client in clients:
                await client.__aexit__(None, None, None)
