"""History recovery on a 2-node Redis cluster: a client away from node A, where the
messages are published, comes back through node B and gets them from the shared
history; and the seam holds when the live copy comes over Redis pub/sub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from switchboard import AsyncSwitchboard
from tests.conftest import Server, node_pair
from tests.e2e.leap import leap
from tests.edge.test_history_recovery import slow_reads, subscribe, until_recovery
from tests.sdk.conftest import client_for
from tests.sdk.test_history_recovery import GatedRelay, Received, publish

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def cluster(redis_url: str, tmp_path: Path) -> AsyncIterator[tuple[Server, Server]]:
    async with node_pair(redis_url, tmp_path) as nodes:
        yield nodes


async def test_away_from_node_a_the_client_recovers_through_node_b(
    cluster: tuple[Server, Server],
) -> None:
    a, b = cluster
    async with AsyncSwitchboard(a.project_token, a.base_url) as via_a:
        token = await via_a.channels.tokens.create()
        await via_a.channels.create("private", "feed", history_size=100)
        await via_a.channels.subscribe_token("feed", token)
        async with GatedRelay(a.base_url) as relay:
            client = client_for(a, token.id, url=relay.url)
            async with client:
                feed = Received(client, "feed")
                await publish(via_a, "feed", 1)
                await feed.messages(1)
                await relay.away(client.connection_states())
                await publish(via_a, "feed", 2, 3, 4)  # through A, while away
                relay.point_at(b.base_url)
                relay.back()
                recovery = await feed.recovery()
                assert recovery.recovered and recovery.top_offset == 4
                await publish(via_a, "feed", 5)  # live, from A to B over Redis
                got = await feed.messages(5)
                assert [(m.offset, m.recovered) for m in got] == [
                    (1, False),
                    (2, True),
                    (3, True),
                    (4, True),
                    (5, False),
                ]
                assert relay.upstream.startswith(b.base_url.replace("http", "ws", 1))


async def test_the_seam_holds_when_the_live_copy_comes_from_the_other_node(
    cluster: tuple[Server, Server],
) -> None:
    a, b = cluster
    assert a.node is not None
    service_a = a.node.service
    async with AsyncSwitchboard(a.project_token, a.base_url) as via_a:
        await via_a.channels.create("unprotected", "feed", history_size=100)
        await publish(via_a, "feed", 1, 2)
        epoch = (await via_a.channels.get_messages("feed")).epoch

    async def publish_through_a() -> None:
        project = await service_a.store.get_project(a.project_id)
        assert project is not None
        for value in (3, 4, 5):
            await service_a.publish_message(project, "feed", "m", msgspec.Raw(b"%d" % value))

    for round_, before_reading in enumerate((True, False), 1):
        slow_reads(b, publish_through_a, before_reading=before_reading)
        async with leap(b.ws_url, b.project_id) as client:
            await subscribe(client, "feed", {"since": {"offset": 1, "epoch": epoch}})
            replayed, recovery = await until_recovery(client)
            assert recovery["d"]["recovered"] is True
            offsets = [d["d"]["offset"] for d in replayed]
            top = 2 + 3 * round_  # each round publishes three more through A
            while not offsets or offsets[-1] < top:
                live = await client.dispatch("MESSAGE")
                assert live["u"] is False
                offsets.append(live["d"]["offset"])
            await client.nothing(0.5)  # no late duplicate over pub/sub
            assert offsets == list(range(2, top + 1))
