"""Where webhook events wait for a sender: in this process, or in a Redis stream.

Both turn this node's *local* changes of occupancy (a token's first or last connection
here, a channel's first or last subscriber here) into the cluster's events:

- :class:`LocalQueue` (one node, the embedded store): a local change is the change, so
  it becomes an event at once; events wait in a bounded deque and are lost if the
  process stops before they are sent.
- :class:`RedisQueue` (a cluster): a script keeps, per project and token or channel,
  the total over nodes and this node's part, in one step; the node whose change takes
  a total from 0 to 1 (or 1 to 0) adds the event to the stream in the same script, so
  each event is made once, whichever nodes see the connections. Every node reads the
  stream through one consumer group, so each event goes to one sender. A node that
  dies keeps its part of the totals until its presence key expires (15 s); then any
  node's reaper script takes the part away and makes the offline and vacated events.
  An event a dead node was sending is claimed by another node after ``claim_after_s``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
from redis import exceptions as redis_errors

from switchboard.server.aio import cancel_and_wait, wait_event
from switchboard.server.broker.redis_presence import node_key
from switchboard.server.redis_pool import is_cluster_url, open_client
from switchboard.server.webhooks.config import EventType
from switchboard.server.webhooks.events import (
    WebhookEvent,
    channel_data,
    new_event_id,
    token_data,
)

log = logging.getLogger("switchboard.webhooks")

_FAULTS = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)


@dataclass(frozen=True, slots=True)
class Change:
    """One local change of occupancy: ``kind`` ``t`` (token) or ``c`` (channel)."""

    project_id: str
    kind: str
    subject: str
    delta: int

    def event_type(self) -> EventType:
        if self.kind == "t":
            return EventType.TOKEN_ONLINE if self.delta > 0 else EventType.TOKEN_OFFLINE
        return EventType.CHANNEL_OCCUPIED if self.delta > 0 else EventType.CHANNEL_VACATED

    def data(self) -> msgspec.Raw:
        return token_data(self.subject) if self.kind == "t" else channel_data(self.subject)


@dataclass(frozen=True, slots=True)
class Queued:
    """An event taken from the queue, and what acknowledges it."""

    event: WebhookEvent
    receipt: str | None = None


class EventQueue(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def apply(self, changes: list[Change]) -> None:
        """Turn local changes into the cluster's events (see the module docstring)."""

    async def put(self, events: list[WebhookEvent]) -> None: ...
    async def take(self) -> list[Queued]:
        """Wait for events (up to about a second; may return none)."""

    async def done(self, item: Queued) -> None:
        """The event was sent or given up on: it is not to be sent again."""

    def pending(self) -> int: ...


def now_ms() -> int:
    return int(time.time() * 1000)


class LocalQueue:
    """See the module docstring."""

    def __init__(self, max_events: int = 100_000) -> None:
        self._events: collections.deque[WebhookEvent] = collections.deque()
        self._ready = asyncio.Event()
        self.max_events = max_events
        self.dropped = 0

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def apply(self, changes: list[Change]) -> None:
        await self.put(
            [
                WebhookEvent(new_event_id(), c.event_type(), c.project_id, now_ms(), c.data())
                for c in changes
            ]
        )

    async def put(self, events: list[WebhookEvent]) -> None:
        for event in events:
            if len(self._events) >= self.max_events:
                self.dropped += 1
                continue
            self._events.append(event)
        if self._events:
            self._ready.set()

    async def take(self) -> list[Queued]:
        await wait_event(self._ready, 1.0)
        taken = [Queued(e) for e in self._events]
        self._events.clear()
        self._ready.clear()
        return taken

    async def done(self, item: Queued) -> None:
        pass

    def pending(self) -> int:
        return len(self._events)


# KEYS: totals, this node's part, stream, nodes set.
# ARGV: node, field, delta, type, project, data, maxlen.
_APPLY = """
local mine = redis.call('HINCRBY', KEYS[2], ARGV[2], ARGV[3])
if mine <= 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
if mine < 0 then return 0 end
redis.call('SADD', KEYS[4], ARGV[1])
local total = redis.call('HINCRBY', KEYS[1], ARGV[2], ARGV[3])
if total <= 0 then redis.call('HDEL', KEYS[1], ARGV[2]) end
local d = tonumber(ARGV[3])
if (d > 0 and total == 1) or (d < 0 and total == 0) then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*',
             't', ARGV[4], 'p', ARGV[5], 'd', ARGV[6])
  return 1
end
return 0
"""

# KEYS: totals, the dead node's part, stream, nodes set, [the dead node's presence key:
# on one Redis; a cluster checks it just before, on its own slot].
# ARGV: node, maxlen. IDs are of [A-Za-z0-9_.:@-] (ids.py), so they need no escaping.
_REAP = """
if KEYS[5] and redis.call('EXISTS', KEYS[5]) == 1 then return -1 end
local part = redis.call('HGETALL', KEYS[2])
local made = 0
for i = 1, #part, 2 do
  local field = part[i]
  local total = redis.call('HINCRBY', KEYS[1], field, -tonumber(part[i + 1]))
  if total <= 0 then
    redis.call('HDEL', KEYS[1], field)
    local project, kind, id = string.match(field, '^([^|]+)|(%a)|(.+)$')
    local t, d
    if kind == 't' then t = 'token.offline' d = '{"token_id":"' .. id .. '"}'
    else t = 'channel.vacated' d = '{"channel_id":"' .. id .. '"}' end
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 't', t, 'p', project, 'd', d)
    made = made + 1
  end
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[4], ARGV[1])
return made
"""

GROUP = "senders"


class RedisQueue:
    """See the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        node_id: str,
        claim_after_s: float,
        reap_every_s: float = 1.0,
        max_events: int = 100_000,
        timeout: float = 2.0,
    ) -> None:
        self.url = url
        self.node_id = node_id
        self.claim_after_s = claim_after_s
        self.reap_every_s = reap_every_s
        self.max_events = max_events
        self.timeout = timeout
        self.prefix = prefix
        # One hash tag for every key of the queue: its scripts stay on one slot of a
        # Redis Cluster.
        self.stream = self._k("{webhooks}", "events")
        self._totals = self._k("{webhooks}", "occupancy")
        self._nodes = self._k("{webhooks}", "nodes")
        self._clustered = is_cluster_url(url)
        self._redis: Any = None
        self._scripts: dict[str, Any] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._next_claim = 0.0
        self.reaped = 0

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _part(self, node: str) -> str:
        return self._k("{webhooks}", "node", node)

    async def start(self) -> None:
        self._redis = open_client(self.url, timeout=self.timeout)
        self._scripts = {
            "apply": self._redis.register_script(_APPLY),
            "reap": self._redis.register_script(_REAP),
        }
        await self._ensure_group()
        self._tasks = [asyncio.create_task(self._reap_forever())]

    async def _ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis_errors.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def apply(self, changes: list[Change]) -> None:
        # On a cluster a script is not pipelined: a master that lacks it (promoted,
        # or new) answers NOSCRIPT, which only a script called alone gets past.
        pipe = self._redis if self._clustered else self._redis.pipeline(transaction=False)
        keys = [self._totals, self._part(self.node_id), self.stream, self._nodes]
        for c in changes:
            field = f"{c.project_id}|{c.kind}|{c.subject}"
            args = [
                self.node_id,
                field,
                c.delta,
                c.event_type().value,
                c.project_id,
                bytes(c.data()),
                self.max_events,
            ]
            await self._scripts["apply"](keys=keys, args=args, client=pipe)
        if not self._clustered:
            await pipe.execute()

    async def put(self, events: list[WebhookEvent]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for event in events:
            fields = {"t": event.type.value, "p": event.project_id, "d": bytes(event.data)}
            pipe.xadd(self.stream, fields, maxlen=self.max_events, approximate=True)
        await pipe.execute()

    async def take(self) -> list[Queued]:
        loop_time = asyncio.get_running_loop().time()
        entries: list[Any] = []
        if loop_time >= self._next_claim:
            # Events another node took and never finished (it died mid-delivery).
            self._next_claim = loop_time + max(1.0, self.claim_after_s / 4)
            reply = await self._redis.xautoclaim(
                self.stream,
                GROUP,
                self.node_id,
                min_idle_time=int(self.claim_after_s * 1000),
                start_id="0-0",
                count=100,
            )
            entries += reply[1]
        try:
            reply = await self._redis.xreadgroup(
                GROUP, self.node_id, {self.stream: ">"}, count=100, block=1000
            )
        except redis_errors.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self._ensure_group()  # Redis came back empty
            return []
        for _stream, stream_entries in reply or []:
            entries += stream_entries
        return [item for item in map(self._queued, entries) if item is not None]

    @staticmethod
    def _queued(entry: Any) -> Queued | None:
        entry_id, fields = entry
        if not fields:  # deleted while pending
            return None
        entry_id = entry_id.decode()
        try:
            event = WebhookEvent(
                "evt_" + entry_id.replace("-", "_"),
                EventType(fields[b"t"].decode()),
                fields[b"p"].decode(),
                int(entry_id.split("-", 1)[0]),
                msgspec.Raw(fields[b"d"]),
            )
        except (KeyError, ValueError):
            log.warning("unreadable webhook event dropped", extra={"entry": entry_id})
            return None
        return Queued(event, entry_id)

    async def done(self, item: Queued) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.xack(self.stream, GROUP, item.receipt)
        pipe.xdel(self.stream, item.receipt)
        await pipe.execute()

    def pending(self) -> int:
        return 0  # in Redis, shared by the cluster; XLEN would cost a round trip

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.reap_every_s)
            try:
                await self.reap()
            except _FAULTS as exc:
                log.debug("webhook reaper: Redis unreachable", extra={"error": str(exc)})

    async def reap(self) -> int:
        """Take the parts of dead nodes out of the totals; return the events made."""
        nodes = [n.decode() for n in await self._redis.smembers(self._nodes)]
        made = 0
        for node in nodes:
            if node == self.node_id:
                continue
            keys = [self._totals, self._part(node), self.stream, self._nodes]
            alive = node_key(self.prefix, node)  # the broker's (broker/redis_presence.py)
            if not self._clustered:
                keys.append(alive)  # checked in the script
            elif await self._redis.exists(alive):
                continue  # (on another slot: checked just before)
            result = await self._scripts["reap"](keys=keys, args=[node, self.max_events])
            if result >= 0:
                made += result
                self.reaped += 1
                log.info("webhook occupancy of a dead node reaped", extra={"node": node})
        return made
