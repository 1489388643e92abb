"""One way to open a Redis client, shared by the Redis store and the Redis broker.

redis-py's default pool raises "Too many connections" the moment every connection is
busy. A node that many clients reconnect to at once (after a restart, or a load
balancer moving them) has hundreds of IDENTIFY and SUBSCRIBE frames in flight, so that
default refuses the storm with 4000 closes. A blocking pool makes the extra callers wait
their turn instead, for at most ``timeout`` seconds; past that the caller gets the same
connection error a dead Redis gives, which the store turns into 503 ``unavailable``.
"""

from __future__ import annotations

from redis import asyncio as aioredis

MAX_CONNECTIONS = 64
"""Redis connections per node and client. Redis serves commands one at a time, so more
connections add little throughput; they only hold more requests in flight."""


def open_client(url: str, *, timeout: float, health_check_interval: int = 0) -> aioredis.Redis:
    """A client for ``url`` over a blocking pool of :data:`MAX_CONNECTIONS` connections."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=health_check_interval,
    )
    return aioredis.Redis.from_pool(pool)
