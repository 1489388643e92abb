"""Each node caches project-token lookups (the REST publish path), yet a revocation or a
channel deletion applies to the very next request on every node, with traffic running."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, node_pair, switchboard_cmd

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def pair(redis_url: str, tmp_path: Path) -> AsyncIterator[tuple[Server, Server]]:
    async with node_pair(redis_url, tmp_path) as nodes:
        yield nodes


async def cli(redis_url: str, *args: str) -> Any:
    """The real command line on the cluster's Redis (another process, as an operator's)."""
    argv = switchboard_cmd(*args, "--redis", redis_url, "--json")
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("kind", ["channel", "direct"])
async def test_a_revoked_token_is_refused_at_once_on_every_node(
    pair: tuple[Server, Server], redis_url: str, kind: str
) -> None:
    """Through a channel's publish and a direct message to a token: on one Redis each
    checks a cached lookup inside its one script."""
    a, b = pair
    made = await cli(redis_url, "project-tokens", "create", "--project", a.project_id)
    doomed = made["project_token"]
    [info] = [
        t
        for t in (await cli(redis_url, "project-tokens", "list", "--project", a.project_id))[
            "project_tokens"
        ]
        if doomed.startswith(t["hint"].rstrip("…"))
    ]
    clients = [
        httpx.AsyncClient(base_url=node.api, headers={"Authorization": secret})
        for node in (a, b)
        for secret in (doomed, a.project_token)
    ]
    try:
        via_a_doomed, via_a, via_b_doomed, via_b = clients
        r = await via_a.put("/channels/c", json={"type": "public"})
        assert r.status_code == 200, r.text
        path = "/channels/c/messages"
        if kind == "direct":
            r = await via_a.post("/channels/tokens", json={})
            assert r.status_code == 200, r.text
            path = f"/channels/tokens/{r.json()['data']['token']['id']}/messages"
        for client in clients:  # every node has both tokens' lookups cached
            r = await client.post(path, json={"e": "m", "d": 0})
            assert r.status_code == 200, r.text
            r = await client.get("/channels/c")
            assert r.status_code == 200, r.text

        revoked_at: list[float] = []
        seen: list[tuple[float, int, str]] = []  # (started, status, node) of each request

        async def publish(client: httpx.AsyncClient, name: str) -> None:
            while not revoked_at or time.monotonic() < revoked_at[0] + 0.5:
                started = time.monotonic()
                r = await client.post(path, json={"e": "m", "d": 1})
                seen.append((started, r.status_code, name))

        traffic = [
            asyncio.create_task(publish(client, name))
            for client, name in ((via_a_doomed, "a"), (via_b_doomed, "b"))
            for _ in range(4)
        ]
        await asyncio.sleep(0.3)
        cli_started = time.monotonic()
        await cli(redis_url, "project-tokens", "revoke", str(info["id"]))
        revoked_at.append(time.monotonic())
        # The very next request on each node, whatever its route.
        for client in (via_b_doomed, via_a_doomed):
            r = await client.post(path, json={"e": "m", "d": 2})
            assert r.status_code == 401, r.text
            assert r.json()["error"]["code"] == "invalid_auth"
            assert (await client.get("/channels/c")).status_code == 401
        await asyncio.gather(*traffic)
        after = [(status, name) for started, status, name in seen if started > revoked_at[0]]
        before = [status for started, status, _ in seen if started < cli_started]
        assert {name for _, name in after} == {"a", "b"} and before and set(before) == {200}
        assert {status for status, _ in after} == {401}, after
        # The project's other token still works on both nodes (looked up again).
        for client in (via_b, via_a):
            r = await client.post(path, json={"e": "m", "d": 3})
            assert r.status_code == 200, r.text
    finally:
        for client in clients:
            await client.aclose()


async def publish_until(
    client: httpx.AsyncClient,
    until: list[float],
    seen: list[tuple[float, float, int]],
    path: str = "/channels/c/messages",
) -> None:
    """Publish to channel c (or ``path``) until 0.3 s after ``until`` gets its moment;
    log each answer."""
    while not until or time.monotonic() < until[0] + 0.3:
        started = time.monotonic()
        r = await client.post(path, json={"e": "m", "d": 1})
        seen.append((started, time.monotonic(), r.status_code))


async def made(via_a: httpx.AsyncClient, kind: str) -> tuple[str, str]:
    """A new channel ``c`` or a new token: the path of its messages, and its own."""
    if kind == "channel":
        r = await via_a.put("/channels/c", json={"type": "public"})
        assert r.status_code == 200, r.text
        return "/channels/c/messages", "/channels/c"
    r = await via_a.post("/channels/tokens", json={})
    assert r.status_code == 200, r.text
    path = f"/channels/tokens/{r.json()['data']['token']['id']}"
    return f"{path}/messages", path


@pytest.mark.parametrize("kind", ["channel", "token"])
async def test_a_deleted_channel_or_token_is_refused_at_once_on_every_node(
    pair: tuple[Server, Server], kind: str
) -> None:
    """A channel's publish, or a token's direct message: on one Redis its one script is
    also the existence check."""
    a, b = pair
    async with (
        httpx.AsyncClient(base_url=a.api, headers=a.headers) as via_a,
        httpx.AsyncClient(base_url=b.api, headers=b.headers) as via_b,
    ):
        for _ in range(3):  # made, deleted, made again..., with traffic running on B
            messages, own = await made(via_a, kind)
            deleted_at: list[float] = []
            seen: list[tuple[float, float, int]] = []  # (sent, answered, status)
            traffic = [
                asyncio.create_task(publish_until(via_b, deleted_at, seen, messages))
                for _ in range(4)
            ]
            await asyncio.sleep(0.2)
            asked = time.monotonic()
            r = await via_a.delete(own)
            assert r.status_code == 200, r.text
            deleted_at.append(time.monotonic())
            r = await via_b.post(messages, json={"e": "m", "d": 2})
            assert r.status_code == 404, r.text
            assert r.json()["error"]["code"] == "not_found"
            await asyncio.gather(*traffic)
            # Answered before the delete was asked: sent. Sent after it was answered:
            # refused. One in flight meanwhile may go either way (it reaches Redis before
            # or after the delete), as on a single node.
            assert {status for _, answered, status in seen if answered < asked} == {200}
            assert {status for sent, _, status in seen if sent > deleted_at[0]} == {404}
