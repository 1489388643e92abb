"""A Redis written by an older Switchboard keeps its data after the upgrade (issue 19).

``data/redis_layout1.json`` holds the keys (``DUMP``) that the Redis store of commit
0ac8c8a (key layout 1, before hash tags) wrote for two projects, with project tokens
(one revoked, one restricted), channels, history, leap tokens, subscriptions, settings
and a webhook log, and that store's ``switchboard export`` of them. The store of today
opens that Redis, moves it to layout 2 (``store/redis_migrate.py``) and exports the
same thing.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import msgspec
import redis

from switchboard.server.store.redis import RedisStore
from switchboard.server.store.transfer import export_store

FIXTURE = Path(__file__).parent / "data" / "redis_layout1.json"


def _restore(port: int) -> dict[str, Any]:
    """Write the old keys into the Redis; their history dated to now (age limits apply)."""
    fixture = json.loads(FIXTURE.read_text())
    client = redis.Redis(port=port)
    for key, value in fixture["keys"].items():
        client.restore(key, max(value["pttl"], 0), base64.b64decode(value["dump"]))
    now_ms = int(time.time() * 1000)
    expected = fixture["export"]
    expected.pop("exported_at")
    shift = 0
    for key in client.keys("sb:hstream:*"):
        entries = client.xrange(key)
        shift = now_ms - max(int(f[b"t"]) for _, f in entries) - 1000
        client.delete(key)
        for entry_id, fields in entries:
            client.xadd(key, {**fields, b"t": int(fields[b"t"]) + shift}, id=entry_id)
    for project in expected["projects"]:
        for channel in project["channels"]:
            for message in (channel["history"] or {}).get("messages", []):
                message["created_ms"] += shift
    client.close()
    return dict(expected)


async def _export(store: RedisStore) -> Any:
    data = json.loads(msgspec.json.encode(await export_store(store)))
    data.pop("exported_at")
    return data


def _as_then(now: Any, then: Any) -> Any:
    """``now`` without what later dump versions added (fields the old dump has not)."""
    if isinstance(then, dict) and isinstance(now, dict):
        return {k: _as_then(now.get(k), v) for k, v in then.items() if k != "version"}
    if isinstance(then, list) and isinstance(now, list) and len(then) == len(now):
        return [_as_then(n, t) for n, t in zip(now, then, strict=True)]
    return now


async def test_an_old_redis_is_moved_to_the_new_layout(redis_url: str) -> None:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    expected = _restore(port)
    store = RedisStore(redis_url, prefix="sb:")
    await store.open()
    try:
        expected.pop("version")
        assert _as_then(await _export(store), expected) == expected
        # No key of the old layout is left.
        client = redis.Redis(port=port)
        left = sorted(k.decode() for k in client.keys("sb:*") if not k.startswith(b"sb:{"))
        assert all(k.split(":")[1] in {"ptkh", "ptkp", "tokp", "layout"} for k in left), left
        # A project token opens its project; the revoked one does not.
        access = await store.find_project_by_token("h" * 64)
        assert access is not None and access.project.name == "alpha"
        assert await store.find_project_by_token("g" * 64) is None
        assert (await store.find_project_by_token("f" * 64)) is not None
        # A socket's token is found without its project; its subscriptions came along.
        token = await store.get_token_any_project("leap_token_aaaa")
        assert token is not None
        channels = await store.token_channels(token.project_id, token.id)
        assert sorted(c.id for c in channels) == ["room-0", "room-1"]
        assert [t.id for t in await store.channel_tokens(token.project_id, "room-0")] == [token.id]
        # Revoking by ID still works on a moved token.
        [alpha] = [p for p in await store.list_projects() if p.name == "alpha"]
        [live] = [t for t in await store.list_project_tokens(alpha.id) if t.revoked_at is None]
        assert await store.revoke_project_token(live.id)
        assert await store.find_project_by_token("h" * 64) is None
    finally:
        await store.close()
    # A second opening (another node, a restart) moves nothing again.
    again = RedisStore(redis_url, prefix="sb:")
    await again.open()
    try:
        assert len(await again.list_projects()) == 2
        assert client.get("sb:layout") == b"2"
    finally:
        await again.close()
        client.close()


async def test_a_new_redis_gets_the_layout_version(redis_url: str) -> None:
    store = RedisStore(redis_url, prefix="fresh:")
    await store.open()
    await store.close()
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    with redis.Redis(port=port) as client:
        assert client.get("fresh:layout") == b"2"
