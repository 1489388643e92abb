"""Batches in Redis: many appends in one script, token lookups and idempotency keys.

Keys (named in ``store/redis_layout.py``, under the project's tag)::

    {project}:idem:{key}     str  "" while the request is in flight, then its answer
                                  (JSON); expires (PX) with the key's time

A batch's appends are one script per chunk of :data:`APPEND_CHUNK` channels, each
message appended as ``store/redis_history.py`` appends one (scripts run one at a time,
so each chunk is atomic and its offsets are in the batch's order); the chunks go in one
pipeline, one round trip. Every key a script
names belongs to one project, so on a Redis Cluster it stays in the project's slot.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import msgspec
from redis.exceptions import NoScriptError

from switchboard.exceptions import NotFound
from switchboard.server.history import INBOX, StreamPosition
from switchboard.server.store.base import IN_FLIGHT
from switchboard.server.store.redis_history import APPEND_FUNCTION
from switchboard.server.store.redis_layout import RedisLayout

APPEND_CHUNK = 256
"""Channels per script: a script blocks Redis while it runs, so a batch of a thousand
lets other clients in between its chunks (they are pipelined, not one transaction)."""

# KEYS: three per message (channel hash, history hash, stream). ARGV: the number m of
# distinct (event, data) pairs, the pairs, then per message the 1-based index of its
# pair: a broadcast sends its one message once, not once per channel.
_APPEND_MANY = (
    APPEND_FUNCTION
    + """
local m = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS / 3 do
  local pair = tonumber(ARGV[1 + 2 * m + i])
  local k = (i - 1) * 3
  out[i] = append(KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], ARGV[2 * pair], ARGV[2 * pair + 1])
end
return out
"""
)

# KEYS: the keys to claim. ARGV: pending TTL in ms. Per key: false if claimed now,
# else its value ("" in flight, or the kept answer).
_CLAIM = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, '', 'NX', 'PX', ARGV[1]) then
    out[i] = false
  else
    out[i] = redis.call('GET', key) or ''
  end
end
return out
"""

# KEYS[1]: the project's token index (it names the project's slot). ARGV[1]: the start
# of a token hash's key; ARGV[2]: the token IDs, one per line. A string of "1" (the
# token exists) and "0", one per ID. One argument to pack and one reply to parse: a
# pipeline of 1,000 EXISTS was a third of a broadcast's node CPU, their keys packed as
# 1,000 arguments an eighth.
_EXISTING = """
local ids, prefix, out = ARGV[2], ARGV[1], {}
local start, n = 1, 0
while true do
  local stop = string.find(ids, "\\n", start, true)
  n = n + 1
  out[n] = redis.call('EXISTS', prefix .. string.sub(ids, start, (stop or 0) - 1))
  if not stop then break end
  start = stop + 1
end
return table.concat(out)
"""

_ONE = ord("1")

BATCH_SCRIPTS = [
    ("batch_append", _APPEND_MANY),
    ("idempotency_claim", _CLAIM),
    ("tokens_exist", _EXISTING),
]
"""Registered by ``RedisStore.open`` with its own scripts."""


class RedisBatch:
    """The batch methods of :class:`~switchboard.server.store.redis.RedisStore` (a mixin)."""

    if TYPE_CHECKING:

        async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any: ...

        keys: RedisLayout

        def _translate(self) -> contextlib.AbstractAsyncContextManager[None]: ...
        @property
        def redis(self) -> Any: ...
        def history_keys(self, project_id: str, channel_id: str) -> list[str]: ...
        def inbox_keys(self, project_id: str, token_id: str) -> list[str]: ...

        _scripts: dict[str, Any]

    def _idempotency_key(self, project_id: str, key: str) -> str:
        return self.keys.idempotency(project_id, key)

    async def _scripts_in_one_trip(
        self, name: str, calls: list[tuple[list[str], list[Any]]]
    ) -> list[Any]:
        """Run the script ``name`` once per ``(keys, args)``, in order, in one pipeline:
        one round trip, each run atomic. A cluster's pipeline does not load scripts: on
        NOSCRIPT (none of them ran: one project, one slot, one node) it is loaded and the
        pipeline sent again."""
        if not calls:
            return []
        script = self._scripts[name]
        async with self._translate():
            for attempt in range(2):
                pipe = self.redis.pipeline(transaction=False)
                for keys, args in calls:
                    await script(keys=keys, args=args, client=pipe)
                try:
                    return list(await pipe.execute())
                except NoScriptError:
                    if attempt:
                        raise
                    await self.redis.script_load(script.script)
        raise AssertionError("unreachable")

    async def append_messages(
        self, project_id: str, messages: list[tuple[str, str, msgspec.Raw]]
    ) -> list[StreamPosition | NotFound | None]:
        calls: list[tuple[list[str], list[Any]]] = []
        for start in range(0, len(messages), APPEND_CHUNK):
            pairs: dict[tuple[str, int], int] = {}
            args: list[Any] = [0]
            keys: list[str] = []
            indexes: list[int] = []
            for channel_id, event, data in messages[start : start + APPEND_CHUNK]:
                keys += self.history_keys(project_id, channel_id)
                # The same bytes object is one pair (a broadcast's message).
                index = pairs.setdefault((event, id(data)), len(pairs) + 1)
                if index == len(args) // 2 + 1:
                    args += [event, bytes(data)]
                indexes.append(index)
            args[0] = len(pairs)
            calls.append((keys, args + indexes))
        results: list[StreamPosition | NotFound | None] = []
        replies = [
            r for chunk in await self._scripts_in_one_trip("batch_append", calls) for r in chunk
        ]
        for (channel_id, _, _), reply in zip(messages, replies, strict=True):
            if reply == -1:
                results.append(NotFound(f"no channel {channel_id!r} in this project"))
            elif reply == 0:
                results.append(None)
            else:
                results.append(StreamPosition(int(reply[0]), bytes(reply[1]).decode()))
        return results

    async def append_inboxes(
        self, project_id: str, messages: list[tuple[str, str, msgspec.Raw]]
    ) -> list[StreamPosition | None]:
        # The inbox's own script for each (store/redis_inbox.py).
        calls = [
            (self.inbox_keys(project_id, token_id), [INBOX, event, bytes(data)])
            for token_id, event, data in messages
        ]
        replies = await self._scripts_in_one_trip("inbox_append", calls)
        return [
            None if r == 0 else StreamPosition(int(r[0]), bytes(r[1]).decode()) for r in replies
        ]

    async def project_token_ids(self, project_id: str, token_ids: list[str]) -> set[str]:
        if not token_ids:
            return set()
        # A token lives under its project: there or nowhere.
        if any("\n" in t for t in token_ids):
            # Not a token ID any Switchboard makes; asked one by one rather than split.
            return {t for t in token_ids if await self._token_exists(project_id, t)}
        args = [self.keys.token(project_id, ""), "\n".join(token_ids)]
        found = bytes(await self._run("tokens_exist", [self.keys.tokens(project_id)], args))
        return {t for t, flag in zip(token_ids, found, strict=True) if flag == _ONE}

    async def _token_exists(self, project_id: str, token_id: str) -> bool:
        async with self._translate():
            return bool(await self.redis.exists(self.keys.token(project_id, token_id)))

    async def claim_idempotency_keys(
        self, project_id: str, keys: list[str], pending_ttl_s: float
    ) -> list[bytes | None]:
        if not keys:
            return []
        names = [self._idempotency_key(project_id, key) for key in keys]
        replies = await self._run("idempotency_claim", names, [int(pending_ttl_s * 1000)])
        return [None if r is None else (bytes(r) if r else IN_FLIGHT) for r in replies]

    async def finish_idempotency_keys(
        self, project_id: str, answers: dict[str, bytes | None], ttl_s: float
    ) -> None:
        if not answers:
            return
        async with self._translate():
            pipe = self.redis.pipeline(transaction=False)
            for key, answer in answers.items():
                name = self._idempotency_key(project_id, key)
                if answer is None:
                    pipe.delete(name)
                else:
                    pipe.set(name, answer, px=int(ttl_s * 1000))
            await pipe.execute()
