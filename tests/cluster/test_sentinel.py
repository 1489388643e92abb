"""Redis failover through Sentinel (issue 20, item 2): two real ``switchboard serve``
nodes on ``redis+sentinel://``, a real master, replica and three Sentinels; the master
is killed with ``kill -9`` under a stream of REST publishes."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from switchboard.server.redis_pool import SentinelURL, parse_sentinel_url
from tests.cluster.sentinel import SentinelSet, sentinel_set
from tests.conftest import Server, launch, stop, switchboard_cmd
from tests.e2e.leap import leap

pytestmark = pytest.mark.timeout(120)


async def publish_until(
    via: httpx.AsyncClient, stop_at: asyncio.Event, acks: list[tuple[float, int]]
) -> None:
    """Publish numbered messages one after another; note (time, number) of each acknowledged."""
    n = 0
    while not stop_at.is_set():
        n += 1
        try:
            r = await via.post("/channels/feed/messages", json={"e": "m", "d": n}, timeout=5)
        except httpx.HTTPError:
            r = None
        if r is not None and r.status_code == 200:
            acks.append((time.monotonic(), n))
        else:
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("fault", ["kill -9", "freeze"])
async def test_the_nodes_follow_the_promoted_replica(tmp_path: Path, fault: str) -> None:
    """``freeze`` (SIGSTOP) leaves every socket to the old master open and silent: the
    nodes' Redis calls time out, and the pub/sub reader, which waits without a timeout,
    notices only because it stops hearing its own heartbeats."""
    with sentinel_set(tmp_path) as sentinels:
        a = launch(tmp_path / "a", "--redis", sentinels.url)
        b = launch(
            tmp_path / "b", "--redis", sentinels.url, credentials=(a.project_id, a.project_token)
        )
        try:
            await failover_under_load(sentinels, a, b, fault)
        finally:
            for server in (a, b):
                assert stop(server, signal.SIGTERM) == 0


async def failover_under_load(sentinels: SentinelSet, a: Server, b: Server, fault: str) -> None:
    async with (
        httpx.AsyncClient(base_url=a.api, headers=a.headers) as via_a,
        httpx.AsyncClient(base_url=b.api.removesuffix("/v1")) as health_b,
        leap(b.ws_url, b.project_id) as client,
    ):
        await via_a.put("/channels/feed", json={"type": "unprotected"})
        assert (await client.subscribe("feed"))["e"] == "AVAILABLE"
        done = asyncio.Event()
        acks: list[tuple[float, int]] = []
        publisher = asyncio.create_task(publish_until(via_a, done, acks))
        await asyncio.sleep(1.0)
        killed = time.monotonic()
        if fault == "freeze":
            sentinels.freeze_master()
        else:
            sentinels.kill_master()
        old = ("127.0.0.1", sentinels.master_port)
        not_ready = False
        while sentinels.master_address() in (old, None):
            assert time.monotonic() - killed < 30, "no promotion"
            not_ready = not_ready or (await health_b.get("/readyz")).status_code == 503
            await asyncio.sleep(0.1)
        promoted = time.monotonic()
        # Delivery across nodes resumes: a message published through A after the
        # promotion (numbered past every one acknowledged before it) reaches B's socket.
        before = max(number for t, number in acks if t <= promoted)
        while (await client.dispatch("MESSAGE", timeout=15))["d"]["d"] <= before:
            pass
        resumed = time.monotonic()
        done.set()
        await publisher
        first_ack = min(t for t, _ in acks if t > promoted)
        print(
            f"{fault}: promotion {promoted - killed:.1f} s after it; REST acknowledged again "
            f"{first_ack - promoted:.1f} s after it, delivery to the other node "
            f"{resumed - promoted:.1f} s after it; /readyz failed meanwhile: {not_ready}"
        )
        assert first_ack - promoted < 10
        assert resumed - promoted < 10
        assert not_ready
        # The socket stayed open through it all: it still answers a heartbeat.
        await client.send({"op": 3, "d": {}})
        while (await client.recv())["op"] != 4:
            pass


@pytest.mark.parametrize("min_replicas", [0, 1])
async def test_acknowledged_writes_and_a_failover(tmp_path: Path, min_replicas: int) -> None:
    """Eight writers create tokens as fast as they can; the master is killed; after the
    promotion, every token the node acknowledged must still exist. Redis replicates
    asynchronously (here over a link delayed 50 ms each way, as across a network), so
    without --redis-min-replicas the last acknowledged writes vanish with the old
    master; with 1, each was on a replica before its answer."""
    with sentinel_set(tmp_path, replicas=2, replication_delay=0.05) as sentinels:
        extra = ("--redis", sentinels.url, "--redis-min-replicas", str(min_replicas))
        node = launch(tmp_path / "a", *extra)
        try:
            lost, acked = await writes_through_a_failover(sentinels, node)
        finally:
            assert stop(node, signal.SIGTERM) == 0
    print(f"--redis-min-replicas {min_replicas}: {lost} of {acked} acknowledged writes lost")
    if min_replicas:
        assert lost == 0


async def writes_through_a_failover(sentinels: SentinelSet, node: Server) -> tuple[int, int]:
    acked: list[str] = []
    stop_at = asyncio.Event()
    async with httpx.AsyncClient(base_url=node.api, headers=node.headers) as api:

        async def writer() -> None:
            while not stop_at.is_set():
                try:
                    r = await api.post("/channels/tokens", json={}, timeout=5)
                except httpx.HTTPError:
                    continue
                if r.status_code == 200:
                    acked.append(r.json()["data"]["token"]["id"])

        writers = [asyncio.create_task(writer()) for _ in range(8)]
        await asyncio.sleep(1.0)
        sentinels.kill_master()
        old = ("127.0.0.1", sentinels.master_port)
        deadline = time.monotonic() + 30
        while sentinels.master_address() in (old, None):
            assert time.monotonic() < deadline, "no promotion"
            await asyncio.sleep(0.1)
        stop_at.set()
        await asyncio.gather(*writers)
        lost = 0
        for token in acked:
            for _ in range(50):
                r = await api.get(f"/channels/tokens/{token}")
                if r.status_code in (200, 404):
                    break
                await asyncio.sleep(0.1)  # 503 while the node reaches the new master
            lost += r.status_code == 404
    return lost, len(acked)


def test_store_commands_take_a_sentinel_url(tmp_path: Path) -> None:
    with sentinel_set(tmp_path) as sentinels:
        made = subprocess.run(
            switchboard_cmd("projects", "create", "apps", "--json", "--redis", sentinels.url),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert json.loads(made.stdout)["project"]["name"] == "apps"
        listed = subprocess.run(
            switchboard_cmd("projects", "list", "--json", "--redis", sentinels.url),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert [p["name"] for p in json.loads(listed.stdout)["projects"]] == ["apps"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis+sentinel://10.0.0.1:26379,[::1]:26380/main/2",
            SentinelURL([("10.0.0.1", 26379), ("::1", 26380)], "main", 2, None),
        ),
        (
            "redis+sentinel://:s%40cret@sentinel:26379/main",
            SentinelURL([("sentinel", 26379)], "main", 0, "s@cret"),
        ),
    ],
)
def test_sentinel_urls_are_read(url: str, expected: SentinelURL) -> None:
    assert parse_sentinel_url(url) == expected


@pytest.mark.parametrize(
    "url",
    ["redis+sentinel://host:26379", "redis+sentinel://host/main", "redis+sentinel:///main"],
)
def test_a_sentinel_url_without_its_parts_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"expected|Sentinel"):
        parse_sentinel_url(url)
