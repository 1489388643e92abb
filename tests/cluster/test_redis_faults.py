"""Redis goes away and comes back: nodes keep their sockets, answer 503, then recover."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.conftest import RedisServer, start_node
from tests.e2e.leap import leap


async def test_redis_outage_and_recovery(own_redis: RedisServer, tmp_path: Path) -> None:
    server = await start_node(tmp_path / "n", redis_url=own_redis.url)
    assert server.node is not None
    try:
        async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers) as http:
            r = await http.put("/v1/channels/news", json={"type": "unprotected"})
            assert r.status_code == 200, r.text
            async with leap(server.ws_url, server.project_id) as client:
                await client.subscribe("news")
                await asyncio.to_thread(own_redis.stop)

                started = time.monotonic()
                r = await http.get("/v1/channels")
                assert r.status_code == 503
                assert r.json()["error"]["code"] == "unavailable"
                assert time.monotonic() - started < 10
                assert (await http.get("/readyz")).status_code == 503
                assert (await http.get("/healthz")).status_code == 200
                # The socket stays up and keeps its heartbeats.
                await client.send({"op": 3})
                assert await client.recv() == {"op": 4}

                await asyncio.to_thread(own_redis.start)
                deadline = time.monotonic() + 20
                while (await http.get("/readyz")).status_code != 200:
                    assert time.monotonic() < deadline, "never ready again"
                    await asyncio.sleep(0.1)
                # The broker resubscribed: delivery resumes, and the data was kept.
                deadline = time.monotonic() + 20
                while not server.node.broker.connected:  # type: ignore[attr-defined]
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
                r = await http.post("/v1/channels/news/messages", json={"e": "back"})
                assert r.status_code == 200, r.text
                assert (await client.dispatch("MESSAGE"))["d"] == {"e": "back", "d": None}
    finally:
        await server.node.stop()


async def test_redis_restarted_empty_then_imported(
    redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    """Redis comes back without its data: nodes survive, and an import restores service."""
    from switchboard.server.store.redis import RedisStore
    from switchboard.server.transfer import export_store, import_store

    server = await start_node(tmp_path / "n", redis_url=redis_url)
    assert server.node is not None
    try:
        async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers) as http:
            assert (await http.put("/v1/channels/news", json={"type": "unprotected"})).is_success
            backup = await export_store(server.node.store)
            async with leap(server.ws_url, server.project_id) as client:
                await client.subscribe("news")
                await asyncio.to_thread(redis_server.stop)
                await asyncio.to_thread(redis_server.start)  # no persistence: empty
                deadline = time.monotonic() + 20
                while (await http.get("/readyz")).status_code != 200:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
                # The data is gone: the project token no longer opens anything.
                assert (await http.get("/v1/channels")).status_code == 401
                store = RedisStore(redis_url)
                await store.open()
                try:
                    await import_store(store, backup)
                finally:
                    await store.close()
                while not server.node.broker.connected:  # type: ignore[attr-defined]
                    await asyncio.sleep(0.05)
                r = await http.post("/v1/channels/news/messages", json={"e": "restored"})
                assert r.status_code == 200, r.text
                assert (await client.dispatch("MESSAGE"))["d"]["e"] == "restored"
    finally:
        await server.node.stop()
