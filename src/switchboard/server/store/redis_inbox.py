"""Token inboxes in Redis: one stream per token that got a direct message.

Keys (named in ``store/redis_layout.py``, under the project's tag, so that a token's
inbox sits with its project's settings)::

    {project}:inbox:{token}   hash    epoch, top (the last offset given)
    {project}:ibox:{token}    stream  entry ID ``{offset}-0``; fields t (ms), e, d

Laid out as a channel's history (``store/redis_history.py``). An append is one Lua
script that reads the project's ``inbox`` setting (``{project}:settings``, JSON: size,
ttl_s, epoch) and, if it is on, bumps the top (starting again at 1 when the inbox was
written under another epoch), ``XADD``s with ``MAXLEN ~ size``, trims what aged out and
sets the stream's TTL. The hash has no TTL: its top must outlive an idle stream, or an
offset would be given twice in one epoch. A deleted token's keys are deleted after it
(:meth:`RedisInbox.drop_inbox`).

The token's own record (``{project}:tok:{token}``) is not read here, callers check the
token first; but for the REST route's direct message on one Redis, whose one script
checks the caller's credential generation and the token, appends and publishes
(:meth:`RedisInbox.append_inbox_and_publish`).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import msgspec

from switchboard.exceptions import NotFound, StaleAccess
from switchboard.server import ids
from switchboard.server.history import INBOX, HistoryMessage, HistoryPage, StreamPosition
from switchboard.server.store.redis_layout import RedisLayout
from switchboard.server.store.redis_streams import STREAM_FUNCTIONS, stream_message

_HELPERS = (
    STREAM_FUNCTIONS
    + """
local function setting()
  local raw = redis.call('HGET', KEYS[1], ARGV[1])
  if not raw then return nil end
  local s = cjson.decode(raw)
  return {size = string.format('%d', s.size), ttl_ms = tonumber(s.ttl_s) * 1000,
          epoch = s.epoch}
end
"""
)

_APPEND_FUNCTION = (
    _HELPERS
    + """
local function append(event, data)
  local s = setting()
  if s == nil then return 0 end
  local top
  if redis.call('HGET', KEYS[2], 'epoch') ~= s.epoch then
    redis.call('DEL', KEYS[3])
    redis.call('HSET', KEYS[2], 'epoch', s.epoch, 'top', 1)
    top = 1
  else
    top = redis.call('HINCRBY', KEYS[2], 'top', 1)
  end
  local now = now_ms()
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', s.size, top .. '-0', 't', now, 'e', event, 'd', data)
  trim_aged(KEYS[3], now, s.ttl_ms)
  return {top, s.epoch}
end
"""
)

# KEYS: settings hash, inbox hash, stream. ARGV: setting name, event, data.
# 0: the inbox is off; else {offset, epoch}.
_APPEND = _APPEND_FUNCTION + "return append(ARGV[2], ARGV[3])\n"

# A direct message in one round trip (the REST route on one Redis). KEYS as _APPEND's,
# then the token's hash and the project's credential generation. ARGV as _APPEND's, then
# the generation the caller's cached lookup holds ('' for none), the publish command, the
# topic and the event's encoding up to its offset and epoch (the broker's StoreRoute).
# -2: that generation is stale; -1: no such token (both checked first, nothing written);
# else as _APPEND's, and the event, completed with its position, is published.
_APPEND_PUBLISH = (
    _APPEND_FUNCTION
    + """
if ARGV[4] ~= '' and redis.call('GET', KEYS[5]) ~= ARGV[4] then return -2 end
if redis.call('EXISTS', KEYS[4]) == 0 then return -1 end
local r = append(ARGV[2], ARGV[3])
local position = ',"offset":null,"epoch":null}'
if r ~= 0 then position = ',"offset":' .. r[1] .. ',"epoch":' .. cjson.encode(r[2]) .. '}' end
redis.call(ARGV[5], ARGV[6], ARGV[7] .. position)
return r
"""
)

# KEYS as above. ARGV: setting name, since, limit. 0: off; {epoch, top, first, entries}.
_READ = (
    _HELPERS
    + """
local s = setting()
if s == nil then return 0 end
local meta = redis.call('HMGET', KEYS[2], 'epoch', 'top')
if meta[1] ~= s.epoch then return {s.epoch, 0, 1, {}} end
local top = tonumber(meta[2])
local first, entries = read_kept(KEYS[3], top, tonumber(s.size), s.ttl_ms,
                                 tonumber(ARGV[2]), tonumber(ARGV[3]))
return {s.epoch, top, first, entries}
"""
)

# KEYS as above. ARGV: setting name, epoch, top, then offset, t, e, d of each message.
_PUT = (
    _HELPERS
    + """
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HSET', KEYS[2], 'epoch', ARGV[2], 'top', ARGV[3])
for i = 4, #ARGV, 4 do
  redis.call('XADD', KEYS[3], ARGV[i] .. '-0', 't', ARGV[i + 1], 'e', ARGV[i + 2], 'd', ARGV[i + 3])
end
local s = setting()
if #ARGV > 3 and s ~= nil then redis.call('PEXPIRE', KEYS[3], s.ttl_ms) end
return 1
"""
)

INBOX_SCRIPTS = [
    ("inbox_append", _APPEND),
    ("inbox_append_publish", _APPEND_PUBLISH),
    ("inbox_read", _READ),
    ("inbox_put", _PUT),
]
"""Registered by ``RedisStore.open`` with its own scripts."""


class RedisInbox:
    """The inbox methods of :class:`~switchboard.server.store.redis.RedisStore` (a mixin)."""

    if TYPE_CHECKING:

        async def _run(
            self, script: str, keys: list[str], args: list[Any], *, pipelined: bool = False
        ) -> Any: ...

        keys: RedisLayout

        def _translate(self) -> contextlib.AbstractAsyncContextManager[None]: ...
        @property
        def redis(self) -> Any: ...

    def inbox_keys(self, project_id: str, token_id: str) -> list[str]:
        """The project's settings hash, then the token's inbox hash and stream."""
        return [
            self.keys.settings(project_id),
            self.keys.inbox(project_id, token_id),
            self.keys.inbox_stream(project_id, token_id),
        ]

    async def append_inbox(
        self, project_id: str, token_id: str, event: str, data: msgspec.Raw
    ) -> StreamPosition | None:
        result = await self._run(
            "inbox_append", self.inbox_keys(project_id, token_id), [INBOX, event, bytes(data)]
        )
        if result == 0:
            return None
        return StreamPosition(int(result[0]), bytes(result[1]).decode())

    async def append_inbox_and_publish(
        self,
        project_id: str,
        token_id: str,
        event: str,
        data: msgspec.Raw,
        *,
        generation: int | None,
        route: tuple[str, str, bytes],
    ) -> StreamPosition | None:
        keys = [
            *self.inbox_keys(project_id, token_id),
            self.keys.token(project_id, token_id),
            self.keys.generation(project_id),
        ]
        expected = "" if generation is None else str(generation)
        args = [INBOX, event, bytes(data), expected, *route]
        result = await self._run("inbox_append_publish", keys, args, pipelined=True)
        if result == -2:
            raise StaleAccess("the project's tokens changed")
        if result == -1:
            raise NotFound(f"no token {ids.redact(token_id)!r} in this project")
        if result == 0:
            return None
        return StreamPosition(int(result[0]), bytes(result[1]).decode())

    async def read_inbox(
        self, project_id: str, token_id: str, since: int, limit: int
    ) -> HistoryPage | None:
        result = await self._run(
            "inbox_read", self.inbox_keys(project_id, token_id), [INBOX, since, limit]
        )
        if result == 0:
            return None
        epoch, top, first, entries = result
        return HistoryPage([stream_message(e) for e in entries], bytes(epoch).decode(), top, first)

    async def put_inbox(
        self,
        project_id: str,
        token_id: str,
        epoch: str,
        top: int,
        messages: list[HistoryMessage],
    ) -> None:
        args: list[Any] = [INBOX, epoch, top]
        for m in messages:
            args += [m.offset, m.created_ms, m.event, bytes(m.data)]
        await self._run("inbox_put", self.inbox_keys(project_id, token_id), args)

    async def drop_inbox(self, project_id: str, token_id: str) -> None:
        async with self._translate():
            await self.redis.delete(*self.inbox_keys(project_id, token_id)[1:])
