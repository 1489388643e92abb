"""Leap tokens in Redis (keys in ``store/redis_layout.py``).

A token lives under its project's tag; ``tokp:{token}`` leads from its ID alone to its
project, for a socket's ``IDENTIFY`` (which names no project). Deleting a token removes
its subscriptions from its channels' sets in the same script
(``store/redis_channels.py`` keeps the subscriptions).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import msgspec

from switchboard.exceptions import NotFound
from switchboard.server import ids
from switchboard.server.models import UNCHANGED, Token, Unchanged
from switchboard.server.store.redis_fields import ms, text
from switchboard.server.store.redis_layout import RedisLayout

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

# KEYS: [the token's lookup (on one Redis; a cluster writes it first),] token hash,
# token list. ARGV: project, state, created_at, expires_at or '', id, created ms.
_CREATE_TOKEN = """
local n = #KEYS
if n == 3 then redis.call('SET', KEYS[1], ARGV[1]) end
redis.call('HSET', KEYS[n - 1], 'project_id', ARGV[1], 'state', ARGV[2], 'created_at', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[n - 1], 'expires_at', ARGV[4]) end
redis.call('ZADD', KEYS[n], ARGV[6], ARGV[5])
return 1
"""

# On a single Redis, a socket's token in one round trip (keys named from the lookup's
# value: a cluster refuses that). KEYS: the lookup. ARGV: prefix, token id.
_TOKEN_ANY_PROJECT = """
local project = redis.call('GET', KEYS[1])
if not project then return false end
local row = redis.call('HGETALL', ARGV[1] .. '{' .. project .. '}:tok:' .. ARGV[2])
if #row == 0 then return false end
return row
"""

TOKEN_SCRIPTS = [
    ("update_token", _UPDATE_TOKEN),
    ("delete_token", _DELETE_TOKEN),
    ("create_token", _CREATE_TOKEN),
    ("token_any_project", _TOKEN_ANY_PROJECT),
]
"""Registered by ``RedisStore.open`` with its own scripts."""


class RedisTokens:
    """The leap token methods of :class:`~switchboard.server.store.redis.RedisStore`
    (a mixin)."""

    if TYPE_CHECKING:
        keys: RedisLayout
        clustered: bool

        async def _run(
            self, script: str, keys: list[str], args: list[Any], *, pipelined: bool = False
        ) -> Any: ...
        def _translate(self) -> contextlib.AbstractAsyncContextManager[None]: ...
        @property
        def redis(self) -> Any: ...

    @staticmethod
    def _token(token_id: str, row: dict[bytes, bytes]) -> Token:
        return Token(
            row[b"project_id"].decode(),
            token_id,
            msgspec.Raw(row[b"state"]),
            row[b"created_at"].decode(),
            text(row.get(b"expires_at")),
        )

    async def create_token(self, token: Token) -> Token:
        keys = [self.keys.token(token.project_id, token.id), self.keys.tokens(token.project_id)]
        lookup = self.keys.token_project(token.id)
        if self.clustered:
            # The lookup first (another slot): a token is never in its project without it.
            async with self._translate():
                await self.redis.set(lookup, token.project_id)
        else:
            keys.insert(0, lookup)
        await self._run(
            "create_token",
            keys,
            [
                token.project_id,
                bytes(token.state),
                token.created_at,
                token.expires_at or "",
                token.id,
                ms(token.created_at),
            ],
        )
        return token

    async def get_token(self, project_id: str, token_id: str) -> Token | None:
        async with self._translate():
            row = await self.redis.hgetall(self.keys.token(project_id, token_id))
        return self._token(token_id, row) if row else None

    async def get_token_any_project(self, token_id: str) -> Token | None:
        if not self.clustered:
            row = await self._run(
                "token_any_project",
                [self.keys.token_project(token_id)],
                [self.keys.prefix, token_id],
                pipelined=True,  # IDENTIFY's: a connect storm's lookups share round trips
            )
            return (
                self._token(token_id, dict(zip(row[::2], row[1::2], strict=True))) if row else None
            )
        async with self._translate():
            project_id = await self.redis.get(self.keys.token_project(token_id))
        return None if project_id is None else await self.get_token(project_id.decode(), token_id)

    async def list_tokens(self, project_id: str) -> list[Token]:
        async with self._translate():
            token_ids = await self.redis.zrange(self.keys.tokens(project_id), 0, -1)
            pipe = self.redis.pipeline(transaction=False)
            for token_id in token_ids:
                pipe.hgetall(self.keys.token(project_id, token_id.decode()))
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
            [self.keys.token(project_id, token_id)],
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
            [
                self.keys.token(project_id, token_id),
                self.keys.token_subscriptions(project_id, token_id),
                self.keys.tokens(project_id),
            ],
            [project_id, token_id, self.keys.subscribers(project_id, "")],
        )
        if not deleted:
            raise NotFound(f"no token {ids.redact(token_id)!r} in this project")
        async with self._translate():
            await self.redis.delete(self.keys.token_project(token_id))
