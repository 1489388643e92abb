"""The connection side of the REST publish's fast path: which bytes it takes from
aiohttp's protocol handler, and how the two share one connection.

A connection is in one of two hands. **The fast path's** while aiohttp's handler is
idle between messages with nothing of a message in its parser: every chunk is read
here first (``api/fast_parse.py``); a complete publish request is answered by
``api/fast_publish.py``, a partial head is kept until it is complete. **aiohttp's**
from the first request the fast path does not take, for certain, onwards: those bytes
and all after them go to aiohttp unchanged, and a :class:`Framer` follows them. The
connection comes back once aiohttp's handler is idle again and the framer says the
bytes it got ended with a whole message; bytes the framer cannot follow (a chunked
body, an upgrade, hence every WebSocket) leave it aiohttp's for good.

Answers stay in request order: while a fast request is being answered, later bytes
wait here (reading pauses past :data:`MAX_WAITING`) and are read after its answer is
written. aiohttp's idle timer is re-armed after each fast answer as aiohttp re-arms it
after each of its own, and does not fire while one is being made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web_protocol

from switchboard.server.api.fast_parse import NEED_MORE, FastRequest, Framer, parse
from switchboard.server.api.fast_publish import FastPublish

MAX_WAITING = 256 * 1024
"""Bytes kept while a fast request is being answered before reading pauses."""


@dataclass(slots=True)
class ConnState:
    """A connection's side of the fast path."""

    buf: bytes = b""
    """Bytes read here and not answered yet from ``pos`` on (a partial head, or requests
    waiting for the answer being made)."""
    pos: int = 0
    framer: Framer | None = None
    """None while the connection is the fast path's; else follows aiohttp's bytes."""
    task: asyncio.Task[None] | None = None
    """The fast request being answered."""


LOST = ConnState(framer=Framer(lost=True))
"""The state of every connection aiohttp keeps for good (never changed)."""

_states: dict[FastPublishHandler, ConnState] = {}
"""Each HTTP connection's state, from its first bytes to its end (a WebSocket's ends
at its upgrade)."""


class FastPublishHandler(web_protocol.RequestHandler):
    """aiohttp's protocol handler, with the REST publish's fast path in front.

    No slot of its own: ``_fast`` is a class attribute (``http_errors.install`` makes a
    class per server), and a connection's state is in ``_states`` only while it is an
    HTTP connection (a WebSocket's leaves at its upgrade): an idle socket
    costs no byte more (bench/memory.py).
    """

    __slots__ = ()
    _fast: FastPublish | None = None

    def data_received(self, data: bytes) -> None:
        fast = self._fast
        if fast is None or not data or self._payload_parser is not None:
            super().data_received(data)
            return
        state = _states.get(self)
        if state is None:
            _states[self] = state = ConnState()
        framer = state.framer
        if framer is not None:
            if not framer.at_boundary or not self._aiohttp_idle():
                self._hand_over(fast, state, framer, data)
                return
            state.framer = None  # aiohttp is between messages: the connection is back
        if state.task is not None:
            state.buf = state.buf[state.pos :] + data
            state.pos = 0
            if len(state.buf) > MAX_WAITING and not self._buffer_paused:
                self._pause_reading_for_buffer()
            return
        buf, pos = (state.buf + data, state.pos) if state.buf else (data, 0)
        state.buf, state.pos = b"", 0
        self._fast_take(fast, state, buf, pos)

    def set_parser(self, parser: Any, data_received_cb: Callable[[], None] | None = None) -> None:
        # A WebSocket from now on: aiohttp's for good, with no state here.
        _states.pop(self, None)
        super().set_parser(parser, data_received_cb)

    def connection_lost(self, exc: BaseException | None) -> None:
        _states.pop(self, None)
        super().connection_lost(exc)

    def _aiohttp_idle(self) -> bool:
        """Whether aiohttp's handler waits for a next message with nothing in hand: its
        loop (``start``) awaits ``_waiter`` only then."""
        waiter = self._waiter
        return (
            waiter is not None
            and not waiter.done()
            and not self._messages
            and self._payload_parser is None
            and not self._upgraded
            and not self._message_tail
            and not self._close
            and not self._force_close
        )

    def _fast_take(self, fast: FastPublish, state: ConnState, buf: bytes, pos: int) -> None:
        """Answer the publish at ``buf[pos:]``, or hand ``buf[pos:]`` to aiohttp."""
        if self._force_close or self._close or self.transport is None:
            return  # aiohttp drops what comes after it decided to close, too
        found: FastRequest | int = NEED_MORE
        if fast.open and not self._paused:  # draining, or the client not reading: aiohttp's
            found = parse(buf, pos, fast.max_body, fast.origin_matters)
            if found is NEED_MORE:
                state.buf = buf[pos:]
                return
        if isinstance(found, int):
            self._hand_over(fast, state, Framer(), buf[pos:])
            return
        # The rest stays where it is (an offset, not a copy per pipelined request).
        state.buf, state.pos = buf, found.end
        self._request_count += 1
        state.task = self._loop.create_task(self._fast_serve(fast, state, found))

    def _hand_over(self, fast: FastPublish, state: ConnState, framer: Framer, data: bytes) -> None:
        """Give ``data`` to aiohttp, following it with ``framer``."""
        framer.feed(data)
        if framer.lost:
            _states[self] = LOST
        else:
            state.framer = framer
        super().data_received(data)

    async def _fast_serve(self, fast: FastPublish, state: ConnState, request: FastRequest) -> None:
        try:
            answer = await fast.answer(request)
        finally:
            state.task = None
        transport = self.transport
        if transport is None or self._force_close or transport.is_closing():
            return  # the client went away; the publish was made (aiohttp's route's too)
        transport.write(answer)
        if request.close:
            self.force_close()  # closes once the answer is written
            return
        self._rearm_idle_timer()
        waiting, pos = state.buf, state.pos
        state.buf, state.pos = b"", 0
        if self._buffer_paused and len(waiting) - pos <= MAX_WAITING:
            self._resume_reading_for_buffer()
        if pos < len(waiting):
            self._fast_take(fast, state, waiting, pos)

    def _rearm_idle_timer(self) -> None:
        """As aiohttp's ``start()`` after each answer: the idle timeout counts from now."""
        loop = self._loop
        close_time = loop.time() + self._keepalive_timeout
        self._next_keepalive_close_time = close_time
        if self._keepalive_handle is None:
            self._keepalive_handle = loop.call_at(close_time, self._process_keepalive)

    def _process_keepalive(self) -> None:
        state = _states.get(self)
        if state is not None and state.task is not None:
            # Busy, as aiohttp's handler is inside a request: the answer re-arms it.
            self._keepalive_handle = None
            return
        super()._process_keepalive()
