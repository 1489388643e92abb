"""`RedisStore`: durable state in Redis, shared by every node of a cluster.

Keys, all under one prefix (default ``sb:``)::

    project:{id}                 hash  id, name, created_at
    projects                     zset  project id by creation time
    project-names                hash  name -> project id (uniqueness)
    ptk:{secret hash}            hash  id, project_id, hint, created_at, revoked_at,
                                       permissions (decimal bit field; absent = all)
    ptkid:{id}                   str   secret hash
    ptks:{project}               zset  project token ids by creation time
    gen:{project}                str   credential generation (from a random start),
                                       INCR by every revocation of a project token
    ch:{project}:{id}            hash  type, state, created_at
    chs:{project}                zset  channel ids by creation time
    chs-by-id:{project}          zset  channel ids, score 0 (lexical order)
    tok:{id}                     hash  project_id, state, created_at, expires_at
    toks:{project}               zset  token ids by creation time
    subs:{project}:{channel}     zset  token ids subscribed, by time
    tsubs:{token}                zset  channel ids the token is subscribed to, by time
    hist:…, hstream:…            channel history (``store/redis_history.py``)
    settings:…, whlog:…          project settings, webhook log (``store/redis_settings.py``)
    inbox:…, ibox:…              token inboxes (``store/redis_inbox.py``)
    idem:…                       idempotency keys of batches (``store/redis_batch.py``)

The methods live with their keys, one module per concept: ``redis_projects``
(projects, project tokens), ``redis_channels`` (channels, leap tokens, subscriptions),
``redis_history``, ``redis_settings``, ``redis_inbox`` and ``redis_batch``; this module
holds the connection, registers their Lua scripts and turns Redis failures into
``Unavailable``.

Every operation that touches more than one key is one Lua script, so it happens whole
or not at all. A state patch merges in Python (Lua's JSON would rewrite numbers and
empty arrays) under WATCH, retried if another writer got there first.

A Redis that cannot be reached becomes :class:`~switchboard.exceptions.Unavailable`
within the socket timeout, never a hang.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from switchboard.exceptions import Unavailable
from switchboard.server.redis_pool import open_client
from switchboard.server.store.base import CommonMethods
from switchboard.server.store.redis_batch import BATCH_SCRIPTS, RedisBatch
from switchboard.server.store.redis_channels import CHANNEL_SCRIPTS, RedisChannels
from switchboard.server.store.redis_history import HISTORY_SCRIPTS, RedisHistory
from switchboard.server.store.redis_inbox import INBOX_SCRIPTS, RedisInbox
from switchboard.server.store.redis_projects import PROJECT_SCRIPTS, RedisProjects
from switchboard.server.store.redis_settings import SETTINGS_SCRIPTS, RedisSettings


class RedisStore(
    RedisProjects,
    RedisChannels,
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
        self.timeout = timeout
        self.min_replicas = min_replicas
        """Replicas each write must reach before it is acknowledged (``WAIT``; 0: none)."""
        self._redis: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}

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
            *HISTORY_SCRIPTS,
            *SETTINGS_SCRIPTS,
            *INBOX_SCRIPTS,
            *BATCH_SCRIPTS,
        ]:
            self._scripts[name] = self._redis.register_script(source)
        try:
            await self.ping()
        except Unavailable:
            # redis-py keeps the socket of a connection that failed to authenticate.
            await self._redis.connection_pool.disconnect(inuse_connections=True)
            raise

    async def close(self) -> None:
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
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            raise Unavailable(f"the store (Redis) cannot be reached: {exc}") from exc

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        async with self._translate():
            return await self._scripts[script](keys=keys, args=args)

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)


def _redact_url(url: str) -> str:
    """A Redis URL fit for a log: the password replaced."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
