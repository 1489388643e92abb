"""The store on a real Redis Cluster (issue 19): the URL, every project's keys on one
slot, the lookups across projects on slots of their own, a burst of commands."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
import redis

from switchboard.server.clock import now_iso
from switchboard.server.models import Channel, ChannelType, Token
from switchboard.server.redis_pool import open_client, parse_cluster_url
from switchboard.server.store.redis import RedisStore

pytestmark = pytest.mark.timeout(60)


def test_cluster_urls_are_parsed() -> None:
    where = parse_cluster_url("redis+cluster://:s%40cret@10.0.0.1:7000,[::1]:7001")
    assert where.nodes == [("10.0.0.1", 7000), ("::1", 7001)]
    assert where.password == "s@cret"
    assert parse_cluster_url("redis+cluster://h:1/").password is None
    for bad in ("redis+cluster://", "redis+cluster://host", "redis+cluster://h:1/0"):
        with pytest.raises(ValueError):
            parse_cluster_url(bad)
    with pytest.raises(ValueError, match="min-replicas"):
        open_client("redis+cluster://h:1", timeout=1, min_replicas=1)


async def test_a_project_lives_on_one_slot(redis_cluster_url: str) -> None:
    store = RedisStore(redis_cluster_url, prefix="t:")
    await store.open()
    try:
        project = await store.create_project("p")
        await store.add_project_token(project.id, "hash-1", "ptk_…1")
        await store.create_channel(
            Channel(project.id, "room", ChannelType.UNPROTECTED, msgspec.Raw(b"{}"), now_iso())
        )
        await store.create_token(Token(project.id, "leap_x", msgspec.Raw(b"{}"), now_iso()))
        await store.add_subscription(project.id, "room", "leap_x")
        await store.set_project_setting(project.id, "k", msgspec.Raw(b"1"))
        port = int(redis_cluster_url.split("//")[1].split(",")[0].rsplit(":", 1)[1])
        client = redis.RedisCluster(host="127.0.0.1", port=port)
        try:
            keys = [k.decode() for k in client.keys("t:*", target_nodes=client.ALL_NODES)]
            slots = {client.keyslot(k) for k in keys if k.startswith(f"t:{{{project.id}}}:")}
            assert len(slots) == 1
            assert len([k for k in keys if k.startswith(f"t:{{{project.id}}}:")]) >= 7
        finally:
            client.close()
    finally:
        await store.close()


async def test_a_burst_of_commands_waits_for_connections(redis_cluster_url: str) -> None:
    store = RedisStore(redis_cluster_url, prefix="t:")
    await store.open()
    try:
        project = await store.create_project("p")
        await store.add_project_token(project.id, "hash-1", "ptk_…1")
        found = await asyncio.gather(*(store.find_project_by_token("hash-1") for _ in range(400)))
        assert all(a is not None and a.project.id == project.id for a in found)
    finally:
        await store.close()
