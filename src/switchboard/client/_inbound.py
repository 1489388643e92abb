"""What the server sends, carried out on the client: dispatches in, state and listeners out.

:class:`Inbound` turns each dispatch into a typed event (:func:`parse_dispatch`) and
hands it to the part it concerns: the subscriptions, presence, history recovery, the
token's lifecycle, or the listeners registered for it here; then to ``client.events()``.
No I/O: what the subscriptions queue meanwhile, the link sends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

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
from switchboard.client._presence import PresenceTracker
from switchboard.client._recovery import HistoryRecovery
from switchboard.client._state import ConnectionState, States
from switchboard.client._subscriptions import Subscriptions

__all__ = ["Inbound"]

log = logging.getLogger("switchboard.client")


class Inbound:
    """Dispatches from the server (see the module docstring).

    ``identified`` is called on each INIT, once the subscriptions took it and before
    any listener is (the link counts the connection and wakes its waiters).
    """

    def __init__(
        self,
        *,
        subs: Subscriptions,
        presence: PresenceTracker,
        recovery: HistoryRecovery,
        tokens: TokenLifecycle,
        states: States,
        events: Broadcast[Event],
        identified: Callable[[], None],
    ) -> None:
        self._subs = subs
        self._presence = presence
        self._recovery = recovery
        self._tokens = tokens
        self._states = states
        self._events = events
        self._identified = identified
        self.messages: Listeners[tuple[str, str]] = Listeners()
        self.direct_messages: Listeners[str] = Listeners()
        self.state_updates: Listeners[str] = Listeners()
        self.errors: Listeners[None] = Listeners()
        # Who this connection is, as INIT (and TOKEN_STATE_UPDATE) said.
        self.metadata: dict[str, Any] | None = None
        self.cid: str | None = None
        self.connection_count = 0
        self.scope: str | None = None

    def dispatch(self, d: Any) -> None:
        event = parse_dispatch(d)
        if isinstance(event, Init):
            self._on_init(event)
        elif isinstance(event, Available):
            before = self._subs.state(event.channel)
            if self._subs.on_available(event.channel, event.info):
                self._state_changed(event.channel, before)
        elif isinstance(event, Unavailable):
            self._subs.on_unavailable(event.channel, event.graceful, event.error_code)
            self._presence.forget(event.channel)
        elif isinstance(event, PresenceSnapshot | PresenceJoin | PresenceLeave):
            self._presence.handle(event)
        elif isinstance(event, StateUpdate):
            if self._subs.on_state_update(event.channel, event.state):
                self.state_updates.emit(event.channel, event.state)
        elif isinstance(event, Message):
            if not self._recovery.accept(event):
                return  # seen already: a recovery's replay overlapping the live stream
            if self._subs.accepts(event.channel):
                self.messages.emit((event.channel, event.event), event.data)
        elif isinstance(event, Recovery):
            self._recovery.handle(event)
        elif isinstance(event, DirectMessage):
            if not self._recovery.accept(event):
                return  # seen already: an inbox recovery's replay overlapping live ones
            self.direct_messages.emit(event.event, event.data)
        elif isinstance(event, TokenStateUpdate):
            self.metadata = event.state
        elif isinstance(event, TokenExpiring):
            self._tokens.on_token_expiring(event)
        elif isinstance(event, TokenRefreshed):
            self._tokens.on_token_refreshed(event)
        elif isinstance(event, ErrorEvent):
            log.info("server refused: %s %s", event.code, event.message)
            if not self._tokens.on_refresh_error(event):
                self.errors.emit(None, event)
        self._events.publish(event)

    def _on_init(self, init: Init) -> None:
        before = {channel: self._subs.state(channel) for channel in self._subs.channels}
        self.cid = init.cid
        self.connection_count = init.connection_count
        self.scope = init.scope
        self.metadata = init.metadata
        self._subs.on_init(init)
        self._tokens.identified()
        self._identified()
        for channel in init.channels:
            self._state_changed(channel.id, before.get(channel.id))
        self._states.set(ConnectionState.CONNECTED)

    def _state_changed(self, channel: str, before: dict[str, Any] | None) -> None:
        after = self._subs.state(channel)
        if after is not None and before is not None and after != before:
            self.state_updates.emit(channel, after)
