"""Channels and subscriptions in Redis (keys in ``store/redis_layout.py``'s
docstring).

A channel is indexed twice per project, by creation time and by ID, for the two sort
orders of a page. A subscription is two sorted-set members, one under the channel and
one under the token, written and removed together by one script; deleting a channel or
a token removes its side and the other's in the same script.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

import msgspec
from redis import exceptions as redis_errors

from switchboard.exceptions import Conflict, NotFound, PayloadTooLarge
from switchboard.server import ids
from switchboard.server.models import Channel, ChannelType, Page, Token
from switchboard.server.store.redis_fields import ms
from switchboard.server.store.redis_layout import RedisLayout

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

# A token's channels in one round trip (IDENTIFY on one Redis; a cluster's scripts may
# name only the keys they are given, so there they are read one by one). KEYS: the
# token's subscriptions. ARGV: a channel's key up to its ID. Each channel's ID, then its
# hash (empty if the channel is gone).
_TOKEN_CHANNELS = """
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGETALL', ARGV[1] .. id)
end
return out
"""

CHANNEL_SCRIPTS = [
    ("token_channels", _TOKEN_CHANNELS),
    ("create_channel", _CREATE_CHANNEL),
    ("delete_channel", _DELETE_CHANNEL),
    ("set_state", _SET_STATE),
    ("add_subscription", _ADD_SUBSCRIPTION),
    ("remove_subscription", _REMOVE_SUBSCRIPTION),
]
"""Registered by ``RedisStore.open`` with its own scripts."""


class RedisChannels:
    """The channel, token and subscription methods of
    :class:`~switchboard.server.store.redis.RedisStore` (a mixin)."""

    if TYPE_CHECKING:
        keys: RedisLayout
        clustered: bool

        async def _run(
            self, script: str, keys: list[str], args: list[Any], *, pipelined: bool = False
        ) -> Any: ...
        def _translate(self) -> contextlib.AbstractAsyncContextManager[None]: ...
        @property
        def redis(self) -> Any: ...
        def history_keys(self, project_id: str, channel_id: str) -> list[str]: ...
        async def get_token(self, project_id: str, token_id: str) -> Token | None: ...

    # Channels.

    def _channel_keys(self, project_id: str, channel_id: str) -> list[str]:
        return [
            self.keys.channel(project_id, channel_id),
            self.keys.channels(project_id),
            self.keys.channels_by_id(project_id),
            self.keys.subscribers(project_id, channel_id),
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
                ms(channel.created_at),
            ],
        )
        if not created:
            raise Conflict(f"channel {channel.id!r} exists already")
        return channel

    async def get_channel(self, project_id: str, channel_id: str) -> Channel | None:
        async with self._translate():
            row = await self.redis.hgetall(self.keys.channel(project_id, channel_id))
        return self._channel(project_id, channel_id, row) if row else None

    async def channel_exists(self, project_id: str, channel_id: str) -> bool:
        async with self._translate():
            return bool(await self.redis.exists(self.keys.channel(project_id, channel_id)))

    async def list_channels(
        self, project_id: str, *, offset: int, limit: int, sort_by: str, descending: bool
    ) -> Page:
        index = (
            self.keys.channels_by_id(project_id)
            if sort_by == "id"
            else self.keys.channels(project_id)
        )
        async with self._translate():
            total = await self.redis.zcard(index)
            channel_ids = await self.redis.zrange(
                index, offset, offset + limit - 1, desc=descending
            )
            pipe = self.redis.pipeline(transaction=False)
            for channel_id in channel_ids:
                pipe.hgetall(self.keys.channel(project_id, channel_id.decode()))
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
            [channel_id, self.keys.token_subscriptions(project_id, "")],
        )
        if tokens is None:
            raise NotFound(f"no channel {channel_id!r} in this project")
        return [t.decode() for t in tokens]

    async def set_channel_state(self, project_id: str, channel_id: str, state: msgspec.Raw) -> None:
        if not await self._run(
            "set_state", [self.keys.channel(project_id, channel_id)], [bytes(state)]
        ):
            raise NotFound(f"no channel {channel_id!r} in this project")

    async def patch_channel_state(
        self, project_id: str, channel_id: str, partial: dict[str, Any], max_bytes: int
    ) -> msgspec.Raw:
        key = self.keys.channel(project_id, channel_id)
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

    # Subscriptions.

    async def add_subscription(self, project_id: str, channel_id: str, token_id: str) -> bool:
        result = await self._run(
            "add_subscription",
            [
                self.keys.channel(project_id, channel_id),
                self.keys.token(project_id, token_id),
                self.keys.subscribers(project_id, channel_id),
                self.keys.token_subscriptions(project_id, token_id),
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
                [
                    self.keys.subscribers(project_id, channel_id),
                    self.keys.token_subscriptions(project_id, token_id),
                ],
                [channel_id, token_id],
            )
        )

    async def is_subscribed(self, project_id: str, channel_id: str, token_id: str) -> bool:
        async with self._translate():
            score = await self.redis.zscore(self.keys.subscribers(project_id, channel_id), token_id)
        return score is not None

    async def channel_tokens(self, project_id: str, channel_id: str) -> list[Token]:
        async with self._translate():
            token_ids = await self.redis.zrange(
                self.keys.subscribers(project_id, channel_id), 0, -1
            )
        found = [await self.get_token(project_id, t.decode()) for t in token_ids]
        return [t for t in found if t is not None]

    async def token_channels(self, project_id: str, token_id: str) -> list[Channel]:
        if not self.clustered:
            reply = await self._run(
                "token_channels",
                [self.keys.token_subscriptions(project_id, token_id)],
                [self.keys.channel(project_id, "")],
                pipelined=True,
            )
            rows = (
                (bytes(c).decode(), dict(zip(row[::2], row[1::2], strict=True)))
                for c, row in zip(reply[::2], reply[1::2], strict=True)
            )
            return [self._channel(project_id, c, row) for c, row in rows if row]
        async with self._translate():
            channel_ids = await self.redis.zrange(
                self.keys.token_subscriptions(project_id, token_id), 0, -1
            )
        found = [await self.get_channel(project_id, c.decode()) for c in channel_ids]
        return [c for c in found if c is not None]
