"""Switchboard on a real Redis Cluster (issue 19): two ``switchboard serve`` nodes on
``redis+cluster://``, events on sharded pub/sub, and the cluster's faults."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.cluster.redis_cluster import RedisClusterSet
from tests.conftest import Server, launch, stop
from tests.e2e.leap import leap

pytestmark = pytest.mark.timeout(120)


def two_nodes(tmp_path: Path, cluster: RedisClusterSet) -> tuple[Server, Server]:
    a = launch(tmp_path / "a", "--redis", cluster.url)
    b = launch(tmp_path / "b", "--redis", cluster.url, credentials=(a.project_id, a.project_token))
    return a, b


async def test_events_cross_nodes_on_sharded_topics(
    tmp_path: Path, redis_cluster_session: RedisClusterSet
) -> None:
    redis_cluster_session.flush()
    a, b = two_nodes(tmp_path, redis_cluster_session)
    try:
        async with (
            httpx.AsyncClient(base_url=a.api, headers=a.headers) as api,
            leap(b.ws_url, b.project_id) as anonymous,
        ):
            # Channels on many partitions, so on every master.
            channels = [f"room-{i}" for i in range(24)]
            for channel in channels:
                assert (
                    await api.put(f"/channels/{channel}", json={"type": "unprotected"})
                ).is_success
            for channel in channels:
                assert (await anonymous.subscribe(channel))["e"] == "AVAILABLE"
            for i, channel in enumerate(channels):
                r = await api.post(f"/channels/{channel}/messages", json={"e": "m", "d": i})
                assert r.status_code == 200, r.text
            got = sorted(
                [(await anonymous.dispatch("MESSAGE", timeout=10))["d"]["d"] for _ in channels]
            )
            assert got == list(range(len(channels)))
            # A token's direct message, from A to the token's socket on B.
            token = (await api.post("/channels/tokens", json={})).json()["data"]["token"]["id"]
            async with leap(b.ws_url) as identified:
                await identified.identify(b.project_id, token)
                r = await api.post(f"/channels/tokens/{token}/messages", json={"e": "dm", "d": 1})
                assert r.status_code == 200, r.text
                assert (await identified.dispatch("DIRECT_MESSAGE", timeout=10))["d"]["e"] == "dm"
                # Presence spans the nodes: A counts B's socket of the token.
                r = await api.get(f"/channels/tokens/{token}")
                assert r.json()["data"]["token"]["is_online"] is True
    finally:
        for server in (a, b):
            assert stop(server, signal.SIGTERM) == 0
