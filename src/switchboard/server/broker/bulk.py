"""Many events to Redis in few calls: ``RedisBroker.publish_many`` (a batch's messages).

On one Redis, one script call per :data:`PUBLISH_CHUNK` events, a Lua loop of
``PUBLISH`` in order: redis-py reads one reply per pipelined command, which costs the
node about three times the script's single call (1,000 direct messages: 85 ms of node
CPU as a pipeline, 19 ms as a script, on a busy machine; Redis's own work, about a
millisecond, is the same). On a Redis Cluster a script may publish only to its keys'
slot, so there it is a pipeline of ``SPUBLISH``, which redis-py splits per master.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from switchboard.server.broker.events import BrokerEvent
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
        for event in events:
            pipe.spublish(channel(topic_of(event)), _encoder.encode(event))
        await pipe.execute()
        return
    for start in range(0, len(events), PUBLISH_CHUNK):
        args: list[bytes | str] = []
        for event in events[start : start + PUBLISH_CHUNK]:
            args += (channel(topic_of(event)), _encoder.encode(event))
        await script(args=args)
