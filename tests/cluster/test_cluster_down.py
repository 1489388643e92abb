"""A Redis Cluster that cannot serve a project's slot: REST calls get 503 ``unavailable``
(retryable), not 500, and work again once the slot is served.

redis-py raises its own cluster exceptions for that (``RedisClusterException`` "slots
not covered", ``ClusterDownError``, ``TryAgainError``, ``ClusterError`` when
redirections run out): transient, like a Redis that cannot be reached
(``redis_pool.FAULTS``). The fault is real: the slot of the project's keys is taken away
from every master (``CLUSTER DELSLOTS``) and given back to its owner.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import redis
from redis.crc import key_slot

from switchboard.exceptions import Unavailable
from switchboard.server.store.redis import RedisStore
from tests.cluster.redis_cluster import RedisClusterSet, redis_cluster
from tests.conftest import start_node

pytestmark = pytest.mark.timeout(120)


def slot_owner(cluster: RedisClusterSet, slot: int) -> int | None:
    """The port of the master serving ``slot``, as the first live node sees it."""
    with redis.Redis(port=cluster.live_ports()[0], socket_timeout=1) as client:
        for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(master[1])
    return None


def take_slot_away(cluster: RedisClusterSet, slot: int) -> None:
    for port in cluster.live_ports():
        with redis.Redis(port=port, socket_timeout=1) as client:
            client.execute_command("CLUSTER", "DELSLOTS", slot)


def give_slot_back(cluster: RedisClusterSet, slot: int, owner: int) -> None:
    with redis.Redis(port=owner, socket_timeout=1) as client:
        client.execute_command("CLUSTER", "ADDSLOTS", slot)
        client.execute_command("CLUSTER", "BUMPEPOCH")
    deadline = time.monotonic() + 20
    while any(_state(port) != "ok" for port in cluster.live_ports()):
        assert time.monotonic() < deadline, "the cluster did not come back"
        time.sleep(0.1)


def _state(port: int) -> str:
    with redis.Redis(port=port, socket_timeout=1) as client:
        info = client.execute_command("CLUSTER", "INFO").decode()
    return info.split("cluster_state:")[1].split()[0]


async def test_a_slot_no_master_serves_is_503_then_served_again(tmp_path: Path) -> None:
    with redis_cluster(tmp_path / "redis") as cluster:
        server = await start_node(tmp_path / "node", redis_url=cluster.url)
        try:
            headers = {"Authorization": server.project_token}
            # redis-py's cluster client retries a slot nobody serves (re-reading the slot
            # map each time) before the node answers 503: seconds on a loaded machine
            # (a CI run saw httpx's default 5 s pass), so the client waits longer.
            async with httpx.AsyncClient(base_url=server.api, headers=headers, timeout=30) as api:
                r = await api.put("/channels/room", json={"type": "unprotected"})
                assert r.status_code == 200, r.text
                slot = key_slot(f"sb:{{{server.project_id}}}:project".encode())
                owner = slot_owner(cluster, slot)
                assert owner is not None
                await asyncio.to_thread(take_slot_away, cluster, slot)
                for call in (
                    api.post("/channels/room/messages", json={"e": "m", "d": 1}),
                    api.get("/channels/room"),
                    api.post("/channels/tokens", json={}),
                ):
                    r = await call
                    assert r.status_code == 503, r.text
                    assert r.json()["error"]["code"] == "unavailable", r.text
                await asyncio.to_thread(give_slot_back, cluster, slot, owner)
                deadline = time.monotonic() + 20
                while True:  # the node's client learns the slot map again
                    r = await api.post("/channels/room/messages", json={"e": "m", "d": 2})
                    if r.status_code == 200 or time.monotonic() > deadline:
                        break
                    assert r.status_code == 503, r.text
                    await asyncio.sleep(0.2)
                assert r.status_code == 200, r.text
        finally:
            assert server.node is not None
            await server.node.stop()


def _clients(cluster: RedisClusterSet) -> int:
    """Client connections on the cluster's live nodes, this count's own left out."""
    total = 0
    for port in cluster.live_ports():
        with redis.Redis(port=port, socket_timeout=1) as client:
            total += len(client.client_list()) - 1
    return total


async def test_a_store_that_cannot_open_on_a_cluster_leaves_no_connection(
    tmp_path: Path,
) -> None:
    with redis_cluster(tmp_path / "redis") as cluster:
        store = RedisStore(cluster.url)
        slot = key_slot(store.keys.version().encode())
        owner = slot_owner(cluster, slot)
        assert owner is not None
        await asyncio.to_thread(take_slot_away, cluster, slot)
        before = await asyncio.to_thread(_clients, cluster)
        for _ in range(3):  # a node retrying its start
            with pytest.raises(Unavailable):
                await store.open()
        deadline = time.monotonic() + 5
        while (now := await asyncio.to_thread(_clients, cluster)) != before:
            assert time.monotonic() < deadline, f"{now - before} connections left open"
            await asyncio.sleep(0.1)
        await asyncio.to_thread(give_slot_back, cluster, slot, owner)
        await store.open()  # the same store opens once the slot is served
        await store.ping()
        await store.close()
