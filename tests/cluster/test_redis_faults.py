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
    from switchboard.server.store.transfer import export_store, import_store

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


async def test_password_database_and_prefix(tmp_path: Path) -> None:
    import subprocess

    import redis

    from tests.conftest import free_port, wait_for_port

    port = free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 - a quick start, before any server runs
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            "s3cret",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        client = redis.Redis(port=port, password="s3cret", db=3)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()  # up, and done loading
                break
            except redis.BusyLoadingError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        url = f"redis://:s3cret@127.0.0.1:{port}/3"
        server = await start_node(tmp_path / "n", redis_url=url, redis_prefix="acme:")
        assert server.node is not None
        try:
            async with httpx.AsyncClient(base_url=server.api, headers=server.headers) as http:
                assert (await http.put("/channels/x", json={"type": "public"})).is_success
            keys = [k.decode() for k in client.keys("*")]
            assert keys and all(k.startswith("acme:") for k in keys)
            assert "s3cret" not in repr(server.node.store)
        finally:
            await server.node.stop()
        # A wrong password is a clear startup error, not a hang.
        from switchboard.exceptions import Unavailable
        from switchboard.server.node import Node
        from tests.conftest import make_settings

        wrong = Node(make_settings(tmp_path / "w", redis_url=f"redis://:nope@127.0.0.1:{port}/3"))
        started = time.monotonic()
        try:
            await wrong.start()
        except Unavailable as exc:
            assert "cannot be reached" in str(exc)
        else:
            raise AssertionError("a node started with a wrong Redis password")
        assert time.monotonic() - started < 10
        client.close()
    finally:
        proc.terminate()
        proc.wait()
