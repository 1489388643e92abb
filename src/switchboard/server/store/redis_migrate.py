"""The one-time move of a Redis written by an older Switchboard to today's key layout.

Layout 1 (before issue 19) named keys ``project:{id}``, ``ptk:{secret hash}``,
``tok:{token}``…, with no hash tags; layout 2 (``store/redis_layout.py``) puts every key
of a project under ``{project id}`` so that a Redis Cluster keeps each project's
scripts in one slot. The first store to open a Redis without the ``layout`` key moves
whatever layout 1 left there, project by project, with ``RENAME`` (a single Redis moves
any key; there is no layout-1 data on a cluster), then writes ``layout`` = 2. Every
step first checks that the old key is still there, so a move cut short (a crash) is
finished by the next store to open. Stores opening meanwhile wait for it.

Nodes of an older version must not run beside a migrated Redis (they would write
layout 1 again): upgrade every node together (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from switchboard.exceptions import Unavailable
from switchboard.server.store.redis_layout import LAYOUT_VERSION, RedisLayout

log = logging.getLogger("switchboard.store")

_LOCK_S = 120
"""How long a move may hold the lock before another store takes over."""


async def ensure_layout(redis: Any, keys: RedisLayout, *, clustered: bool) -> None:
    """Make sure the Redis holds :data:`LAYOUT_VERSION`, moving layout 1 if it finds one."""
    if await redis.get(keys.version()) is not None:
        return
    if clustered:
        await redis.set(keys.version(), LAYOUT_VERSION, nx=True)
        return
    lock = keys.prefix + "layout-migrating"
    for _ in range(_LOCK_S * 10):
        if await redis.set(lock, "1", nx=True, ex=_LOCK_S):
            break
        if await redis.get(keys.version()) is not None:
            return  # another store finished the move
        await asyncio.sleep(0.1)
    else:
        raise Unavailable("another node's move to the new Redis key layout did not finish")
    try:
        if await redis.get(keys.version()) is None:
            moved = await _move_layout_1(redis, keys)
            await redis.set(keys.version(), LAYOUT_VERSION)
            if moved:
                log.info("moved Redis keys to layout 2", extra={"projects": moved})
    finally:
        await redis.delete(lock)


async def _rename(redis: Any, old: str, new: str) -> None:
    if await redis.exists(old):
        await redis.rename(old, new)


async def _move_layout_1(redis: Any, keys: RedisLayout) -> int:
    """Move every project layout 1 lists; return how many."""
    old = keys.prefix
    project_ids = [p.decode() for p in await redis.zrange(old + "projects", 0, -1)]
    for project_id in project_ids:
        await _rename(redis, f"{old}project:{project_id}", keys.project(project_id))
        await _rename(redis, f"{old}gen:{project_id}", keys.generation(project_id))
        await _move_project_tokens(redis, keys, project_id)
        await _move_channels(redis, keys, project_id)
        await _move_tokens(redis, keys, project_id)
        await _rename(redis, f"{old}settings:{project_id}", keys.settings(project_id))
        await _rename(redis, f"{old}whlog:{project_id}", keys.webhook_log(project_id))
    await _move_idempotency_keys(redis, keys)
    # The lists go last: a move cut short is found and finished by the next store.
    await _rename(redis, old + "project-names", keys.project_names())
    await _rename(redis, old + "projects", keys.project_list())
    return len(project_ids)


async def _move_project_tokens(redis: Any, keys: RedisLayout, project_id: str) -> None:
    old = keys.prefix
    for token_id in [t.decode() for t in await redis.zrange(f"{old}ptks:{project_id}", 0, -1)]:
        secret_hash = await redis.get(f"{old}ptkid:{token_id}")
        if secret_hash is None:
            continue  # moved already
        secret_hash = secret_hash.decode()
        new = keys.project_token(project_id, token_id)
        await _rename(redis, f"{old}ptk:{secret_hash}", new)
        await redis.hset(new, "secret_hash", secret_hash)
        await redis.set(keys.project_token_by_hash(secret_hash), f"{project_id} {token_id}")
        await redis.set(keys.project_token_project(token_id), project_id)
        await redis.delete(f"{old}ptkid:{token_id}")
    await _rename(redis, f"{old}ptks:{project_id}", keys.project_tokens(project_id))


async def _move_channels(redis: Any, keys: RedisLayout, project_id: str) -> None:
    old = keys.prefix
    for channel_id in [c.decode() for c in await redis.zrange(f"{old}chs:{project_id}", 0, -1)]:
        for kind, new in [
            ("ch", keys.channel(project_id, channel_id)),
            ("subs", keys.subscribers(project_id, channel_id)),
            ("hist", keys.history(project_id, channel_id)),
            ("hstream", keys.history_stream(project_id, channel_id)),
        ]:
            await _rename(redis, f"{old}{kind}:{project_id}:{channel_id}", new)
    await _rename(redis, f"{old}chs-by-id:{project_id}", keys.channels_by_id(project_id))
    await _rename(redis, f"{old}chs:{project_id}", keys.channels(project_id))


async def _move_tokens(redis: Any, keys: RedisLayout, project_id: str) -> None:
    old = keys.prefix
    for token_id in [t.decode() for t in await redis.zrange(f"{old}toks:{project_id}", 0, -1)]:
        await redis.set(keys.token_project(token_id), project_id)
        await _rename(redis, f"{old}tok:{token_id}", keys.token(project_id, token_id))
        await _rename(
            redis, f"{old}tsubs:{token_id}", keys.token_subscriptions(project_id, token_id)
        )
        await _rename(
            redis, f"{old}inbox:{project_id}:{token_id}", keys.inbox(project_id, token_id)
        )
        await _rename(
            redis, f"{old}ibox:{project_id}:{token_id}", keys.inbox_stream(project_id, token_id)
        )
    await _rename(redis, f"{old}toks:{project_id}", keys.tokens(project_id))


async def _move_idempotency_keys(redis: Any, keys: RedisLayout) -> None:
    """A batch's idempotency keys (``idem:{project}:{key}``), their expiry kept."""
    old = keys.prefix + "idem:"
    async for name in redis.scan_iter(match=old.replace("[", "\\[") + "*", count=1000):
        project_id, _, key = name.decode()[len(old) :].partition(":")
        await _rename(redis, name.decode(), keys.idempotency(project_id, key))
