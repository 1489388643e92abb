"""The realtime client: :class:`Client`.

One supervisor task per client runs connections one after another: open the socket,
read HELLO, send IDENTIFY, read frames until the socket closes, wait a jittered
backoff, and again. Per connection, a heartbeat task beats as HELLO says. What the
subscriptions are across all that is kept by :class:`~._subscriptions.Subscriptions`,
which has no I/O; listeners live on the client, so a reconnect never loses one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Self

import websockets
from websockets.asyncio.client import ClientConnection

from switchboard._leap_ops import Op
from switchboard.client import _wire as wire
from switchboard.client._backoff import Backoff
from switchboard.client._events import ErrorEvent, Event
from switchboard.client._inbound import Inbound
from switchboard.client._lifecycle import GetToken
from switchboard.client._listeners import Broadcast, Listeners, Remove
from switchboard.client._recovery import StreamPosition
from switchboard.client._state import (
    ClientStatistics,
    ConnectionState,
    Outcome,
    check_arguments,
    check_channel,
    check_event,
)
from switchboard.client._subscriptions import Subscriptions
from switchboard.exceptions import AuthenticationFailed, ClientError, ConnectionClosed

__all__ = ["Client", "ClientStatistics", "ConnectionState"]

log = logging.getLogger("switchboard.client")

HANDSHAKE_TIMEOUT_S = 15.0
"""From opening the socket to INIT; past it the attempt counts as failed."""
MAX_REDIRECTS = 5
"""4006 redirects followed in a row without reaching INIT before backing off."""
MAX_FRAME_BYTES = 16 * 1024 * 1024


class Client(Inbound):
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
            with history (see :meth:`on_recovery_failed`).
        positions: ``(epoch, offset)`` per channel to recover from, e.g. the
            :meth:`positions` of an earlier client.
    """

    last_close: tuple[int | None, str] | None
    """Close code and reason (or error) of the last connection that ended."""
    metadata: dict[str, Any] | None
    """The token's state, from INIT and TOKEN_STATE_UPDATE (``None`` without a token)."""
    cid: str | None
    """The current connection's ID."""
    connection_count: int
    """Live connections of this token when this one was made (from INIT)."""
    scope: str | None
    """``"token"``, ``"project"`` or ``"noauth"``, from INIT."""

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
        self.token = token or None
        self.compression = compression
        self._url = wire.socket_url(url, compression)
        self._backoff = Backoff(*reconnect_delay)
        self._init_lifecycle(get_token, refresh_ahead)
        self._init_recovery(bool(recover))
        if positions:
            self._positions.seed(positions)
        self._subs = Subscriptions(self._positions.since)
        self._state = ConnectionState.IDLE
        self._state_listeners: Listeners[None] = Listeners()
        self._message_listeners: Listeners[tuple[str, str]] = Listeners()
        self._direct_listeners: Listeners[str] = Listeners()
        self._state_update_listeners: Listeners[str] = Listeners()
        self._error_listeners: Listeners[None] = Listeners()
        self._init_presence()
        self._events: Broadcast[Event] = Broadcast("client.events()")
        self._states: Broadcast[ConnectionState] = Broadcast("client.connection_states()")
        if on_connection_state_change is not None:
            self.on_connection_state_change(on_connection_state_change)
        self._wake = asyncio.Event()
        """Set while connected or stopped: what wait_connected() waits for."""
        self._stopped = asyncio.Event()
        self._failure: ClientError | None = None
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None
        self._send_lock = asyncio.Lock()
        self._echoed_tags: set[str] = set()
        self._redirects = 0
        self._switching = False
        """A reconnect to change tokens is under way: no backoff before it."""
        self._auth_retried = False
        """get_token was asked after a 4001, and no INIT came since."""
        self._connections = 0
        self._beats = 0
        self._acks = 0
        self._probes = 0
        self.last_close = None
        self.metadata = None
        self.cid = None
        self.connection_count = 0
        self.scope = None

    # State and reading.

    @property
    def connection_state(self) -> ConnectionState:
        return self._state

    @property
    def url(self) -> str:
        """The socket URL in use (changed by a 4006 redirect)."""
        return self._url

    @property
    def channels(self) -> frozenset[str]:
        """Channels this client is subscribed to right now."""
        return self._subs.channels

    def channel_state(self, channel: str) -> dict[str, Any] | None:
        """The latest state of a subscribed channel, or ``None``. Treat it as read-only."""
        return self._subs.state(check_channel(channel))

    def statistics(self) -> ClientStatistics:
        return ClientStatistics(self._connections, self._beats, self._acks, self._probes)

    # Listeners.

    def on_connection_state_change(self, callback: Callable[[ConnectionState], Any]) -> Remove:
        """Call ``callback(state)`` on every change of :attr:`connection_state`."""
        return self._state_listeners.add(None, callback)

    def on_message(self, channel: str, event: str, callback: Callable[[Any], Any]) -> Remove:
        """Call ``callback(data)`` for each ``event`` message published on ``channel``."""
        return self._message_listeners.add((check_channel(channel), check_event(event)), callback)

    def on_direct_message(self, event: str, callback: Callable[[Any], Any]) -> Remove:
        """Call ``callback(data)`` for each ``event`` message sent to this client's token."""
        return self._direct_listeners.add(check_event(event), callback)

    def on_state_update(self, channel: str, callback: Callable[[dict[str, Any]], Any]) -> Remove:
        """Call ``callback(state)`` whenever ``channel``'s state changes (the full new state).

        Also called when a (re)connection brings a state different from the one held.
        """
        return self._state_update_listeners.add(check_channel(channel), callback)

    def on_error(self, callback: Callable[[ErrorEvent], Any]) -> Remove:
        """Call ``callback(error)`` when the server refuses something this client sent
        (``ERROR``), such as a publish over the rate limit."""
        return self._error_listeners.add(None, callback)

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
        self._check_running()
        future = self._subs.subscribe(channel, presence)
        await self._flush()
        return await future

    async def unsubscribe(self, channel: str) -> None:
        """Unsubscribe from a channel (for a token: durably). Stays so across reconnects."""
        check_channel(channel)
        if self._stopped.is_set():
            return
        self._subs.unsubscribe(channel)
        self._positions.forget(channel)  # a later subscribe starts afresh, not recovering
        await self._flush()

    async def publish(self, channel: str, event: str, data: Any = None) -> None:
        """Publish a message to a subscribed channel (needs a token).

        Waits until connected. The server refuses quietly with an ``ERROR`` dispatch
        (see :meth:`on_error`) when it will not deliver the message.
        """
        frame = wire.dispatch(
            check_channel(channel), "MESSAGE", {"e": check_event(event), "d": data}
        )
        await self.wait_connected()
        self._subs.send(frame)
        await self._flush()

    async def wait_connected(self) -> None:
        """Wait until the client is connected (INIT received)."""
        while True:
            self._check_running()
            if self._subs.connected:
                return
            await self._wake.wait()

    async def wait_closed(self) -> None:
        """Wait until the client stops; raise AuthenticationFailed if it stopped on a 4001."""
        await self._stopped.wait()
        if self._failure is not None:
            raise self._failure

    async def close(self) -> None:
        """Close the connection and stop reconnecting. Listeners are kept; iterators end."""
        if self._closing or self._stopped.is_set():
            await self._stopped.wait()
            return
        self._closing = True
        ws = self._ws
        if ws is not None:
            await ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._stop(None)
        self._set_state(ConnectionState.IDLE)

    def start(self) -> None:
        """Start connecting in the background (:func:`connect` does this)."""
        if self._task is not None:
            raise RuntimeError("the client is started already")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="switchboard-client")

    async def __aenter__(self) -> Self:
        if self._task is None:
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
        return f"<Client {self._state.value} {self._url} project={self.project_id}>"

    # The supervisor.

    def _check_running(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._stopped.is_set() or self._closing:
            raise ConnectionClosed(1000, "the client is closed")
        if self._task is None:
            raise RuntimeError("the client is not started; use `async with connect(...)`")

    def _set_state(self, state: ConnectionState) -> None:
        if state is self._state:
            return
        self._state = state
        log.debug("connection state %s", state.value)
        self._states.publish(state)
        self._state_listeners.emit(None, state)

    def _stop(self, failure: ClientError | None) -> None:
        """Stop for good: wake every waiter, fail every pending call, end the iterators."""
        if self._stopped.is_set():
            return
        self._failure = failure
        self._subs.fail_all(failure or ConnectionClosed(1000, "the client is closed"))
        self._stopped.set()
        self._wake.set()
        self._events.close(failure)
        # The last state reaches the iterators before they end.
        if failure is not None:
            self._set_state(ConnectionState.ERRORED)
        else:
            self._set_state(ConnectionState.IDLE)
        self._states.close(failure)

    async def _run(self) -> None:
        try:
            await self._reconnect_forever()
        except Exception as exc:
            # A bug here must not leave callers waiting forever: stop, loudly.
            log.exception("the client failed")
            self._stop(ConnectionClosed(None, f"the client failed: {exc!r}"))

    async def _reconnect_forever(self) -> None:
        while not self._closing:
            self._set_state(ConnectionState.CONNECTING)
            outcome = await self._connection()
            self.last_close = (outcome.code, outcome.reason)
            self._lost()
            if self._closing:
                return
            log.info("connection ended (%s %s)", outcome.code, outcome.reason)
            if self._switching:
                self._switching = False
                continue
            if outcome.code == wire.Close.INVALID_AUTH:
                if await self._token_after_refusal():
                    continue
                self._stop(AuthenticationFailed(outcome.reason))
                return
            self._set_state(ConnectionState.ERRORED)
            if outcome.code == wire.Close.BAD_ROUTE and self._follow(outcome.reason):
                continue
            await asyncio.sleep(self._backoff.next())

    def _connected(self) -> None:
        self._wake.set()

    def _lost(self) -> None:
        """The connection is gone: nothing more can be sent on it (idempotent)."""
        self._subs.on_connection_lost()
        self._refresh_lost()
        if not self._stopped.is_set():
            self._wake.clear()

    async def _token_after_refusal(self) -> bool:
        """After a 4001: ask ``get_token`` once for a token to try again with."""
        if self._get_token is None or self._auth_retried:
            return False
        self._auth_retried = True
        try:
            self.token = await self._fetch_token()
        except Exception:
            log.exception("get_token failed after the server refused the token")
            return False
        return True

    async def _switch_token(self, token: str) -> None:
        """Connect as another token: a new IDENTIFY, so a new connection."""
        self._check_running()
        self.token = token
        ws = self._ws
        if ws is not None:
            self._switching = True
            self._lost()
            await ws.close(1000, "switching tokens")
        await self.wait_connected()

    async def _send_now(self, frame: str) -> None:
        self._subs.send(frame)
        await self._flush()

    def _follow(self, reason: str) -> bool:
        """Take the 4006 close reason as the new URL; False if it is not one to follow."""
        if self._redirects >= MAX_REDIRECTS:
            log.warning("too many redirects in a row; backing off")
            return False
        try:
            self._url = wire.socket_url(reason, self.compression)
        except ValueError:
            log.warning("4006 with a reason that is not a socket URL: %r", reason)
            return False
        self._redirects += 1
        log.info("redirected to %s", self._url)
        return True

    async def _connection(self) -> Outcome:
        try:
            async with websockets.connect(
                self._url,
                open_timeout=HANDSHAKE_TIMEOUT_S,
                ping_interval=None,  # Leap heartbeats do this job
                close_timeout=2,
                max_size=MAX_FRAME_BYTES,
                user_agent_header="switchboard-python",
            ) as ws:
                self._ws = ws
                try:
                    return await self._session(ws)
                finally:
                    self._ws = None
        except websockets.ConnectionClosed as exc:
            return Outcome(exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else Outcome(None, str(exc))
        except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}")

    async def _session(self, ws: ClientConnection) -> Outcome:
        self._set_state(ConnectionState.AUTHENTICATING)
        self._echoed_tags.clear()
        heartbeat: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S) as handshake:
                hello = wire.decode(await ws.recv())
                interval = self._heartbeat_interval(hello)
                if self.token is None and self._get_token is not None:
                    self.token = await self._fetch_token()
                extra = self._lifecycle_identify()
                recover = self._positions.identify_map()
                if recover is not None:
                    extra["recover"] = recover
                await ws.send(wire.identify(self.project_id, self.token, extra))
                heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(ws, interval))
                while not self._subs.connected:
                    await self._receive(ws, await ws.recv())
                handshake.reschedule(None)
            while True:
                await self._receive(ws, await ws.recv())
        except websockets.ConnectionClosed as exc:
            if exc.rcvd is not None:
                return Outcome(exc.rcvd.code, exc.rcvd.reason)
            return Outcome(None, "connection lost")
        except TimeoutError:
            return Outcome(None, "no INIT in time")
        except (ValueError, zlib.error) as exc:
            await ws.close(wire.Close.INVALID_PAYLOAD, "bad frame")
            return Outcome(None, f"bad frame: {exc}")
        finally:
            # At once, before awaiting anything: no call may queue frames for this socket.
            self._lost()
            if heartbeat is not None:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat

    @staticmethod
    def _heartbeat_interval(hello: dict[str, Any]) -> float:
        if hello.get("op") != Op.HELLO:
            raise ValueError(f"expected HELLO first, got op {hello.get('op')}")
        d = hello.get("d")
        ms = d.get("heartbeat_interval") if isinstance(d, dict) else None
        if not isinstance(ms, int | float) or isinstance(ms, bool) or ms <= 0:
            raise ValueError(f"HELLO without a heartbeat_interval: {hello!r}")
        return float(ms) / 1000

    async def _heartbeat(self, ws: ClientConnection, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if not self._subs.heartbeat():
                # The beat of one interval ago was never acked: the link is dead even
                # if TCP has not noticed. Drop it; the reader sees the loss and reconnects.
                log.warning("no heartbeat ack within %.1fs; reconnecting", interval)
                ws.transport.abort()
                return
            await self._flush(ws)

    async def _flush(self, ws: ClientConnection | None = None) -> None:
        """Send what the subscriptions queued, in order, on ``ws`` (default: the current socket)."""
        ws = ws or self._ws
        if ws is None:
            return
        async with self._send_lock:
            frames = self._subs.data_to_send()
            try:
                for frame in frames:
                    await ws.send(frame)
                    if frame == wire.HEARTBEAT:
                        self._beats += 1
            except websockets.ConnectionClosed:
                # The reader task sees the same close and reconnects; what was lost here
                # is re-sent after INIT (subscriptions) or was at most once (publishes).
                pass
