"""What the server sends, carried out on the client: frames in, state and listeners out.

:class:`Inbound` is mixed into :class:`~switchboard.client.Client`; it reads the
attributes the client's ``__init__`` sets (declared below for the type checker).
"""

from __future__ import annotations

import logging
from typing import Any

from websockets.asyncio.client import ClientConnection

from switchboard._leap_ops import Op
from switchboard.client import _wire as wire
from switchboard.client._backoff import Backoff
from switchboard.client._events import (
    Available,
    DirectMessage,
    ErrorEvent,
    Event,
    Init,
    Message,
    PresenceJoin,
    PresenceLeave,
    PresenceSnapshot,
    Recovery,
    StateUpdate,
    TokenExpiring,
    TokenRefreshed,
    TokenStateUpdate,
    Unavailable,
    parse_dispatch,
)
from switchboard.client._lifecycle import TokenLifecycle
from switchboard.client._listeners import Broadcast, Listeners
from switchboard.client._presence import PresenceTracking
from switchboard.client._recovery import HistoryRecovery
from switchboard.client._state import ConnectionState
from switchboard.client._subscriptions import Subscriptions

__all__ = ["Inbound"]

log = logging.getLogger("switchboard.client")


class Inbound(PresenceTracking, TokenLifecycle, HistoryRecovery):
    """Frames from the server (see the module docstring)."""

    _subs: Subscriptions
    _backoff: Backoff
    _events: Broadcast[Event]
    _message_listeners: Listeners[tuple[str, str]]
    _direct_listeners: Listeners[str]
    _state_update_listeners: Listeners[str]
    _error_listeners: Listeners[None]
    _echoed_tags: set[str]
    _probes: int
    _acks: int
    _connections: int
    _auth_retried: bool
    _redirects: int
    metadata: dict[str, Any] | None
    cid: str | None
    connection_count: int
    scope: str | None

    async def _flush(self, ws: ClientConnection | None = None) -> None:
        raise NotImplementedError

    def _connected(self) -> None:
        raise NotImplementedError

    def _set_state(self, state: ConnectionState) -> None:
        raise NotImplementedError

    async def _receive(self, ws: ClientConnection, message: str | bytes) -> None:
        frame = wire.decode(message)
        op = frame["op"]
        d = frame.get("d")
        if op == Op.DISPATCH:
            self._dispatch(d)
        elif op == Op.HEARTBEAT:
            tag = d.get("tag") if isinstance(d, dict) else None
            if isinstance(tag, str):
                self._echoed_tags.add(tag)
                self._probes += 1
                self._subs.send(wire.probe_reply(tag))
        elif op == Op.HEARTBEAT_ACK:
            tag = d.get("tag") if isinstance(d, dict) else None
            if isinstance(tag, str) and tag in self._echoed_tags:
                self._echoed_tags.discard(tag)  # acks our echo of a probe, not a beat
            else:
                self._acks += 1
                self._subs.on_heartbeat_ack()
        await self._flush(ws)

    def _dispatch(self, d: Any) -> None:
        event = parse_dispatch(d)
        if isinstance(event, Init):
            self._on_init(event)
        elif isinstance(event, Available):
            before = self._subs.state(event.channel)
            if self._subs.on_available(event.channel, event.info):
                self._state_changed(event.channel, before)
        elif isinstance(event, Unavailable):
            self._subs.on_unavailable(event.channel, event.graceful, event.error_code)
            self._forget_presence(event.channel)
        elif isinstance(event, PresenceSnapshot | PresenceJoin | PresenceLeave):
            self._on_presence(event)
        elif isinstance(event, StateUpdate):
            if self._subs.on_state_update(event.channel, event.state):
                self._state_update_listeners.emit(event.channel, event.state)
        elif isinstance(event, Message):
            if not self._positions.accept(event):
                return  # seen already: a recovery's replay overlapping the live stream
            if self._subs.accepts(event.channel):
                self._message_listeners.emit((event.channel, event.event), event.data)
        elif isinstance(event, Recovery):
            self._on_recovery(event)
        elif isinstance(event, DirectMessage):
            self._direct_listeners.emit(event.event, event.data)
        elif isinstance(event, TokenStateUpdate):
            self.metadata = event.state
        elif isinstance(event, TokenExpiring):
            self._on_token_expiring(event)
        elif isinstance(event, TokenRefreshed):
            self._on_token_refreshed(event)
        elif isinstance(event, ErrorEvent):
            log.info("server refused: %s %s", event.code, event.message)
            if not self._on_refresh_error(event):
                self._error_listeners.emit(None, event)
        self._events.publish(event)

    def _on_init(self, init: Init) -> None:
        before = {channel: self._subs.state(channel) for channel in self._subs.channels}
        self.cid = init.cid
        self.connection_count = init.connection_count
        self.scope = init.scope
        self.metadata = init.metadata
        self._subs.on_init(init)
        self._connections += 1
        self._auth_retried = False
        self._redirects = 0
        self._backoff.reset()
        self._connected()
        for channel in init.channels:
            self._state_changed(channel.id, before.get(channel.id))
        self._set_state(ConnectionState.CONNECTED)

    def _state_changed(self, channel: str, before: dict[str, Any] | None) -> None:
        after = self._subs.state(channel)
        if after is not None and before is not None and after != before:
            self._state_update_listeners.emit(channel, after)
