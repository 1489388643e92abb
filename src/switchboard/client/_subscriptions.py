"""The client's subscriptions across reconnects, with no I/O.

:class:`Subscriptions` is told what the user asks (:meth:`~Subscriptions.subscribe`,
:meth:`~Subscriptions.unsubscribe`) and what the server says (``INIT``, ``AVAILABLE``,
``UNAVAILABLE``, heartbeat acks, a lost connection); it queues the frames to send, in
order, for :meth:`~Subscriptions.data_to_send`. The client writes them to the socket.

The reconnect rules:

- With a token (``INIT.scope == "token"``) the server keeps subscriptions, so ``INIT``
  says which the client has; nothing is subscribed again except a SUBSCRIBE that was
  still unanswered when the connection dropped and that ``INIT`` does not list.
- Without a token (or with a project token) subscriptions end with the connection, so
  every channel held before is subscribed again.
- ``UNSUBSCRIBE`` gets no reply. The client sends a heartbeat right after it; the
  server handles a connection's frames in order, so that heartbeat's ack confirms the
  unsubscribe. An unsubscribe not confirmed when the connection drops is sent again
  if the next ``INIT`` still lists the channel: a channel unsubscribed before a
  disconnect stays unsubscribed after it.
- History recovery (Switchboard's own): a SUBSCRIBE that joins a channel carries the
  position to recover from (``d: {"since": …}``, see ``_recovery.py``); one for a
  channel the connection holds already does not.
- Presence (Switchboard's own): a channel subscribed with ``presence=True`` is
  subscribed with ``d: {"presence": true}``. The server forgets that with the socket,
  so after a reconnect such a channel is subscribed again even when ``INIT`` lists it
  (the extra ``AVAILABLE`` only refreshes its state).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from switchboard.client import _wire as wire
from switchboard.client._events import Init, LeapChannel
from switchboard.exceptions import SubscriptionRefused

__all__ = ["Subscriptions"]

_UNSENT = 0
"""``_leaving`` value of an UNSUBSCRIBE not sent on the current connection."""


class Subscriptions:
    """See the module docstring."""

    def __init__(self, since: Callable[[str], dict[str, Any] | None] | None = None) -> None:
        self._since = since
        """The history position to recover a channel from when it is joined (Switchboard's)."""
        self.connected = False
        self.durable = False
        """True when the server keeps this client's subscriptions (a token connection)."""
        self._states: dict[str, dict[str, Any]] = {}
        """Channels this client holds, with their latest state."""
        self._rejoining: set[str] = set()
        """Held channels subscribed again after a tokenless reconnect, not yet answered."""
        self._pending: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        """subscribe() calls waiting for an answer."""
        self._inflight: Counter[str] = Counter()
        """SUBSCRIBEs sent on this connection and not answered yet."""
        self._leaving: dict[str, int] = {}
        """Unsubscribed channels → the heartbeat whose ack confirms it (``_UNSENT``: none yet)."""
        self._beats_sent = 0
        self._acks = 0
        self._beats_at_tick = 0
        self._outgoing: list[str] = []
        self._presence: set[str] = set()
        """Channels subscribed with presence: the next SUBSCRIBE to each asks for it."""

    # What the user reads.

    def state(self, channel: str) -> dict[str, Any] | None:
        return self._states.get(channel)

    @property
    def channels(self) -> frozenset[str]:
        """Channels subscribed right now."""
        return frozenset(self._states.keys() - self._rejoining)

    def data_to_send(self) -> list[str]:
        """Frames to write, in order."""
        out, self._outgoing = self._outgoing, []
        return out

    def send(self, frame: str) -> None:
        """Queue a frame of the client's own (a publish, a probe reply) behind the others."""
        self._outgoing.append(frame)

    # What the user asks.

    def subscribe(self, channel: str, presence: bool = False) -> asyncio.Future[dict[str, Any]]:
        """A future for the channel's state, failed with SubscriptionRefused if refused.

        ``presence``: ask for presence dispatches too (a held channel is subscribed again
        to ask).
        """
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        asks = presence and channel not in self._presence
        if presence:
            self._presence.add(channel)
        if channel in self._states and channel not in self._rejoining and not asks:
            future.set_result(self._states[channel])
            return future
        if asks and self.connected and channel in self._states:
            self._pending.setdefault(channel, []).append(future)
            self._send_subscribe(channel)
            return future
        self._pending.setdefault(channel, []).append(future)
        # After an UNSUBSCRIBE a new SUBSCRIBE is always needed: an earlier one still in
        # flight is answered before the server handles the UNSUBSCRIBE.
        was_leaving = self._leaving.pop(channel, None) is not None
        if self.connected and (was_leaving or not self._inflight[channel]):
            self._send_subscribe(channel)
        return future

    def unsubscribe(self, channel: str) -> None:
        self._presence.discard(channel)
        self._states.pop(channel, None)
        self._rejoining.discard(channel)
        self._fail(channel, SubscriptionRefused(channel, None))
        self._leaving[channel] = _UNSENT
        if self.connected:
            self._send_unsubscribe(channel)

    # What the server says.

    def on_init(self, init: Init) -> None:
        self.connected = True
        self.durable = init.scope == "token"
        listed = {channel.id: channel for channel in init.channels}
        if self.durable:
            for channel in self._states.keys() - listed.keys():
                # Deleted or ungranted while this client was away.
                del self._states[channel]
            for channel in self._leaving.keys() - listed.keys():
                del self._leaving[channel]  # the server has no such subscription: done
            self._rejoining.clear()
            resubscribe = set(self._pending) | (self._presence & set(self._states))
        else:
            # Nothing survived on the server: ask again for everything held or asked for.
            self._leaving.clear()
            resubscribe = set(self._states) | set(self._pending)
            self._rejoining = set(self._states)
        for info in listed.values():
            if info.id in self._leaving:
                self._send_unsubscribe(info.id)
            else:
                self._hold(info)
                if info.id not in self._presence:
                    resubscribe.discard(info.id)
        for channel in sorted(resubscribe):
            self._send_subscribe(channel)

    def on_available(self, channel: str, info: LeapChannel) -> bool:
        """Record an AVAILABLE; True if the client now holds the channel."""
        is_reply = self._inflight[channel] > 0
        if is_reply:
            self._inflight[channel] -= 1
        if channel in self._leaving:
            if is_reply:
                return False  # answers a SUBSCRIBE sent before the UNSUBSCRIBE
            del self._leaving[channel]  # a new grant through the server API
        self._hold(info if info.id == channel else LeapChannel(channel, "", "", info.state))
        return True

    def on_unavailable(self, channel: str, graceful: bool, error_code: str | None) -> bool:
        """Record an UNAVAILABLE; True if it ended or refused something of this client's."""
        is_reply = not graceful and self._inflight[channel] > 0
        if is_reply:
            self._inflight[channel] -= 1
            if channel in self._leaving:
                return False
        held = self._states.pop(channel, None) is not None
        self._rejoining.discard(channel)
        if graceful:
            self._presence.discard(channel)  # ended by the server: a new grant starts plain
        if not graceful:
            held |= self._fail(channel, SubscriptionRefused(channel, error_code))
        return held

    def on_state_update(self, channel: str, state: dict[str, Any]) -> bool:
        """Record a STATE_UPDATE; False if it is a late one for an unsubscribed channel."""
        if channel in self._leaving:
            return False
        if channel in self._states:
            self._states[channel] = state
        return True

    def accepts(self, channel: str) -> bool:
        """Whether a MESSAGE on ``channel`` is for the user (not a late one after unsubscribing)."""
        return channel not in self._leaving

    def on_heartbeat_ack(self) -> None:
        self._acks += 1
        for channel, beat in list(self._leaving.items()):
            if beat != _UNSENT and beat <= self._acks:
                del self._leaving[channel]

    def on_connection_lost(self) -> None:
        self.connected = False
        self._outgoing.clear()
        self._inflight.clear()
        self._beats_sent = self._acks = self._beats_at_tick = 0
        for channel in self._leaving:
            self._leaving[channel] = _UNSENT

    def heartbeat(self) -> bool:
        """Queue the periodic heartbeat. False if the last one was never acked (a dead link)."""
        if self._acks < self._beats_at_tick:
            return False
        self._queue_heartbeat()
        self._beats_at_tick = self._beats_sent
        return True

    def fail_all(self, error: BaseException) -> None:
        for channel in list(self._pending):
            self._fail(channel, error)

    # Private methods.

    def _hold(self, channel: LeapChannel) -> None:
        self._states[channel.id] = channel.state
        self._rejoining.discard(channel.id)
        for future in self._pending.pop(channel.id, ()):
            if not future.done():
                future.set_result(channel.state)

    def _fail(self, channel: str, error: BaseException) -> bool:
        futures = self._pending.pop(channel, [])
        for future in futures:
            if not future.done():
                future.set_exception(error)
        return bool(futures)

    def _send_subscribe(self, channel: str) -> None:
        self._inflight[channel] += 1
        data: dict[str, Any] = {"presence": True} if channel in self._presence else {}
        # A channel this connection holds already (INIT listed it) was recovered by
        # IDENTIFY; one it joins now is recovered by this SUBSCRIBE.
        held = channel in self._states and channel not in self._rejoining
        since = self._since(channel) if self._since is not None and not held else None
        if since is not None:
            data["since"] = since
        self._outgoing.append(wire.dispatch(channel, "SUBSCRIBE", data or None))

    def _send_unsubscribe(self, channel: str) -> None:
        self._outgoing.append(wire.dispatch(channel, "UNSUBSCRIBE"))
        self._queue_heartbeat()
        self._leaving[channel] = self._beats_sent

    def _queue_heartbeat(self) -> None:
        self._beats_sent += 1
        self._outgoing.append(wire.HEARTBEAT)
