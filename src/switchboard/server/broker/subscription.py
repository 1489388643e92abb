"""The broker's subscription to one Redis: a connection that reads pushed events itself.

redis-py's ``PubSub.get_message`` cost the node about 10-12 µs of CPU per event (a task
woken for each, an ``asyncio.timeout`` armed per read, the reply parsed through three
layers): in a broadcast, a quarter of the node's CPU. :class:`Subscription` is a raw
connection of its own (``server/redis_pool/wire.py``): each read goes into a ``hiredis.Reader``
in ``data_received``, and each event it completes goes straight to the broker's handler,
in the order Redis sent them. Subscription confirmations go to the topic bookkeeping.

A backlog (a burst, or a node that fell behind) can arrive as thousands of events in one
read; after :data:`EVENTS_PER_TURN` of them the connection stops reading and hands the
rest on in the next loop turns, so socket writes, timers and every other task run in
between.

The subscription never reconnects by itself: the broker makes a new one and subscribes to
every topic it wants then, in one command (``broker/redis.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.exceptions import ConnectionError as RedisConnectionError

from switchboard.server.redis_pool.wire import RespProtocol, pack_command

log = logging.getLogger("switchboard.broker")

EVENTS_PER_TURN = 256
"""Events handed on before the subscription lets the event loop run other work."""


class Subscription(RespProtocol):
    """One subscription connection (see the module docstring).

    ``on_event``: each message's payload, as bytes; ``on_confirmed``: the channel of each
    ``SUBSCRIBE`` Redis confirmed, prefix included, as bytes.
    """

    def __init__(
        self, on_event: Callable[[bytes], None], on_confirmed: Callable[[bytes], None]
    ) -> None:
        super().__init__()
        self._on_event = on_event
        self._on_confirmed = on_confirmed
        self._loop = asyncio.get_running_loop()
        self._pushing = False
        """Set once the first SUBSCRIBE is sent: from then on every reply is a push."""
        self._paused = False
        self.heard_at = self._loop.time()
        """When this connection last read anything (the broker's heartbeat check)."""

    def subscribe(self, channels: list[str]) -> None:
        """``SUBSCRIBE`` to every channel in one command (confirmed one by one)."""
        self._pushing = True
        self.write(pack_command(("SUBSCRIBE", *channels)))

    def unsubscribe(self, channels: list[str]) -> None:
        self.write(pack_command(("UNSUBSCRIBE", *channels)))

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        self.heard_at = self._loop.time()
        if not self._paused:
            self._hand_on()

    def _hand_on(self) -> None:
        """Hand on what the reader holds, until it is empty or a turn's share is done."""
        while True:
            try:
                self._hand_on_some()
                return
            except RedisConnectionError as exc:
                log.warning("broker subscription refused", extra={"error": str(exc)})
                self.close()
                return
            except Exception:
                # One event's failure is that event's: the ones after it still go on.
                log.exception("a broker event failed on this node")

    def _hand_on_some(self) -> None:
        gets = self.reader.gets
        on_event = self._on_event
        events = 0
        while (reply := gets()) is not False:
            if not self._pushing:
                self.reply(reply)  # the log-in's answers (server/redis_pool/wire.py)
                continue
            if not isinstance(reply, list):
                raise RedisConnectionError(f"the subscription got {reply!r}")
            kind = reply[0]
            if kind == b"message":
                on_event(reply[2])
                events += 1
                if events == EVENTS_PER_TURN:
                    self._pause()
                    return
            elif kind == b"subscribe":
                self._on_confirmed(reply[1])

    def _pause(self) -> None:
        self._paused = True
        if self.transport is not None:
            self.transport.pause_reading()
        self._loop.call_soon(self._resume)

    def _resume(self) -> None:
        self._paused = False
        if self.transport is None:
            return  # lost meanwhile: the broker subscribes anew and says events were missed
        self._hand_on()
        if not self._paused and self.transport is not None:
            self.transport.resume_reading()

    def __repr__(self) -> str:
        return f"Subscription({self.where})"
