"""One way to open a Redis client, shared by the Redis store and the Redis broker.

redis-py's default pool raises "Too many connections" the moment every connection is
busy. A node that many clients reconnect to at once (after a restart, or a load
balancer moving them) has hundreds of IDENTIFY and SUBSCRIBE frames in flight, so that
default refuses the storm with 4000 closes. redis-py's ``BlockingConnectionPool`` waits
instead, but takes a lock and arms a timer for every command, busy or not (~10% of a
REST publish on Redis, measured with ``bench/rest.py``). :class:`WaitingConnectionPool`
keeps the default pool's path while a connection is free and waits only when none is:
for at most ``timeout`` seconds, after which the caller gets the connection error a dead
Redis gives, which the store turns into 503 ``unavailable``.

After Redis restarts, every idle connection in the pool is a socket the old Redis
closed. Two settings make that invisible to callers (issue 13):

- redis-py checks a connection it takes from the pool and reconnects one that is at
  EOF, but skips that check while "maintenance notifications" (a Redis Enterprise
  feature, on by default with RESP3) are enabled. They are switched off here.
- A command that fails with a connection error is retried once, on a fresh connection
  (redis-py's own ``Retry``; a pool made with ``from_url`` gets no retry by default).
  Timeouts are not retried: a Redis that is slow or gone would double the wait.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote

from redis import asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError
from redis.maint_notifications import MaintNotificationsConfig

FAULTS: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    OSError,
    # A Redis Cluster that is being reconfigured: slots not covered (seen while a slot
    # moves, or a master fails over), CLUSTERDOWN, TRYAGAIN, or redirections beyond
    # redis-py's limit. Transient, like a Redis that cannot be reached: 503, not 500.
    redis_errors.RedisClusterException,
    redis_errors.ClusterError,
    redis_errors.TryAgainError,
)
"""What a Redis that cannot serve right now raises: the store and the broker answer
:class:`~switchboard.exceptions.Unavailable` (503 ``unavailable``) for each."""

MAX_CONNECTIONS = 64
"""Redis connections per node and client. Redis serves commands one at a time, so more
connections add little throughput; they only hold more requests in flight."""


class _Waiting(aioredis.ConnectionPool):
    """When every connection is busy, wait for one to be released (the module docstring).

    Two pools take it: :class:`WaitingConnectionPool` (a Redis at an address) and
    :class:`WaitingSentinelPool` (the master a set of Sentinels names).
    """

    wait_timeout: float
    _waiters: collections.deque[asyncio.Future[None]]

    def _wait_for_connections(self, wait_timeout: float) -> None:
        self.wait_timeout = wait_timeout
        self._waiters = collections.deque()

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().get_connection()  # type: ignore[no-untyped-call]
        except MaxConnectionsError:
            pass
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_timeout
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                raise RedisConnectionError(
                    f"no Redis connection free within {self.wait_timeout:g} s "
                    f"({self.max_connections} in use)"
                ) from None
            except BaseException:
                # Cancelled: a release meant for us goes to the next waiter instead.
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()
                raise
            try:
                return await super().get_connection()  # type: ignore[no-untyped-call]
            except MaxConnectionsError:
                continue  # another caller took the freed connection first

    async def release(self, connection: Any) -> None:
        await super().release(connection)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class WaitingConnectionPool(_Waiting):
    """A pool of connections to one Redis that waits when all are busy."""

    def __init__(self, *, wait_timeout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._wait_for_connections(wait_timeout)


class WaitingSentinelPool(_Waiting, SentinelConnectionPool):
    """A pool of connections to the master Sentinels name, that waits when all are busy.

    redis-py's Sentinel pool asks the Sentinels for the master's address on each new
    connection and drops idle connections to an old master, so after a failover the
    next commands reach the promoted replica.
    """

    def __init__(self, service_name: str, sentinel_manager: Any, **kwargs: Any) -> None:
        wait_timeout = kwargs.pop("wait_timeout")
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]
        self._wait_for_connections(wait_timeout)


SENTINEL_SCHEME = "redis+sentinel://"


@dataclass(frozen=True, slots=True)
class SentinelURL:
    """``redis+sentinel://[:password@]host:port[,host:port…]/MASTER[/DB]``."""

    sentinels: list[tuple[str, int]]
    master: str
    db: int
    password: str | None
    """The master's (and its replicas'); the Sentinels are asked without one."""


def parse_sentinel_url(url: str) -> SentinelURL:
    """Raises ValueError with what is wrong."""
    rest = url.removeprefix(SENTINEL_SCHEME)
    auth, _, rest = rest.rpartition("@")
    hosts, _, path = rest.partition("/")
    parts = [p for p in path.split("/") if p]
    if not hosts or not 1 <= len(parts) <= 2:
        raise ValueError("expected redis+sentinel://[:password@]host:port[,host:port…]/MASTER[/DB]")
    sentinels = []
    for host in hosts.split(","):
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise ValueError(f"a Sentinel is host:port, not {host!r}")
        sentinels.append((name.strip("[]"), int(port)))
    db = int(parts[1]) if len(parts) == 2 else 0
    password = unquote(auth.partition(":")[2]) if auth else None
    return SentinelURL(sentinels, unquote(parts[0]), db, password or None)


CLUSTER_SCHEME = "redis+cluster://"


@dataclass(frozen=True, slots=True)
class ClusterURL:
    """``redis+cluster://[:password@]host:port[,host:port…]``: any of the cluster's nodes
    (the client learns the rest from them)."""

    nodes: list[tuple[str, int]]
    password: str | None


def parse_cluster_url(url: str) -> ClusterURL:
    """Raises ValueError with what is wrong."""
    rest = url.removeprefix(CLUSTER_SCHEME)
    auth, _, rest = rest.rpartition("@")
    hosts = rest.rstrip("/")
    if not hosts or "/" in hosts:
        raise ValueError("expected redis+cluster://[:password@]host:port[,host:port…]")
    nodes = []
    for host in hosts.split(","):
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise ValueError(f"a cluster node is host:port, not {host!r}")
        nodes.append((name.strip("[]"), int(port)))
    password = unquote(auth.partition(":")[2]) if auth else None
    return ClusterURL(nodes, password or None)


def is_cluster_url(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEME)


class WaitingRedisCluster(RedisCluster):
    """redis-py's cluster client, with at most :data:`MAX_CONNECTIONS` commands (or
    pipelines) in flight: its pools raise ``MaxConnectionsError`` when every connection
    to a node is busy, where this client waits for a slot instead (the module docstring).

    A command or pipeline uses at most one connection per Redis node, so the bound on
    commands in flight bounds the connections to each node.
    """

    _in_flight: asyncio.Semaphore

    def _bound_in_flight(self, limit: int) -> None:
        self._in_flight = asyncio.Semaphore(limit)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._in_flight:
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)
        return _WaitingPipeline(self, transaction)  # type: ignore[abstract]


class _WaitingPipeline(ClusterPipeline):
    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        client: Any = self.cluster_client
        async with client._in_flight:
            return await super().execute(*args, **kwargs)


def _open_cluster(url: str, options: dict[str, Any]) -> WaitingRedisCluster:
    where = parse_cluster_url(url)
    client = WaitingRedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in where.nodes],
        password=where.password,
        max_connections=MAX_CONNECTIONS + 8,
        socket_timeout=options["socket_timeout"],
        socket_connect_timeout=options["socket_connect_timeout"],
        health_check_interval=options["health_check_interval"],
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )
    client._bound_in_flight(MAX_CONNECTIONS)
    return client


_READS = frozenset(
    b"GET HGET HMGET HGETALL HLEN HEXISTS HSCAN EXISTS SMEMBERS SISMEMBER SCARD SSCAN "
    b"ZRANGE ZRANGEBYSCORE ZREVRANGE ZSCORE ZCARD XRANGE XREVRANGE XLEN XINFO SCAN TYPE "
    b"TTL PTTL PING INFO SCRIPT EVALSHA_RO WAIT PUBLISH".split()
)
"""Commands that change nothing kept (PUBLISH is gone once delivered): no WAIT after them."""


async def _wait_for_replicas(conn: Any, replicas: int, wait_ms: int) -> None:
    """``WAIT`` on ``conn`` until ``replicas`` replicas have its writes; fail if fewer do."""
    await conn.send_command("WAIT", replicas, wait_ms)
    acked = await conn.read_response()
    if int(acked) < replicas:
        raise RedisConnectionError(
            f"the write reached {acked} of {replicas} replicas within {wait_ms} ms"
        )


class ReplicatedPipeline(aioredis.client.Pipeline):
    """A pipeline whose writes return once the client's replicas have them."""

    replicas = 0
    wait_ms = 0

    async def _execute_transaction(
        self, connection: Any, commands: Any, raise_on_error: Any
    ) -> Any:
        result = await super()._execute_transaction(connection, commands, raise_on_error)
        await _wait_for_replicas(connection, self.replicas, self.wait_ms)
        return result

    async def _execute_pipeline(self, connection: Any, commands: Any, raise_on_error: Any) -> Any:
        result = await super()._execute_pipeline(connection, commands, raise_on_error)
        if any(_is_write(args[0]) for args, _ in commands):
            await _wait_for_replicas(connection, self.replicas, self.wait_ms)
        return result


class ReplicatedRedis(aioredis.Redis):
    """A client whose writes return once ``replicas`` replicas have them (or fail):
    an acknowledged write then survives a failover (``--redis-min-replicas``)."""

    replicas = 0
    wait_ms = 0

    async def _send_command_parse_response(
        self, conn: Any, command_name: Any, *args: Any, **options: Any
    ) -> Any:
        result = await super()._send_command_parse_response(  # type: ignore[no-untyped-call]
            conn, command_name, *args, **options
        )
        if _is_write(command_name):
            await _wait_for_replicas(conn, self.replicas, self.wait_ms)
        return result

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = ReplicatedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
        pipe.replicas, pipe.wait_ms = self.replicas, self.wait_ms
        return pipe


def _is_write(command: Any) -> bool:
    name = command.encode() if isinstance(command, str) else bytes(command)
    return name.upper() not in _READS


def open_client(
    url: str, *, timeout: float, health_check_interval: int = 0, min_replicas: int = 0
) -> aioredis.Redis:
    """A client for ``url`` over a waiting pool of :data:`MAX_CONNECTIONS`: to one Redis
    (``redis://``, ``rediss://``), or to the master Sentinels name (``redis+sentinel://``).

    A ``redis+cluster://`` URL gives a :class:`WaitingRedisCluster` instead (typed as
    a client: it has the same commands).

    ``min_replicas``: each write waits until that many replicas have it (``WAIT``, up to
    ``timeout``), and fails if fewer do (:class:`ReplicatedRedis`); not on a cluster."""
    redis_class = ReplicatedRedis if min_replicas else aioredis.Redis
    options: dict[str, Any] = {
        "max_connections": MAX_CONNECTIONS,
        "wait_timeout": timeout,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": health_check_interval,
        "retry": Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,)),
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
    }
    if is_cluster_url(url):
        if min_replicas:
            raise ValueError("--redis-min-replicas is not supported on a Redis Cluster")
        cluster: Any = _open_cluster(url, options)
        return cast(aioredis.Redis, cluster)
    if url.startswith(SENTINEL_SCHEME):
        where = parse_sentinel_url(url)
        sentinel = Sentinel(where.sentinels, socket_timeout=timeout, socket_connect_timeout=timeout)
        client: aioredis.Redis = sentinel.master_for(
            where.master,
            redis_class=redis_class,
            connection_pool_class=WaitingSentinelPool,
            db=where.db,
            password=where.password,
            **options,
        )
    else:
        client = redis_class.from_pool(WaitingConnectionPool.from_url(url, **options))
    if isinstance(client, ReplicatedRedis):
        # Half the socket timeout: WAIT answers (with how many replicas had it) before
        # the read of its answer would time out.
        client.replicas, client.wait_ms = min_replicas, int(timeout * 500)
    return client
