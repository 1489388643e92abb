"""Many events to Redis in few calls: ``RedisBroker.publish_many`` (a batch's messages).

On one Redis, one script call per :data:`PUBLISH_CHUNK` events, a Lua loop of
``PUBLISH`` in order: redis-py reads one reply per pipelined command, which costs the
node about three times the script's single call (1,000 direct messages: 85 ms of node
CPU as a pipeline, 19 ms as a script, on a busy machine; Redis's own work, about a
millisecond, is the same). On a Redis Cluster a script may publish only to its keys'
slot, so there it is a pipeline of ``SPUBLISH``, which redis-py splits per master.

A :class:`~switchboard.server.broker.events.DirectMessages` (a broadcast's tokens) goes
as it is, one event on the shared topic, on one Redis; on a Redis Cluster it becomes a
``DirectMessage`` per token on the token's own shard channel (:func:`per_token`): the
shared topic's partition may sit on another master than a token's, read by another
reader, and then nothing would order it after a direct message sent to the token alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from switchboard.server.broker.events import BrokerEvent, DirectMessage, DirectMessages
from switchboard.server.broker.topics import topic_of

PUBLISH_CHUNK = 1000
"""Events one script call publishes (Redis runs nothing else meanwhile: about a
millisecond for a thousand)."""

_PUBLISH_MANY = "for i = 1, #ARGV, 2 do redis.call('PUBLISH', ARGV[i], ARGV[i + 1]) end return 1"
"""ARGV: channel, payload, channel, payload … (a script's publishes keep their order)."""

_encoder = msgspec.json.Encoder()


def register(redis: Any) -> Any:
    """The publishing script, registered with the broker's client."""
    return redis.register_script(_PUBLISH_MANY)


async def publish_all(
    redis: Any,
    script: Any,
    events: list[BrokerEvent],
    channel: Callable[[str], str],
    *,
    sharded: bool,
) -> None:
    """Publish ``events`` in order, each on ``channel(its topic)``. Raises what redis-py
    raises (the broker turns a fault into Unavailable)."""
    if not events:
        return
    if sharded:
        pipe = redis.pipeline(transaction=False)
        for event in per_token(events):
            pipe.spublish(channel(topic_of(event)), _encoder.encode(event))
        await pipe.execute()
        return
    for start in range(0, len(events), PUBLISH_CHUNK):
        args: list[bytes | str] = []
        for event in events[start : start + PUBLISH_CHUNK]:
            args += (channel(topic_of(event)), _encoder.encode(event))
        await script(args=args)


def per_token(events: list[BrokerEvent]) -> list[BrokerEvent]:
    """``events`` with each :class:`DirectMessages` spelled out as one
    :class:`DirectMessage` per token, in order (a Redis Cluster's route)."""
    if not any(isinstance(event, DirectMessages) for event in events):
        return events
    out: list[BrokerEvent] = []
    for event in events:
        if not isinstance(event, DirectMessages):
            out.append(event)
            continue
        offsets, epochs = event.offsets, event.epochs
        for i, token_id in enumerate(event.token_ids):
            out.append(
                DirectMessage(
                    event.project_id,
                    token_id,
                    event.event,
                    event.data,
                    offset=None if offsets is None else offsets[i],
                    epoch=None if epochs is None else epochs[i],
                )
            )
    return out
