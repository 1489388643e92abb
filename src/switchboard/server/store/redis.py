"""`RedisStore`: durable state in Redis, shared by every node of a cluster.

Keys, all under one prefix (default ``sb:``)::

    project:{id}                 hash  id, name, created_at
    projects                     zset  project id by creation time
    project-names                hash  name -> project id (uniqueness)
    ptk:{secret hash}            hash  id, project_id, hint, created_at, revoked_at,
                                       permissions (decimal bit field; absent = all)
    ptkid:{id}                   str   secret hash
    ptks:{project}               zset  project token ids by creation time
    ch:{project}:{id}            hash  type, state, created_at
    chs:{project}                zset  channel ids by creation time
    chs-by-id:{project}          zset  channel ids, score 0 (lexical order)
    tok:{id}                     hash  project_id, state, created_at, expires_at
    toks:{project}               zset  token ids by creation time
    subs:{project}:{channel}     zset  token ids subscribed, by time
    tsubs:{token}                zset  channel ids the token is subscribed to, by time
    hist:…, hstream:…            channel history (``store/redis_history.py``)
    settings:…, whlog:…          project settings, webhook log (``store/redis_settings.py``)

Every operation that touches more than one key is one Lua script, so it happens whole
or not at all. A state patch merges in Python (Lua's JSON would rewrite numbers and
empty arrays) under WATCH, retried if another writer got there first.

A Redis that cannot be reached becomes :class:`~switchboard.exceptions.Unavailable`
within the socket timeout, never a hang.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from switchboard.exceptions import Conflict, NotFound, PayloadTooLarge, Unavailable
from switchboard.server import ids
from switchboard.server.clock import now_iso, parse_iso
from switchboard.server.models import (
    Access,
    Channel,
    ChannelType,
    Page,
    Project,
    ProjectTokenInfo,
    Token,
)
from switchboard.server.permissions import ALL, Permission, from_bits
from switchboard.server.redis_pool import open_client
from switchboard.server.store.base import UNCHANGED, Unchanged
from switchboard.server.store.redis_history import HISTORY_SCRIPTS, RedisHistory
from switchboard.server.store.redis_settings import SETTINGS_SCRIPTS, RedisSettings

_CREATE_PROJECT = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'name', ARGV[2], 'created_at', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
return 1
"""

_ADD_PROJECT_TOKEN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'project_id', ARGV[2], 'hint', ARGV[3],
           'created_at', ARGV[4], 'permissions', ARGV[8])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[2], 'revoked_at', ARGV[7]) end
redis.call('SET', KEYS[3], ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[1])
return 1
"""

_REVOKE_PROJECT_TOKEN = """
local secret_hash = redis.call('GET', KEYS[1])
if not secret_hash then return 0 end
local key = ARGV[1] .. secret_hash
if redis.call('HEXISTS', key, 'revoked_at') == 1 then return 0 end
redis.call('HSET', key, 'revoked_at', ARGV[2])
return 1
"""

# A token written before permissions existed has no field: '' reads as all.
_FIND_PROJECT_BY_TOKEN = """
local token = redis.call('HMGET', KEYS[1], 'project_id', 'revoked_at', 'permissions')
if not token[1] or token[2] then return false end
local project = redis.call('HMGET', ARGV[1] .. token[1], 'id', 'name', 'created_at')
if not project[1] then return false end
table.insert(project, token[3] or '')
return project
"""

_CREATE_CHANNEL = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'type', ARGV[2], 'state', ARGV[3], 'created_at', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
return 1
"""

_DELETE_CHANNEL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local tokens = redis.call('ZRANGE', KEYS[4], 0, -1)
for _, token in ipairs(tokens) do
  redis.call('ZREM', ARGV[2] .. token, ARGV[1])
end
redis.call('DEL', KEYS[1], KEYS[4], KEYS[5], KEYS[6])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return tokens
"""

_SET_STATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1])
return 1
"""

_UPDATE_TOKEN = """
if redis.call('HGET', KEYS[1], 'project_id') ~= ARGV[1] then return false end
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'state', ARGV[3]) end
if ARGV[4] == '1' then
  if ARGV[5] == '' then redis.call('HDEL', KEYS[1], 'expires_at')
  else redis.call('HSET', KEYS[1], 'expires_at', ARGV[5]) end
end
return redis.call('HGETALL', KEYS[1])
"""

_DELETE_TOKEN = """
if redis.call('HGET', KEYS[1], 'project_id') ~= ARGV[1] then return 0 end
local channels = redis.call('ZRANGE', KEYS[2], 0, -1)
for _, channel in ipairs(channels) do
  redis.call('ZREM', ARGV[3] .. channel, ARGV[2])
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[2])
return 1
"""

_ADD_SUBSCRIPTION = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HGET', KEYS[2], 'project_id') ~= ARGV[1] then return -2 end
local added = redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[3])
redis.call('ZADD', KEYS[4], 'NX', ARGV[4], ARGV[2])
return added
"""

_REMOVE_SUBSCRIPTION = """
local removed = redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
return removed
"""


def _ms(timestamp: str) -> int:
    return int(parse_iso(timestamp).timestamp() * 1000)


def _text(value: bytes | None) -> str | None:
    return value.decode() if value is not None else None


def _permissions(value: bytes | None) -> Permission:
    """A stored bit field; absent or empty (a token older than permissions) is all."""
    return from_bits(int(value)) if value else ALL


class RedisStore(RedisHistory, RedisSettings):
    """The :class:`~switchboard.server.store.Store` of a cluster (see the module docstring)."""

    def __init__(self, url: str, *, prefix: str = "sb:", timeout: float = 2.0) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
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
        self._redis = open_client(self.url, timeout=self.timeout, health_check_interval=15)
        for name, source in [
            ("create_project", _CREATE_PROJECT),
            ("add_project_token", _ADD_PROJECT_TOKEN),
            ("revoke_project_token", _REVOKE_PROJECT_TOKEN),
            ("find_project_by_token", _FIND_PROJECT_BY_TOKEN),
            ("create_channel", _CREATE_CHANNEL),
            ("delete_channel", _DELETE_CHANNEL),
            ("set_state", _SET_STATE),
            ("update_token", _UPDATE_TOKEN),
            ("delete_token", _DELETE_TOKEN),
            ("add_subscription", _ADD_SUBSCRIPTION),
            ("remove_subscription", _REMOVE_SUBSCRIPTION),
            *HISTORY_SCRIPTS,
            *SETTINGS_SCRIPTS,
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

    # Projects and project tokens.

    async def create_project(self, name: str) -> Project:
        return await self.put_project(Project(ids.new_project_id(), name, now_iso()))

    async def put_project(self, project: Project) -> Project:
        created = await self._run(
            "create_project",
            [self._k("project-names"), self._k("project", project.id), self._k("projects")],
            [project.id, project.name, project.created_at, _ms(project.created_at)],
        )
        if not created:
            raise Conflict(
                f"a project named {project.name!r} or with ID {project.id!r} exists already"
            )
        return project

    async def get_project(self, project_id: str) -> Project | None:
        async with self._translate():
            row = await self.redis.hgetall(self._k("project", project_id))
        if not row:
            return None
        return Project(row[b"id"].decode(), row[b"name"].decode(), row[b"created_at"].decode())

    async def list_projects(self) -> list[Project]:
        async with self._translate():
            project_ids = await self.redis.zrange(self._k("projects"), 0, -1)
        found = [await self.get_project(pid.decode()) for pid in project_ids]
        return [p for p in found if p is not None]

    async def add_project_token(
        self, project_id: str, secret_hash: str, hint: str, permissions: Permission = ALL
    ) -> ProjectTokenInfo:
        info = ProjectTokenInfo(
            ids.new_project_token_id(), project_id, hint, now_iso(), permissions=permissions
        )
        return await self.put_project_token(info, secret_hash)

    async def put_project_token(self, info: ProjectTokenInfo, secret_hash: str) -> ProjectTokenInfo:
        added = await self._run(
            "add_project_token",
            [
                self._k("project", info.project_id),
                self._k("ptk", secret_hash),
                self._k("ptkid", info.id),
                self._k("ptks", info.project_id),
            ],
            [
                info.id,
                info.project_id,
                info.hint,
                info.created_at,
                secret_hash,
                _ms(info.created_at),
                info.revoked_at or "",
                int(info.permissions),
            ],
        )
        if added == 0:
            raise NotFound(f"no project {info.project_id!r}")
        if added == -1:
            raise Conflict(f"project token {info.id!r} exists already")
        return info

    async def project_token_hashes(self, project_id: str) -> list[tuple[ProjectTokenInfo, str]]:
        async with self._translate():
            token_ids = await self.redis.zrange(self._k("ptks", project_id), 0, -1)
            found = []
            for token_id in token_ids:
                secret_hash = await self.redis.get(self._k("ptkid", token_id.decode()))
                if secret_hash is not None:
                    row = await self.redis.hgetall(self._k("ptk", secret_hash.decode()))
                    if row:
                        found.append((self._project_token(row), secret_hash.decode()))
        return found

    @staticmethod
    def _project_token(row: dict[bytes, bytes]) -> ProjectTokenInfo:
        return ProjectTokenInfo(
            row[b"id"].decode(),
            row[b"project_id"].decode(),
            row[b"hint"].decode(),
            row[b"created_at"].decode(),
            _text(row.get(b"revoked_at")),
            _permissions(row.get(b"permissions")),
        )

    async def find_project_token(self, secret_hash: str) -> ProjectTokenInfo | None:
        async with self._translate():
            row = await self.redis.hgetall(self._k("ptk", secret_hash))
        if not row or b"revoked_at" in row:
            return None
        return self._project_token(row)

    async def find_project_by_token(self, secret_hash: str) -> Access | None:
        row = await self._run(
            "find_project_by_token", [self._k("ptk", secret_hash)], [self._k("project", "")]
        )
        if not row:
            return None
        project = Project(*(value.decode() for value in row[:3]))
        return Access(project, _permissions(row[3]))

    async def list_project_tokens(self, project_id: str) -> list[ProjectTokenInfo]:
        return [info for info, _ in await self.project_token_hashes(project_id)]

    async def revoke_project_token(self, token_id: str) -> bool:
        return bool(
            await self._run(
                "revoke_project_token",
                [self._k("ptkid", token_id)],
                [self._k("ptk", ""), now_iso()],
            )
        )

    # Channels.

    def _channel_keys(self, project_id: str, channel_id: str) -> list[str]:
        return [
            self._k("ch", project_id, channel_id),
            self._k("chs", project_id),
            self._k("chs-by-id", project_id),
            self._k("subs", project_id, channel_id),
            # Its history (store/redis_history.py) goes with it.
            *self.history_keys(project_id, channel_id)[1:],
        ]

    @staticmethod
    def _channel(project_id: str, channel_id: str, row: dict[bytes, bytes]) -> Channel:
        return Channel(
            project_id,
            channel_id,
            ChannelType(row[b"type"].decode()),
            msgspec.Raw(row[b"state"]),
            row[b"created_at"].decode(),
        )

    async def create_channel(self, channel: Channel) -> Channel:
        created = await self._run(
            "create_channel",
            self._channel_keys(channel.project_id, channel.id)[:3],
            [
                channel.id,
                channel.type.value,
                bytes(channel.state),
                channel.created_at,
                _ms(channel.created_at),
            ],
        )
        if not created:
            raise Conflict(f"channel {channel.id!r} exists already")
        return channel

    async def get_channel(self, project_id: str, channel_id: str) -> Channel | None:
        async with self._translate():
            row = await self.redis.hgetall(self._k("ch", project_id, channel_id))
        return self._channel(project_id, channel_id, row) if row else None

    async def channel_exists(self, project_id: str, channel_id: str) -> bool:
        async with self._translate():
            return bool(await self.redis.exists(self._k("ch", project_id, channel_id)))

    async def list_channels(
        self, project_id: str, *, offset: int, limit: int, sort_by: str, descending: bool
    ) -> Page:
        index = self._k("chs-by-id" if sort_by == "id" else "chs", project_id)
        async with self._translate():
            total = await self.redis.zcard(index)
            channel_ids = await self.redis.zrange(
                index, offset, offset + limit - 1, desc=descending
            )
            pipe = self.redis.pipeline(transaction=False)
            for channel_id in channel_ids:
                pipe.hgetall(self._k("ch", project_id, channel_id.decode()))
            rows = await pipe.execute()
        items = [
            self._channel(project_id, cid.decode(), row)
            for cid, row in zip(channel_ids, rows, strict=True)
            if row
        ]
        return Page(items, total)

    async def delete_channel(self, project_id: str, channel_id: str) -> list[str]:
        tokens = await self._run(
            "delete_channel",
            self._channel_keys(project_id, channel_id),
            [channel_id, self._k("tsubs", "")],
        )
        if tokens is None:
            raise NotFound(f"no channel {channel_id!r} in this project")
        return [t.decode() for t in tokens]

    async def set_channel_state(self, project_id: str, channel_id: str, state: msgspec.Raw) -> None:
        if not await self._run(
            "set_state", [self._k("ch", project_id, channel_id)], [bytes(state)]
        ):
            raise NotFound(f"no channel {channel_id!r} in this project")

    async def patch_channel_state(
        self, project_id: str, channel_id: str, partial: dict[str, Any], max_bytes: int
    ) -> msgspec.Raw:
        key = self._k("ch", project_id, channel_id)
        async with self._translate(), self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    current = await pipe.hget(key, "state")
                    if current is None:
                        raise NotFound(f"no channel {channel_id!r} in this project")
                    state = msgspec.json.decode(current)
                    state.update(partial)
                    encoded = msgspec.json.encode(state)
                    if len(encoded) > max_bytes:
                        raise PayloadTooLarge(
                            f"the patched state would be {len(encoded)} bytes; "
                            f"the limit is {max_bytes}"
                        )
                    pipe.multi()
                    pipe.hset(key, "state", encoded)
                    await pipe.execute()
                    return msgspec.Raw(encoded)
                except redis_errors.WatchError:
                    continue

    # Tokens.

    @staticmethod
    def _token(token_id: str, row: dict[bytes, bytes]) -> Token:
        return Token(
            row[b"project_id"].decode(),
            token_id,
            msgspec.Raw(row[b"state"]),
            row[b"created_at"].decode(),
            _text(row.get(b"expires_at")),
        )

    async def create_token(self, token: Token) -> Token:
        mapping: dict[str, Any] = {
            "project_id": token.project_id,
            "state": bytes(token.state),
            "created_at": token.created_at,
        }
        if token.expires_at is not None:
            mapping["expires_at"] = token.expires_at
        async with self._translate():
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(self._k("tok", token.id), mapping=mapping)
            pipe.zadd(self._k("toks", token.project_id), {token.id: _ms(token.created_at)})
            await pipe.execute()
        return token

    async def get_token(self, project_id: str, token_id: str) -> Token | None:
        token = await self.get_token_any_project(token_id)
        return token if token is not None and token.project_id == project_id else None

    async def get_token_any_project(self, token_id: str) -> Token | None:
        async with self._translate():
            row = await self.redis.hgetall(self._k("tok", token_id))
        return self._token(token_id, row) if row else None

    async def list_tokens(self, project_id: str) -> list[Token]:
        async with self._translate():
            token_ids = await self.redis.zrange(self._k("toks", project_id), 0, -1)
            pipe = self.redis.pipeline(transaction=False)
            for token_id in token_ids:
                pipe.hgetall(self._k("tok", token_id.decode()))
            rows = await pipe.execute()
        return [
            self._token(tid.decode(), row) for tid, row in zip(token_ids, rows, strict=True) if row
        ]

    async def update_token(
        self,
        project_id: str,
        token_id: str,
        *,
        state: msgspec.Raw | Unchanged = UNCHANGED,
        expires_at: str | Unchanged | None = UNCHANGED,
    ) -> Token:
        flat = await self._run(
            "update_token",
            [self._k("tok", token_id)],
            [
                project_id,
                "0" if isinstance(state, Unchanged) else "1",
                b"" if isinstance(state, Unchanged) else bytes(state),
                "0" if isinstance(expires_at, Unchanged) else "1",
                expires_at if isinstance(expires_at, str) else "",
            ],
        )
        if flat is None:
            raise NotFound(f"no token {ids.redact(token_id)!r} in this project")
        row = dict(zip(flat[::2], flat[1::2], strict=True))
        return self._token(token_id, row)

    async def delete_token(self, project_id: str, token_id: str) -> None:
        deleted = await self._run(
            "delete_token",
            [self._k("tok", token_id), self._k("tsubs", token_id), self._k("toks", project_id)],
            [project_id, token_id, self._k("subs", project_id, "")],
        )
        if not deleted:
            raise NotFound(f"no token {ids.redact(token_id)!r} in this project")

    # Subscriptions.

    async def add_subscription(self, project_id: str, channel_id: str, token_id: str) -> bool:
        result = await self._run(
            "add_subscription",
            [
                self._k("ch", project_id, channel_id),
                self._k("tok", token_id),
                self._k("subs", project_id, channel_id),
                self._k("tsubs", token_id),
            ],
            [project_id, channel_id, token_id, time.time_ns() // 1000],
        )
        if result == -1:
            raise NotFound(f"no channel {channel_id!r} in this project")
        if result == -2:
            raise NotFound(f"no token {ids.redact(token_id)!r} in this project")
        return bool(result)

    async def remove_subscription(self, project_id: str, channel_id: str, token_id: str) -> bool:
        return bool(
            await self._run(
                "remove_subscription",
                [self._k("subs", project_id, channel_id), self._k("tsubs", token_id)],
                [channel_id, token_id],
            )
        )

    async def is_subscribed(self, project_id: str, channel_id: str, token_id: str) -> bool:
        async with self._translate():
            score = await self.redis.zscore(self._k("subs", project_id, channel_id), token_id)
        return score is not None

    async def channel_tokens(self, project_id: str, channel_id: str) -> list[Token]:
        async with self._translate():
            token_ids = await self.redis.zrange(self._k("subs", project_id, channel_id), 0, -1)
        found = [await self.get_token(project_id, t.decode()) for t in token_ids]
        return [t for t in found if t is not None]

    async def token_channels(self, project_id: str, token_id: str) -> list[Channel]:
        async with self._translate():
            channel_ids = await self.redis.zrange(self._k("tsubs", token_id), 0, -1)
        found = [await self.get_channel(project_id, c.decode()) for c in channel_ids]
        return [c for c in found if c is not None]


def _redact_url(url: str) -> str:
    """A Redis URL fit for a log: the password replaced."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
