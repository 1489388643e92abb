"""The Redis connection pool: a burst waits for a free connection, within a bound."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis import asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from switchboard.server.redis_pool import WaitingConnectionPool

pytestmark = pytest.mark.timeout(30)


def client(url: str, size: int, wait: float) -> aioredis.Redis:
    pool = WaitingConnectionPool.from_url(url, max_connections=size, wait_timeout=wait)
    return aioredis.Redis.from_pool(pool)


async def test_more_callers_than_connections_all_get_their_answer(redis_url: str) -> None:
    redis = client(redis_url, size=3, wait=5.0)
    try:
        results = await asyncio.gather(*(redis.incr("n") for _ in range(300)))
        assert sorted(results) == list(range(1, 301))
        assert len(redis.connection_pool._in_use_connections) == 0  # type: ignore[attr-defined]
    finally:
        await redis.aclose()


async def test_a_caller_gives_up_after_the_wait_bound(redis_url: str) -> None:
    redis = client(redis_url, size=2, wait=0.3)
    try:
        # Both connections are held by commands that block on the server for 2 s.
        holders = [asyncio.create_task(redis.blpop(["never"], timeout=2)) for _ in range(2)]
        await asyncio.sleep(0.2)
        started = time.monotonic()
        with pytest.raises(RedisConnectionError, match="no Redis connection free"):
            await redis.get("x")
        assert time.monotonic() - started < 1.0
        await asyncio.gather(*holders)
        assert await redis.get("x") is None  # the pool works again
    finally:
        await redis.aclose()


async def test_a_cancelled_waiter_does_not_swallow_a_release(redis_url: str) -> None:
    redis = client(redis_url, size=1, wait=5.0)
    try:
        holder = asyncio.create_task(redis.blpop(["never"], timeout=1))
        await asyncio.sleep(0.1)
        quitter = asyncio.create_task(redis.get("a"))
        stayer = asyncio.create_task(redis.get("b"))
        await asyncio.sleep(0.1)
        quitter.cancel()
        await holder
        assert await asyncio.wait_for(stayer, 3) is None
    finally:
        await redis.aclose()
