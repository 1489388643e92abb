"""Channel history in Redis: one stream per channel, so every node serves the same.

Keys (named in ``store/redis_layout.py``, under the project's tag)::

    {project}:hist:{channel}     hash    size, ttl_s, epoch, top (the last offset given)
    {project}:hstream:{channel}  stream  entry ID ``{offset}-0``; fields t (ms), e, d

The entry ID *is* the offset (Centrifugo's layout), so reading "after offset N" is one
``XRANGE``. An append is one Lua script: ``HINCRBY top``, then ``XADD`` with that ID and
``MAXLEN ~ size`` (approximate: Redis trims whole nodes, so a few more may be kept,
and reads apply the exact bound), then ``XTRIM MINID`` at the first entry young enough
for the TTL, then ``PEXPIRE`` of the stream by the TTL (an idle channel's stream goes
away by itself; its hash keeps the epoch and top). Scripts run one at a time, so
offsets are given in the order appends reach Redis, from whichever node.

Redis's clock (``TIME``) dates entries, so nodes with skewed clocks agree on ages. A
Redis that comes back empty has lost the hash, and with it the channel; a channel
made again starts a new epoch.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import msgspec

from switchboard.exceptions import NotFound, StaleAccess
from switchboard.server.history import (
    HistoryMessage,
    HistoryPage,
    HistoryPolicy,
    StreamPosition,
    new_epoch,
)
from switchboard.server.store.redis_layout import RedisLayout
from switchboard.server.store.redis_streams import STREAM_FUNCTIONS, stream_message

# KEYS: channel hash, history hash, stream. ARGV: size (0 = off), ttl_s, new epoch.
_SET_POLICY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[1] == '0' then redis.call('DEL', KEYS[2], KEYS[3]) return 0 end
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if epoch then
  redis.call('HSET', KEYS[2], 'size', ARGV[1], 'ttl_s', ARGV[2])
  return epoch
end
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[2], 'size', ARGV[1], 'ttl_s', ARGV[2], 'epoch', ARGV[3], 'top', 0)
return ARGV[3]
"""

# append(channel hash, history hash, stream, event, data): -1: no channel; 0: history
# off; {offset, epoch}. One message; a batch's script calls it for each.
APPEND_FUNCTION = (
    STREAM_FUNCTIONS
    + """
local function append(channel, hist, stream, event, data)
local meta = redis.call('HMGET', hist, 'size', 'ttl_s', 'epoch')
if not meta[1] then
  if redis.call('EXISTS', channel) == 0 then return -1 end
  return 0
end
local ttl_ms = tonumber(meta[2]) * 1000
local top = redis.call('HINCRBY', hist, 'top', 1)
local now = now_ms()
redis.call('XADD', stream, 'MAXLEN', '~', meta[1], top .. '-0',
           't', now, 'e', event, 'd', data)
trim_aged(stream, now, ttl_ms)
return {top, meta[3]}
end
"""
)

# KEYS: channel hash, history hash, stream, the project's credential generation. ARGV:
# event, data, the generation the caller's cached lookup holds ('' for none). -2: that
# generation is stale (checked first, nothing written); else as append's.
_APPEND = APPEND_FUNCTION + (
    "if ARGV[3] ~= '' and redis.call('GET', KEYS[4]) ~= ARGV[3] then return -2 end\n"
    "return append(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])\n"
)

# KEYS and ARGV[1..3] as _APPEND's, then the publish command, the topic and the event's
# encoding up to its offset and epoch (the broker's StoreRoute): on success the event,
# completed with them, is published in the same script (one round trip, and offsets in
# publish order). Answers as _APPEND.
_APPEND_PUBLISH = (
    APPEND_FUNCTION
    + """
if ARGV[3] ~= '' and redis.call('GET', KEYS[4]) ~= ARGV[3] then return -2 end
local r = append(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
if r == -1 then return -1 end
local position = ',"offset":null,"epoch":null}'
if r ~= 0 then position = ',"offset":' .. r[1] .. ',"epoch":' .. cjson.encode(r[2]) .. '}' end
redis.call(ARGV[4], ARGV[5], ARGV[6] .. position)
return r
"""
)

# KEYS as above. ARGV: since, limit. -1, 0, or {epoch, top, first, entries}.
_READ = (
    STREAM_FUNCTIONS
    + """
local meta = redis.call('HMGET', KEYS[2], 'size', 'ttl_s', 'epoch', 'top')
if not meta[1] then
  if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
  return 0
end
local top = tonumber(meta[4])
local first, entries = read_kept(KEYS[3], top, tonumber(meta[1]), tonumber(meta[2]) * 1000,
                                 tonumber(ARGV[1]), tonumber(ARGV[2]))
return {meta[3], top, first, entries}
"""
)

_POLICY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local meta = redis.call('HMGET', KEYS[2], 'size', 'ttl_s')
if not meta[1] then return 0 end
return meta
"""

# KEYS as above. ARGV: size, ttl_s, epoch, top, then offset, t, e, d of each message.
_PUT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HSET', KEYS[2], 'size', ARGV[1], 'ttl_s', ARGV[2], 'epoch', ARGV[3], 'top', ARGV[4])
for i = 5, #ARGV, 4 do
  redis.call('XADD', KEYS[3], ARGV[i] .. '-0', 't', ARGV[i + 1], 'e', ARGV[i + 2], 'd', ARGV[i + 3])
end
if #ARGV > 4 then redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[2]) * 1000) end
return 1
"""

HISTORY_SCRIPTS = [
    ("history_set_policy", _SET_POLICY),
    ("history_policy", _POLICY),
    ("history_append", _APPEND),
    ("history_append_publish", _APPEND_PUBLISH),
    ("history_read", _READ),
    ("history_put", _PUT),
]
"""Registered by ``RedisStore.open`` with its own scripts."""


def _not_found(channel_id: str) -> NotFound:
    return NotFound(f"no channel {channel_id!r} in this project")


def _position(result: Any, channel_id: str) -> StreamPosition | None:
    """An append script's answer (``_APPEND``): the position, None, or the refusal."""
    if result == -2:
        raise StaleAccess("the project's tokens changed")
    if result == -1:
        raise _not_found(channel_id)
    if result == 0:
        return None
    return StreamPosition(int(result[0]), bytes(result[1]).decode())


class RedisHistory:
    """The history methods of :class:`~switchboard.server.store.redis.RedisStore`
    (a mixin)."""

    if TYPE_CHECKING:

        async def _run(
            self, script: str, keys: list[str], args: list[Any], *, pipelined: bool = False
        ) -> Any: ...

        keys: RedisLayout

        def _translate(self) -> contextlib.AbstractAsyncContextManager[None]: ...
        @property
        def redis(self) -> Any: ...

    def history_keys(self, project_id: str, channel_id: str) -> list[str]:
        """The channel's hash, then its history hash and stream (deleted with it)."""
        return [
            self.keys.channel(project_id, channel_id),
            self.keys.history(project_id, channel_id),
            self.keys.history_stream(project_id, channel_id),
        ]

    async def set_history_policy(
        self, project_id: str, channel_id: str, policy: HistoryPolicy | None
    ) -> str | None:
        args = [0, 0, ""] if policy is None else [policy.size, policy.ttl_s, new_epoch()]
        result = await self._run(
            "history_set_policy", self.history_keys(project_id, channel_id), args
        )
        if result == -1:
            raise _not_found(channel_id)
        return None if result == 0 else bytes(result).decode()

    async def history_policy(self, project_id: str, channel_id: str) -> HistoryPolicy | None:
        result = await self._run("history_policy", self.history_keys(project_id, channel_id), [])
        if result == -1:
            raise _not_found(channel_id)
        return None if result == 0 else HistoryPolicy(int(result[0]), int(result[1]))

    async def history_policies(
        self, project_id: str, channel_ids: list[str]
    ) -> dict[str, HistoryPolicy]:
        if not channel_ids:
            return {}
        async with self._translate():
            pipe = self.redis.pipeline(transaction=False)
            for channel_id in channel_ids:
                pipe.hmget(self.keys.history(project_id, channel_id), "size", "ttl_s")
            replies = await pipe.execute()
        return {
            channel_id: HistoryPolicy(int(size), int(ttl_s))
            for channel_id, (size, ttl_s) in zip(channel_ids, replies, strict=True)
            if size is not None
        }

    async def append_message(
        self,
        project_id: str,
        channel_id: str,
        event: str,
        data: msgspec.Raw,
        *,
        generation: int | None = None,
    ) -> StreamPosition | None:
        keys = [*self.history_keys(project_id, channel_id), self.keys.generation(project_id)]
        expected = "" if generation is None else str(generation)
        result = await self._run("history_append", keys, [event, bytes(data), expected])
        return _position(result, channel_id)

    async def append_and_publish(
        self,
        project_id: str,
        channel_id: str,
        event: str,
        data: msgspec.Raw,
        *,
        generation: int | None,
        route: tuple[str, str, bytes],
    ) -> StreamPosition | None:
        keys = [*self.history_keys(project_id, channel_id), self.keys.generation(project_id)]
        expected = "" if generation is None else str(generation)
        args = [event, bytes(data), expected, *route]
        result = await self._run("history_append_publish", keys, args, pipelined=True)
        return _position(result, channel_id)

    async def read_history(
        self, project_id: str, channel_id: str, since: int, limit: int
    ) -> HistoryPage | None:
        result = await self._run(
            "history_read", self.history_keys(project_id, channel_id), [since, limit]
        )
        if result == -1:
            raise _not_found(channel_id)
        if result == 0:
            return None
        epoch, top, first, entries = result
        return HistoryPage([stream_message(e) for e in entries], bytes(epoch).decode(), top, first)

    async def put_history(
        self,
        project_id: str,
        channel_id: str,
        policy: HistoryPolicy,
        epoch: str,
        top: int,
        messages: list[HistoryMessage],
    ) -> None:
        args: list[Any] = [policy.size, policy.ttl_s, epoch, top]
        lowest = top - policy.size + 1
        for m in messages:
            if m.offset >= lowest:
                args += [m.offset, m.created_ms, m.event, bytes(m.data)]
        result = await self._run("history_put", self.history_keys(project_id, channel_id), args)
        if result == -1:
            raise _not_found(channel_id)
