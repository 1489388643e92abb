"""The REST publish's fast path under traffic, beside other processes, on SIGTERM, and
what it keeps of aiohttp's route (CORS, access log, metrics)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchboard.server.node import offline_service
from switchboard.server.store import SqliteStore
from tests.conftest import (
    Server,
    launch,
    make_settings,
    open_raw,
    running_node,
    stop,
    switchboard_cmd,
)
from tests.e2e.leap import leap
from tests.e2e.raw_http import publish, read_answer, request

pytestmark = pytest.mark.timeout(90)


def answered(node: Server) -> int:
    assert node.node is not None and node.node.fast_publish is not None
    return node.node.fast_publish.answered


async def make_channel(server: Server, channel: str = "c1", **extra: Any) -> None:
    async with httpx.AsyncClient(base_url=server.api, headers=server.headers) as http:
        r = await http.put(f"/channels/{channel}", json={"type": "unprotected", **extra})
        assert r.status_code == 200, r.text


async def publisher(server: Server, name: int, count: int, batch: int) -> None:
    """``count`` publishes on one connection, ``batch`` (a divisor of ``count``) written
    at once each time."""
    reader, writer = await open_raw(server)
    try:
        for start in range(0, count, batch):
            writer.write(
                b"".join(
                    publish("c1", server.project_token, data={"p": name, "n": n})
                    for n in range(start, start + batch)
                )
            )
            for _ in range(batch):
                assert (await read_answer(reader)).status == 200
    finally:
        writer.close()


async def test_many_publishers_lose_nothing_and_keep_their_order(node: Server) -> None:
    await make_channel(node)
    publishers, count = 16, 150
    before = answered(node)
    async with leap(node.ws_url, node.project_id) as subscriber:
        await subscriber.subscribe("c1")
        await asyncio.gather(
            *(publisher(node, p, count, (1, 2, 3, 5, 6)[p % 5]) for p in range(publishers))
        )
        seen: dict[int, list[int]] = defaultdict(list)
        for _ in range(publishers * count):
            d = (await subscriber.dispatch("MESSAGE"))["d"]["d"]
            seen[d["p"]].append(d["n"])
        await subscriber.nothing(0.2)  # and nothing twice
    assert seen == {p: list(range(count)) for p in range(publishers)}
    assert answered(node) - before == publishers * count


def cli(data_dir: Path, *args: str) -> Any:
    """The real command line on the node's SQLite file: another process."""
    argv = switchboard_cmd(*args, "--data", str(data_dir), "--json")
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def test_a_token_revoked_by_another_process_is_refused_at_once(node: Server) -> None:
    await make_channel(node)
    assert node.data_dir is not None
    made = await asyncio.to_thread(
        cli, node.data_dir, "project-tokens", "create", "--project", node.project_id
    )
    doomed = made["project_token"]
    listed = await asyncio.to_thread(
        cli, node.data_dir, "project-tokens", "list", "--project", node.project_id
    )
    [token_id] = [
        t["id"] for t in listed["project_tokens"] if doomed.startswith(t["hint"].rstrip("…"))
    ]
    reader, writer = await open_raw(node)
    for _ in range(3):  # the node's lookup is cached after the first
        writer.write(publish("c1", doomed))
        assert (await read_answer(reader)).status == 200
    await asyncio.to_thread(cli, node.data_dir, "project-tokens", "revoke", str(token_id))
    writer.write(publish("c1", doomed) + publish("c1", node.project_token))
    refused, other = await read_answer(reader), await read_answer(reader)
    assert refused.status == 401 and refused.json()["error"]["code"] == "invalid_auth"
    assert other.status == 200  # the project's other token is still good
    writer.close()


async def test_a_channel_deleted_by_another_process_is_refused_at_once(node: Server) -> None:
    await make_channel(node)
    await make_channel(node, "c2")
    assert node.data_dir is not None
    reader, writer = await open_raw(node)
    writer.write(publish("c1", node.project_token))
    assert (await read_answer(reader)).status == 200
    # Another connection to the same file (as the command line's): this node hears
    # no event of it.
    store = SqliteStore(node.data_dir)
    await store.open()
    try:
        project = await store.get_project(node.project_id)
        assert project is not None
        await offline_service(store, make_settings(node.data_dir)).delete_channel(project, "c1")
    finally:
        await store.close()
    writer.write(publish("c1", node.project_token) + publish("c2", node.project_token))
    gone, other = await read_answer(reader), await read_answer(reader)
    assert gone.status == 404 and gone.json()["error"]["code"] == "not_found"
    assert other.status == 200
    writer.close()


async def test_cors_requests_are_aiohttps(tmp_path: Path) -> None:
    origin = "https://app.example"
    async with running_node(tmp_path / "d", cors_origins=(origin,)) as server:
        await make_channel(server)
        reader, writer = await open_raw(server)
        before = answered(server)
        writer.write(publish("c1", server.project_token, headers={"Origin": origin}))
        with_origin = await read_answer(reader)
        assert with_origin.status == 200
        assert with_origin.headers["access-control-allow-origin"] == origin
        assert answered(server) == before
        writer.write(publish("c1", server.project_token))
        without = await read_answer(reader)
        assert without.status == 200 and "access-control-allow-origin" not in without.headers
        assert answered(server) == before + 1
        writer.close()


async def test_access_log_and_metrics_count_fast_requests(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_node(tmp_path / "d", metrics=True) as server:
        await make_channel(server)
        reader, writer = await open_raw(server)
        with caplog.at_level(logging.INFO, logger="switchboard.access"):
            writer.write(
                publish("c1", server.project_token) + publish("nope", server.project_token)
            )
            assert [(await read_answer(reader)).status for _ in range(2)] == [200, 404]
        records = [r for r in caplog.records if r.name == "switchboard.access"]
        assert [(r.method, r.path, r.status) for r in records] == [  # type: ignore[attr-defined]
            ("POST", "/v1/channels/c1/messages", 200),
            ("POST", "/v1/channels/nope/messages", 404),
        ]
        writer.write(request("GET", "/metrics"))
        text = (await read_answer(reader)).body.decode()
        route = 'method="POST",route="/v1/channels/{channel_id}/messages"'
        assert f'switchboard_http_requests_total{{{route},status="200"}} 1.0' in text
        assert f'switchboard_http_requests_total{{{route},status="404"}} 1.0' in text
        writer.close()


async def flood(server: Server, name: int, acknowledged: list[int]) -> str:
    """Publish on one connection, 10 at a time, until the server stops answering;
    keep the ``d`` of each 200; return how the connection ended."""
    reader, writer = await open_raw(server)
    n = 0
    try:
        while True:
            sent = list(range(n, n + 10))
            n += 10
            writer.write(
                b"".join(publish("c1", server.project_token, data=name * 10**6 + i) for i in sent)
            )
            for i in sent:
                answer = await read_answer(reader)
                if answer.status != 200:
                    assert answer.status == 503, answer
                    assert answer.headers["connection"] == "close"
                    return "refused"
                acknowledged.append(name * 10**6 + i)
    except (asyncio.IncompleteReadError, ConnectionError):
        return "closed"
    finally:
        writer.close()


async def test_sigterm_waits_for_fast_requests_in_flight(tmp_path: Path) -> None:
    server = launch(tmp_path / "data")
    # With history every publish is a write on the store's thread: in flight a while.
    await make_channel(server, history={"size": 10_000, "ttl_s": 3600})
    acknowledged: list[int] = []
    floods = [asyncio.create_task(flood(server, p, acknowledged)) for p in range(6)]
    while len(acknowledged) < 300:
        await asyncio.sleep(0.01)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    endings = await asyncio.gather(*floods)
    assert await asyncio.to_thread(server.process.wait, 20) == 0
    if server.process.stdout is not None:
        server.process.stdout.close()
    assert set(endings) <= {"refused", "closed"}
    # Every acknowledged publish was kept: the node finished them before it stopped.
    again = launch(tmp_path / "data", credentials=(server.project_id, server.project_token))
    try:
        async with httpx.AsyncClient(base_url=again.api, headers=again.headers) as http:
            kept, since = [], 0
            while True:
                r = await http.get("/channels/c1/messages", params={"since": since, "limit": 1000})
                page = r.json()["data"]["messages"]
                if not page:
                    break
                kept += [m["d"] for m in page]
                since = page[-1]["offset"]
        assert set(acknowledged) <= set(kept)
        assert len(kept) == len(set(kept))
    finally:
        assert stop(again) == 0
