"""`SocketConnection`: one Leap socket's place in the hub, with its close and expiry.

The gateway (``edge/gateway.py``) makes one per socket; the hub writes to it.
Its expiry timers live in one object made only when the token expires or the client
asked for an expiry notice, so an ordinary connection carries no timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from switchboard.server.clock import parse_iso
from switchboard.server.fanout.connection import Connection
from switchboard.server.fanout.hub import Hub
from switchboard.server.protocol import frames
from switchboard.server.protocol.frames import CloseCode
from switchboard.server.protocol.session import (
    LeapSession,
    SessionState,
)
from switchboard.server.service import Identity

log = logging.getLogger("switchboard.gateway")

_cid_counter = itertools.count(1)
_cid_prefix = secrets.token_hex(3)


def _new_cid() -> str:
    return f"{_cid_prefix}-{next(_cid_counter)}"


class _Expiry:
    """A connection's token expiry: the 4001 at the moment it passes, and the
    ``TOKEN_EXPIRING`` notice before it if the client asked for one (Switchboard's).

    Made only for a connection whose token expires or that asked for a notice, so an
    idle connection pays one empty slot for it.
    """

    __slots__ = ("close_timer", "notice_s", "notice_timer")

    def __init__(self, notice_s: float | None) -> None:
        self.notice_s = notice_s
        self.close_timer: asyncio.TimerHandle | None = None
        self.notice_timer: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        for timer in (self.close_timer, self.notice_timer):
            if timer is not None:
                timer.cancel()
        self.close_timer = self.notice_timer = None


class SocketConnection(Connection):
    """A hub connection that knows its socket, so it can close and expire."""

    __slots__ = ("_close_task", "_expiry", "hub", "identity", "session", "ws")

    def __init__(
        self,
        hub: Hub,
        ws: web.WebSocketResponse,
        session: LeapSession,
        transport: Any,
        compressed: bool,
    ) -> None:
        super().__init__(
            hub.writer,
            transport,
            cid=_new_cid(),
            project_id="",
            token_id=None,
            scope="noauth",
            compressed=compressed,
        )
        self.hub = hub
        self.ws = ws
        self.session = session
        self.identity: Identity | None = None
        self._expiry: _Expiry | None = None
        self._close_task: asyncio.Task[None] | None = None

    def flush(self) -> None:
        """Write what the session queued, then close if it decided to."""
        for payload in self.session.data_to_send():
            self.send_payload(payload)
        if self.session.state is SessionState.CLOSED and not self.closing:
            assert self.session.close_code is not None
            self.close(self.session.close_code, self.session.close_reason)

    def close(self, code: int, reason: str) -> None:
        if self.closing:
            return
        # What was queued before the close goes out ahead of the close frame. The write
        # itself may find a slow consumer and close with 4000 instead.
        self.write_queued()
        if self.closing:
            return
        self.closing = True
        self.hub.close_codes[code] += 1
        self.session.close(code, reason)
        self.hub.detach(self)
        self.cancel_expiry()
        log.info("connection closing", extra={"cid": self.cid, "code": code, "reason": reason})
        self._close_task = asyncio.get_running_loop().create_task(self._close_socket(code, reason))

    async def _close_socket(self, code: int, reason: str) -> None:
        transport = self.transport
        # A peer that never reads never answers the close frame either: cut it off
        # after a grace period instead of holding its buffer forever.
        asyncio.get_running_loop().call_later(_CLOSE_GRACE_S, transport.abort)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.ws.close(code=code, message=reason.encode()[:120], drain=False),
                _CLOSE_GRACE_S,
            )

    async def wait_closed(self) -> None:
        if self._close_task is not None:
            await self._close_task

    def want_expiry_notice(self, notice_s: float) -> None:
        """Send ``TOKEN_EXPIRING`` ``notice_s`` seconds before the token expires (from the
        next :meth:`expiry_changed` on, which IDENTIFY makes right after)."""
        self._expiry = _Expiry(notice_s)

    def expiry_changed(self, expires_at: str | None) -> None:
        expiry = self._expiry
        if expiry is None:
            if expires_at is None:
                return
            expiry = self._expiry = _Expiry(None)
        expiry.cancel()
        if expires_at is None or self.closing:
            return
        delay = (parse_iso(expires_at) - datetime.now(UTC)).total_seconds()
        if delay <= 0:
            self.close(CloseCode.INVALID_AUTH, "token expired")
            return
        loop = asyncio.get_running_loop()
        expiry.close_timer = loop.call_later(
            delay, self.close, CloseCode.INVALID_AUTH, "token expired"
        )
        if expiry.notice_s is not None:
            # At once if less than the notice is left (after the INIT, which is queued
            # before this callback can run).
            expiry.notice_timer = loop.call_later(
                max(0.0, delay - expiry.notice_s), self._notify_expiring, expires_at
            )

    def _notify_expiring(self, expires_at: str) -> None:
        left = (parse_iso(expires_at) - datetime.now(UTC)).total_seconds()
        self.session.send(frames.token_expiring(expires_at, max(0, round(left * 1000))))
        self.flush()

    def cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()


_CLOSE_GRACE_S = 5.0
