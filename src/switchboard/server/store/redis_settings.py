"""Project settings and the webhook delivery log in Redis.

Keys (named in ``store/redis_layout.py``, under the project's tag)::

    {project}:settings     hash  key -> JSON document
    {project}:whlog        list  the last webhook delivery attempts, newest first

A setting is written only while its project exists (one script). The log is one
``LPUSH`` and ``LTRIM`` in a transaction, so it never holds more than its bound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from switchboard.exceptions import NotFound
from switchboard.server.store.redis_layout import RedisLayout

# KEYS: project hash, settings hash. ARGV: key, value ('' deletes). 0: no project.
_SET_SETTING = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[2] == '' then redis.call('HDEL', KEYS[2], ARGV[1])
else redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
return 1
"""

SETTINGS_SCRIPTS = [("set_project_setting", _SET_SETTING)]
"""Registered by ``RedisStore.open`` with its own scripts."""


class RedisSettings:
    """The settings methods of :class:`~switchboard.server.store.redis.RedisStore`
    (a mixin)."""

    if TYPE_CHECKING:

        async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any: ...

        keys: RedisLayout

        def _translate(self) -> Any: ...
        @property
        def redis(self) -> Any: ...

    async def get_project_setting(self, project_id: str, key: str) -> msgspec.Raw | None:
        async with self._translate():
            value = await self.redis.hget(self.keys.settings(project_id), key)
        return None if value is None else msgspec.Raw(value)

    async def set_project_setting(
        self, project_id: str, key: str, value: msgspec.Raw | None
    ) -> None:
        done = await self._run(
            "set_project_setting",
            [self.keys.project(project_id), self.keys.settings(project_id)],
            [key, b"" if value is None else bytes(value)],
        )
        if not done:
            raise NotFound(f"no project {project_id!r}")

    async def project_settings(self, project_id: str) -> dict[str, msgspec.Raw]:
        async with self._translate():
            values = await self.redis.hgetall(self.keys.settings(project_id))
        return {k.decode(): msgspec.Raw(v) for k, v in sorted(values.items())}

    async def add_webhook_delivery(self, project_id: str, entry: bytes, keep: int) -> None:
        key = self.keys.webhook_log(project_id)
        async with self._translate():
            pipe = self.redis.pipeline(transaction=True)
            pipe.lpush(key, entry)
            pipe.ltrim(key, 0, keep - 1)
            await pipe.execute()

    async def webhook_deliveries(self, project_id: str, limit: int) -> list[msgspec.Raw]:
        async with self._translate():
            entries = await self.redis.lrange(self.keys.webhook_log(project_id), 0, limit - 1)
        return [msgspec.Raw(e) for e in entries]
