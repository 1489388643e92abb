"""The realtime client: :class:`Client`, the public surface, and the parts it is made of.

``Client`` holds every member ``docs/python-sdk.md`` lists, in this one class, and owns
its parts, each given at construction what it needs:

- :class:`~._subscriptions.Subscriptions`: what is subscribed across reconnects, and the
  frames to send for it (no I/O);
- :class:`~._presence.PresenceTracker`: who is on the channels watched with presence;
- :class:`~._recovery.HistoryRecovery` over :class:`~._recovery.Positions`: the last
  message seen per channel, and the recovery listeners;
- :class:`~._lifecycle.TokenLifecycle`: the token, ``get_token`` and the refresh;
- :class:`~._inbound.Inbound`: each server dispatch, handed to the part it concerns;
- :class:`~._link.Link`: the sockets, one after another, with heartbeats and backoff.

Composed, not mixed in (issue 18). The parts were mixins, ``Client(Inbound(
PresenceTracking, TokenLifecycle, HistoryRecovery))``, sharing one namespace of 45
attributes: each declared what it read of the others as bare annotations and stubbed
the client methods it called with ``NotImplementedError``, so nothing checked that the
client provided them (a missing one failed at run time), and reading one file meant
finding the rest in the others. Now a part's constructor lists what it needs, a part
can be built and tested alone, and each public member a part serves is a one-line
delegation here, next to its documentation, so the public surface reads in one class.
The cost is those delegations, and one knot: ``TokenLifecycle`` and ``Inbound`` are made
before the ``Link`` that serves them, so they are given this class's methods
(``wait_connected``, ``_send_now``, ``_switch_token``, ``_identified``), which reach the
link when called.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from switchboard.client import _wire as wire
from switchboard.client._backoff import Backoff
from switchboard.client._events import ErrorEvent, Event, Member, Recovery
from switchboard.client._inbound import Inbound
from switchboard.client._lifecycle import GetToken, TokenLifecycle
from switchboard.client._link import Link
from switchboard.client._listeners import Broadcast, Remove
from switchboard.client._presence import PresenceEvent, PresenceTracker
from switchboard.client._recovery import HistoryRecovery, Positions, StreamPosition
from switchboard.client._state import (
    ClientStatistics,
    ConnectionState,
    States,
    check_arguments,
    check_channel,
    check_event,
)
from switchboard.client._subscriptions import Subscriptions

__all__ = ["Client", "ClientStatistics", "ConnectionState"]


class Client:
    """A realtime connection to a Switchboard (or Hop) gateway, kept up across drops.

    Usually made with :func:`connect`. Reconnects by itself with a jittered backoff;
    follows a 4006 redirect; stops for good on 4001 (bad project or token), after which
    every call raises :class:`~switchboard.AuthenticationFailed`.

    Args:
        project_id: the project (``project_…``).
        token: a token (``leap_token_…``) identifying the user; ``None`` for anonymous
            access to unprotected channels. A project token (``ptk_…``) gives a console
            connection that may subscribe to every channel.
        url: the gateway's socket URL (``ws://host:port/ws``; ``http://host:port`` is
            accepted too).
        compression: ``"zlib"`` to have the server compress every frame.
        reconnect_delay: ``(minimum, maximum)`` seconds between reconnect attempts.
        on_connection_state_change: called with each new :class:`ConnectionState`.
        get_token: (Switchboard's) returns the token to use now, plain or ``async``;
            called ``refresh_ahead`` seconds before the token expires, and once after
            a 4001. See :meth:`refresh`.
        refresh_ahead: seconds before the expiry to call ``get_token``.
        recover: (Switchboard's) after a reconnect, get what was missed on channels
            with history and in the token's inbox (see :meth:`on_recovery_failed`).
        positions: ``(epoch, offset)`` per channel (and ``"$inbox"``) to recover from,
            e.g. the :meth:`positions` of an earlier client of the same token.
    """

    def __init__(
        self,
        project_id: str,
        token: str | None = None,
        *,
        url: str = wire.DEFAULT_URL,
        compression: str = "none",
        reconnect_delay: tuple[float, float] = (1.0, 30.0),
        on_connection_state_change: Callable[[ConnectionState], Any] | None = None,
        get_token: GetToken | None = None,
        refresh_ahead: float = 30.0,
        recover: bool = True,
        positions: dict[str, StreamPosition] | None = None,
    ) -> None:
        check_arguments(project_id, token, url, compression, reconnect_delay)
        self.project_id = project_id
        self.compression = compression
        socket_url = wire.socket_url(url, compression)
        backoff = Backoff(*reconnect_delay)
        self._tokens = TokenLifecycle(
            token or None,
            get_token,
            refresh_ahead,
            wait_connected=self.wait_connected,
            send=self._send_now,
            switch=self._switch_token,
        )
        self._positions = Positions(bool(recover), positions)
        self._recovery = HistoryRecovery(self._positions)
        self._presence = PresenceTracker()
        self._subs = Subscriptions(self._positions.since)
        self._states = States()
        self._events: Broadcast[Event] = Broadcast("client.events()")
        self._inbound = Inbound(
            subs=self._subs,
            presence=self._presence,
            recovery=self._recovery,
            tokens=self._tokens,
            states=self._states,
            events=self._events,
            identified=self._identified,
        )
        self._link = Link(
            project_id,
            socket_url,
            compression,
            backoff,
            subs=self._subs,
            tokens=self._tokens,
            positions=self._positions,
            states=self._states,
            events=self._events,
            dispatch=self._inbound.dispatch,
        )
        if on_connection_state_change is not None:
            self.on_connection_state_change(on_connection_state_change)

    # State and reading.

    @property
    def connection_state(self) -> ConnectionState:
        return self._states.current

    @property
    def url(self) -> str:
        """The socket URL in use (changed by a 4006 redirect)."""
        return self._link.url

    @property
    def token(self) -> str | None:
        """The token this client identifies with (changed by a refresh to another token)."""
        return self._tokens.token

    @token.setter
    def token(self, token: str | None) -> None:
        self._tokens.token = token

    @property
    def expires_at(self) -> datetime | None:
        """The token's expiry as the server last said (``TOKEN_EXPIRING``,
        ``TOKEN_REFRESHED``); None if not known or it never expires."""
        return self._tokens.expires_at

    @property
    def metadata(self) -> dict[str, Any] | None:
        """The token's state, from INIT and TOKEN_STATE_UPDATE (``None`` without a token)."""
        return self._inbound.metadata

    @property
    def cid(self) -> str | None:
        """The current connection's ID."""
        return self._inbound.cid

    @property
    def connection_count(self) -> int:
        """Live connections of this token when this one was made (from INIT)."""
        return self._inbound.connection_count

    @property
    def scope(self) -> str | None:
        """``"token"``, ``"project"`` or ``"noauth"``, from INIT."""
        return self._inbound.scope

    @property
    def last_close(self) -> tuple[int | None, str] | None:
        """Close code and reason (or error) of the last connection that ended."""
        return self._link.last_close

    @property
    def channels(self) -> frozenset[str]:
        """Channels this client is subscribed to right now."""
        return self._subs.channels

    def channel_state(self, channel: str) -> dict[str, Any] | None:
        """The latest state of a subscribed channel, or ``None``. Treat it as read-only."""
        return self._subs.state(check_channel(channel))

    def members(self, channel: str) -> list[Member]:
        """Who is on ``channel`` (subscribed with ``presence=True``), by member ID.

        Empty for a channel this client does not watch. Tokenless connections are never
        members.
        """
        return self._presence.members(channel)

    def position(self, channel: str) -> StreamPosition | None:
        """``(epoch, offset)`` of the last message seen on ``channel`` (with history), or None."""
        return self._positions.get(channel)

    def positions(self) -> dict[str, StreamPosition]:
        """Every position held, to keep across restarts (``connect(..., positions=…)``)."""
        return self._positions.snapshot()

    def statistics(self) -> ClientStatistics:
        return self._link.statistics()

    # Listeners.

    def on_connection_state_change(self, callback: Callable[[ConnectionState], Any]) -> Remove:
        """Call ``callback(state)`` on every change of :attr:`connection_state`."""
        return self._states.on_change(callback)

    def on_message(self, channel: str, event: str, callback: Callable[[Any], Any]) -> Remove:
        """Call ``callback(data)`` for each ``event`` message published on ``channel``."""
        return self._inbound.messages.add((check_channel(channel), check_event(event)), callback)

    def on_direct_message(self, event: str, callback: Callable[[Any], Any]) -> Remove:
        """Call ``callback(data)`` for each ``event`` message sent to this client's token."""
        return self._inbound.direct_messages.add(check_event(event), callback)

    def on_state_update(self, channel: str, callback: Callable[[dict[str, Any]], Any]) -> Remove:
        """Call ``callback(state)`` whenever ``channel``'s state changes (the full new state).

        Also called when a (re)connection brings a state different from the one held.
        """
        return self._inbound.state_updates.add(check_channel(channel), callback)

    def on_error(self, callback: Callable[[ErrorEvent], Any]) -> Remove:
        """Call ``callback(error)`` when the server refuses something this client sent
        (``ERROR``), such as a publish over the rate limit."""
        return self._inbound.errors.add(None, callback)

    def on_presence(self, channel: str, callback: Callable[[PresenceEvent], Any]) -> Remove:
        """Call ``callback(event)`` with each :class:`~switchboard.client.PresenceJoin` and
        :class:`~switchboard.client.PresenceLeave` on ``channel``.

        Only for channels subscribed with ``presence=True``.
        """
        return self._presence.on_presence(channel, callback)

    def on_recovery_failed(self, callback: Callable[[str, str], Any]) -> Remove:
        """Call ``callback(channel, reason)`` when the messages missed on a channel while
        disconnected cannot all be had (``too_old``: history trimmed past them;
        ``epoch_changed``: the channel was made again; ``offset_ahead``; ``unavailable``):
        the app should reload that channel's state. ``channel`` ``"$inbox"`` (``INBOX``):
        the token's direct messages (docs/inbox.md)."""
        return self._recovery.on_recovery_failed(callback)

    def on_recovery(self, channel: str, callback: Callable[[Recovery], Any]) -> Remove:
        """Call ``callback(recovery)`` with each :class:`~switchboard.client.Recovery` of
        ``channel``, successful or not (after the recovered messages were delivered)."""
        return self._recovery.on_recovery(channel, callback)

    def events(self) -> AsyncIterator[Event]:
        """Every dispatch from the server, as typed events, from this call on.

        Ends when the client is closed; raises
        :class:`~switchboard.AuthenticationFailed` if it stopped on a 4001.
        """
        return self._events.reader()

    def connection_states(self) -> AsyncIterator[ConnectionState]:
        """Each new :attr:`connection_state`, from this call on; ends like :meth:`events`."""
        return self._states.reader()

    # Actions.

    async def subscribe(self, channel: str, *, presence: bool = False) -> dict[str, Any]:
        """Subscribe to a channel and return its state.

        Waits through reconnects. Raises :class:`~switchboard.SubscriptionRefused` with
        ``error_code`` ``"NOT_GRANTED"`` or ``"UNKNOWN"`` if the server refuses.
        ``presence=True`` (Switchboard only, needs a token): also follow who is on the
        channel, with :meth:`members` and :meth:`on_presence`.
        """
        check_channel(channel)
        self._link.check_running()
        future = self._subs.subscribe(channel, presence)
        await self._link.flush()
        return await future

    async def unsubscribe(self, channel: str) -> None:
        """Unsubscribe from a channel (for a token: durably). Stays so across reconnects."""
        check_channel(channel)
        if self._link.stopped:
            return
        self._subs.unsubscribe(channel)
        self._positions.forget(channel)  # a later subscribe starts afresh, not recovering
        await self._link.flush()

    async def publish(self, channel: str, event: str, data: Any = None) -> None:
        """Publish a message to a subscribed channel (needs a token).

        Waits until connected. The server refuses quietly with an ``ERROR`` dispatch
        (see :meth:`on_error`) when it will not deliver the message.
        """
        frame = wire.dispatch(
            check_channel(channel), "MESSAGE", {"e": check_event(event), "d": data}
        )
        await self.wait_connected()
        await self._send_now(frame)

    async def refresh(self, token: str | None = None) -> datetime | None:
        """Present ``token`` (default: the current one) on the open socket, so the
        connection takes the token's current expiry; return that expiry (None: never).

        The backend moves the expiry first (``PATCH /v1/channels/tokens/:id
        {"expires_at": …}``). Another token than the current one is a new
        identity: the client reconnects with it and returns None once connected.

        Raises:
            TokenRefreshFailed: the server refused (``code``, ``message``); the
                connection stays open.
            AuthenticationFailed: the token was deleted or has expired (4001).
            ConnectionClosed: the connection dropped before the answer (the next one
                identifies with the token anyway).
        """
        return await self._tokens.refresh(token)

    async def wait_connected(self) -> None:
        """Wait until the client is connected (INIT received)."""
        await self._link.wait_connected()

    async def wait_closed(self) -> None:
        """Wait until the client stops; raise AuthenticationFailed if it stopped on a 4001."""
        await self._link.wait_closed()

    async def close(self) -> None:
        """Close the connection and stop reconnecting. Listeners are kept; iterators end."""
        await self._link.close()

    def start(self) -> None:
        """Start connecting in the background (:func:`connect` does this)."""
        self._link.start()

    async def __aenter__(self) -> Self:
        if not self._link.started:
            self.start()
        try:
            await self.wait_connected()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<Client {self._states.current.value} {self.url} project={self.project_id}>"

    # What the parts made before the link are given to reach it.

    async def _send_now(self, frame: str) -> None:
        self._subs.send(frame)
        await self._link.flush()

    async def _switch_token(self, token: str) -> None:
        # The inbox position held is the old token's: the new one starts afresh.
        self._positions.forget(wire.INBOX)
        await self._link.switch_token(token)

    def _identified(self) -> None:
        self._link.identified()
