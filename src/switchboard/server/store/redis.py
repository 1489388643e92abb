"""`RedisStore`: durable state in Redis, shared by every node of a cluster.

Keys, all under one prefix (default ``sb:``), are named in one place,
``store/redis_layout.py``: every key of a project carries the project's hash tag, so on
a Redis Cluster each script touches one slot; a Redis written by an older Switchboard
is moved to that layout once, when a store first opens it (``store/redis_migrate.py``).

The methods live with their keys, one module per concept: ``redis_projects``
(projects, project tokens), ``redis_channels`` (channels, subscriptions), ``redis_tokens``
(leap tokens), ``redis_history``, ``redis_settings``, ``redis_inbox`` (token inboxes)
and ``redis_batch`` (idempotency keys of batches); this module holds the connection, registers
their Lua scripts and turns Redis failures into ``Unavailable``.

Every operation that touches more than one key of a project is one Lua script, so it
happens whole or not at all; what spans projects (a lookup by secret hash or token ID,
the project list) is written in a step of its own, in an order that leaves no half
thing a reader would find (docs/scaling.md). A state patch merges in Python (Lua's JSON would rewrite numbers and
empty arrays) under WATCH, retried if another writer got there first.

A Redis that cannot be reached becomes :class:`~switchboard.exceptions.Unavailable`
within the socket timeout, never a hang.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis

from switchboard.exceptions import Unavailable
from switchboard.server.redis_pool import FAULTS, is_cluster_url, open_client
from switchboard.server.redis_pool.pipeline import RawAutoPipeline
from switchboard.server.store.base import CommonMethods
from switchboard.server.store.redis_autopipeline import AutoPipeline
from switchboard.server.store.redis_batch import BATCH_SCRIPTS, RedisBatch
from switchboard.server.store.redis_channels import CHANNEL_SCRIPTS, RedisChannels
from switchboard.server.store.redis_history import HISTORY_SCRIPTS, RedisHistory
from switchboard.server.store.redis_inbox import INBOX_SCRIPTS, RedisInbox
from switchboard.server.store.redis_layout import RedisLayout
from switchboard.server.store.redis_migrate import ensure_layout
from switchboard.server.store.redis_projects import PROJECT_SCRIPTS, RedisProjects
from switchboard.server.store.redis_settings import SETTINGS_SCRIPTS, RedisSettings
from switchboard.server.store.redis_tokens import TOKEN_SCRIPTS, RedisTokens

_FAULTS = FAULTS
"""What a Redis that cannot serve raises: :class:`Unavailable` (503) to callers."""


class RedisStore(
    RedisProjects,
    RedisChannels,
    RedisTokens,
    RedisHistory,
    RedisSettings,
    RedisInbox,
    RedisBatch,
    CommonMethods,
):
    """The :class:`~switchboard.server.store.Store` of a cluster (see the module docstring)."""

    def __init__(
        self, url: str, *, prefix: str = "sb:", timeout: float = 2.0, min_replicas: int = 0
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.keys = RedisLayout(prefix)
        self.clustered = is_cluster_url(url)
        """On a Redis Cluster: no script names a key it was not given."""
        self.timeout = timeout
        self.min_replicas = min_replicas
        """Replicas each write must reach before it is acknowledged (``WAIT``; 0: none)."""
        self._redis: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._pipeline: AutoPipeline | RawAutoPipeline | None = None

    def __repr__(self) -> str:
        return f"RedisStore({_redact_url(self.url)!r}, prefix={self.prefix!r})"

    @property
    def redis(self) -> Any:
        # Typed as Any on purpose: redis-py's return types are unions of every reply
        # shape; this module decodes each reply where it reads it.
        if self._redis is None:
            raise Unavailable("the store is closed")
        return self._redis

    async def open(self) -> None:
        self._redis = open_client(
            self.url,
            timeout=self.timeout,
            health_check_interval=15,
            min_replicas=self.min_replicas,
        )
        for name, source in [
            *PROJECT_SCRIPTS,
            *CHANNEL_SCRIPTS,
            *TOKEN_SCRIPTS,
            *HISTORY_SCRIPTS,
            *SETTINGS_SCRIPTS,
            *INBOX_SCRIPTS,
            *BATCH_SCRIPTS,
        ]:
            self._scripts[name] = self._redis.register_script(source)
        self._pipeline = self._auto_pipeline(self._redis)
        try:
            await self.ping()
            async with self._translate():
                await ensure_layout(self._redis, self.keys, clustered=self.clustered)
        except Unavailable:
            # A store that failed to open keeps nothing open: its client, pool and
            # pipeline go (redis-py keeps the socket of a connection that failed to
            # authenticate until its pool is closed), on one Redis and on a cluster.
            if not self.clustered:
                await self._redis.connection_pool.disconnect(inuse_connections=True)
            await self.close()
            raise

    def _auto_pipeline(self, client: Any) -> AutoPipeline | RawAutoPipeline | None:
        """How the hot path's script calls of a loop turn go together: over a connection
        of their own to one Redis; through redis-py's pipelines behind Sentinels or with
        ``WAIT`` for replicas; one by one on a cluster (its client pipelines by slot)."""
        if self.clustered:
            return None
        if self.min_replicas or not self.url.startswith(("redis://", "rediss://")):
            return AutoPipeline(client)
        return RawAutoPipeline(client, self.timeout)

    async def close(self) -> None:
        if isinstance(self._pipeline, RawAutoPipeline):
            await self._pipeline.close()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def ping(self) -> None:
        async with self._translate():
            await self.redis.ping()

    @contextlib.asynccontextmanager
    async def _translate(self) -> AsyncIterator[None]:
        """Redis failures become Unavailable (503), with the cause kept."""
        try:
            yield
        except _FAULTS as exc:
            raise Unavailable(f"the store (Redis) cannot be reached: {exc}") from exc

    async def _run(
        self, script: str, keys: list[str], args: list[Any], *, pipelined: bool = False
    ) -> Any:
        """Run a registered script; ``pipelined``: with the other such calls of this loop
        turn, in one pipeline (``store/redis_autopipeline.py``; not on a cluster)."""
        # The hot path's own except, not _translate(): an async context manager costs a
        # generator and two awaits per call (~2 % of a REST publish on Redis).
        try:
            if pipelined and self._pipeline is not None:
                return await self._pipeline.run(self._scripts[script], keys, args)
            return await self._scripts[script](keys=keys, args=args)
        except _FAULTS as exc:
            raise Unavailable(f"the store (Redis) cannot be reached: {exc}") from exc


def _redact_url(url: str) -> str:
    """A Redis URL fit for a log: the password replaced."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
