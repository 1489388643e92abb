"""Presence across real `switchboard serve --redis` processes, and a node killed with kill -9."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchboard.server.ids import member_id
from tests.conftest import launch, stop
from tests.e2e.leap import Leap, leap

pytestmark = pytest.mark.timeout(90)


async def watch(client: Leap, channel: str) -> list[dict[str, Any]]:
    await client.send({"op": 0, "d": {"c": channel, "e": "SUBSCRIBE", "d": {"presence": True}}})
    await client.dispatch("AVAILABLE")
    members: list[dict[str, Any]] = (await client.dispatch("PRESENCE"))["d"]["presence"]
    return members


async def test_presence_sums_nodes_and_a_killed_nodes_members_leave(
    redis_url: str, tmp_path: Path
) -> None:
    a = launch(tmp_path / "a", "--redis", redis_url)
    b = launch(tmp_path / "b", "--redis", redis_url, credentials=(a.project_id, a.project_token))
    try:
        async with httpx.AsyncClient(base_url=a.api, headers=a.headers) as via_a:

            async def ok(call: Any) -> Any:
                r = await call
                assert r.status_code == 200, r.text
                return r.json()["data"]

            async def presence_until(check: Any, within: float) -> tuple[Any, float]:
                start = time.monotonic()
                while True:
                    data = await ok(via_a.get("/channels/room/presence"))
                    if check(data):
                        return data, time.monotonic() - start
                    assert time.monotonic() - start < within, data
                    await asyncio.sleep(0.1)

            await ok(via_a.put("/channels/room", json={"type": "unprotected"}))
            ann = (await ok(via_a.post("/channels/tokens", json={"state": {"n": "ann"}})))["token"]
            ben = (await ok(via_a.post("/channels/tokens", json={"state": {"n": "ben"}})))["token"]
            w = (await ok(via_a.post("/channels/tokens", json={"state": {"n": "w"}})))["token"]
            async with leap(a.ws_url, a.project_id, w["id"]) as watcher:
                assert await watch(watcher, "room") == []
                assert (await watcher.dispatch("PRESENCE_JOIN"))["d"]["member_id"] == member_id(
                    w["id"]
                )
                on_a = leap(a.ws_url, a.project_id, ann["id"])
                on_b1 = leap(b.ws_url, a.project_id, ann["id"])
                on_b2 = leap(b.ws_url, a.project_id, ben["id"])
                anon = leap(b.ws_url, a.project_id)
                async with on_a as ann_a, on_b1 as ann_b, on_b2 as ben_b, anon as anon_b:
                    for client in (ann_a, ben_b, anon_b):
                        assert (await client.subscribe("room"))["e"] == "AVAILABLE"
                    await ann_b.dispatch("AVAILABLE")  # ann's subscription reaches her socket on b

                    def summed(d: Any) -> bool:
                        counts = {m["token_id"]: m["connections"] for m in d["presence"]}
                        return bool(
                            counts == {w["id"]: 1, ann["id"]: 2, ben["id"]: 1}
                            and d["tokenless_connections"] == 1
                        )

                    data, _ = await presence_until(summed, 5)
                    assert data["total_connections"] == 5
                    # Watched from a: ann joins once (her sockets on both nodes), ben once.
                    joins = {(await watcher.dispatch("PRESENCE_JOIN"))["d"]["member_id"]}
                    joins.add((await watcher.dispatch("PRESENCE_JOIN"))["d"]["member_id"])
                    assert joins == {member_id(ann["id"]), member_id(ben["id"])}
                    await watcher.nothing(0.3)

                    killed = time.monotonic()
                    assert stop(b, signal.SIGKILL) == -signal.SIGKILL

                    # b's members leave within the presence TTL (15 s); ann stays (on a).
                    def only_a(d: Any) -> bool:
                        counts = {m["token_id"]: m["connections"] for m in d["presence"]}
                        return bool(
                            counts == {w["id"]: 1, ann["id"]: 1} and d["tokenless_connections"] == 0
                        )

                    await presence_until(only_a, 20)
                    rest_s = time.monotonic() - killed
                    leave = await watcher.dispatch("PRESENCE_LEAVE", timeout=20)
                    dispatch_s = time.monotonic() - killed
                    assert leave["d"] == {"member_id": member_id(ben["id"]), "state": {"n": "ben"}}
                    await watcher.nothing(1.5)  # ann is still on a: no leave for her
                    print(f"after kill -9: REST presence {rest_s:.1f} s, LEAVE {dispatch_s:.1f} s")
                    assert rest_s <= 16 and dispatch_s <= 17
    finally:
        for server in (a, b):
            if server.process is not None and server.process.poll() is None:
                stop(server)


async def test_a_node_taken_for_dead_announces_its_members_again(
    redis_url: str, tmp_path: Path
) -> None:
    import redis.asyncio as aioredis

    from switchboard.server.broker.redis import RedisBroker
    from tests.conftest import join_node, start_node

    a = await start_node(tmp_path / "a", redis_url=redis_url)
    b = await join_node(a, tmp_path / "b", redis_url=redis_url)
    assert a.node is not None and b.node is not None
    broker_b = b.node.broker
    assert isinstance(broker_b, RedisBroker)
    try:
        async with httpx.AsyncClient(base_url=a.api, headers=a.headers) as via_a:
            r = await via_a.put("/channels/room", json={"type": "public"})
            assert r.status_code == 200
            w = (await via_a.post("/channels/tokens", json={})).json()["data"]["token"]["id"]
            m = (await via_a.post("/channels/tokens", json={})).json()["data"]["token"]["id"]
        async with (
            leap(a.ws_url, a.project_id, w) as watcher,
            leap(b.ws_url, a.project_id, m) as member,
        ):
            await watch(watcher, "room")
            await watcher.dispatch("PRESENCE_JOIN")  # the watcher itself
            assert (await member.subscribe("room"))["e"] == "AVAILABLE"
            assert (await watcher.dispatch("PRESENCE_JOIN"))["d"]["member_id"] == member_id(m)
            # b stalls past its TTL, as far as Redis can tell: its key is gone.
            client = aioredis.from_url(redis_url)
            try:
                assert await client.delete(f"sb:node:{{{broker_b.node_id}}}") == 1
            finally:
                await client.aclose()
            leave = await watcher.dispatch("PRESENCE_LEAVE", timeout=3)
            assert leave["d"]["member_id"] == member_id(m)
            # b's next refresh (every TTL / 3 = 5 s) finds its key gone and announces again.
            join = await watcher.dispatch("PRESENCE_JOIN", timeout=8)
            assert join["d"]["member_id"] == member_id(m)
    finally:
        await b.node.stop()
        await a.node.stop()
