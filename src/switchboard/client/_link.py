"""The client's link to the server: :class:`Link` keeps one connection up until closed.

One supervisor task runs connections one after another: open the socket, read HELLO,
send IDENTIFY, read frames until the socket closes, wait a jittered backoff, and
again. Per connection, a heartbeat task beats as HELLO says. The close code decides
what comes next: 4001 stops for good (after asking ``get_token`` once), 4006 follows
the redirect, anything else reconnects. Every dispatch goes to the ``dispatch``
callable it was given; what to send comes from the subscriptions (``data_to_send``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from switchboard._leap_ops import CloseCode, Op
from switchboard.client import _wire as wire
from switchboard.client._backoff import Backoff
from switchboard.client._events import Event
from switchboard.client._lifecycle import TokenLifecycle
from switchboard.client._listeners import Broadcast
from switchboard.client._recovery import Positions
from switchboard.client._state import ClientStatistics, ConnectionState, Outcome, States
from switchboard.client._subscriptions import Subscriptions
from switchboard.exceptions import AuthenticationFailed, ClientError, ConnectionClosed

__all__ = ["Link"]

log = logging.getLogger("switchboard.client")

HANDSHAKE_TIMEOUT_S = 15.0
"""From opening the socket to INIT; past it the attempt counts as failed."""
MAX_REDIRECTS = 5
"""4006 redirects followed in a row without reaching INIT before backing off."""
MAX_FRAME_BYTES = 16 * 1024 * 1024


class Link:
    """See the module docstring. ``events`` is only ended here, when the client stops."""

    def __init__(
        self,
        project_id: str,
        url: str,
        compression: str,
        backoff: Backoff,
        *,
        subs: Subscriptions,
        tokens: TokenLifecycle,
        positions: Positions,
        states: States,
        events: Broadcast[Event],
        dispatch: Callable[[Any], None],
    ) -> None:
        self._project_id = project_id
        self.url = url
        """The socket URL in use (changed by a 4006 redirect)."""
        self._compression = compression
        self._backoff = backoff
        self._subs = subs
        self._tokens = tokens
        self._positions = positions
        self._states = states
        self._events = events
        self._dispatch = dispatch
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
        self._connections = self._beats = self._acks = self._probes = 0
        self.last_close: tuple[int | None, str] | None = None

    # What the client asks.

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def statistics(self) -> ClientStatistics:
        return ClientStatistics(self._connections, self._beats, self._acks, self._probes)

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the client is started already")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="switchboard-client")

    @property
    def started(self) -> bool:
        return self._task is not None

    def check_running(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._stopped.is_set() or self._closing:
            raise ConnectionClosed(1000, "the client is closed")
        if self._task is None:
            raise RuntimeError("the client is not started; use `async with connect(...)`")

    async def wait_connected(self) -> None:
        while True:
            self.check_running()
            if self._subs.connected:
                return
            await self._wake.wait()

    async def wait_closed(self) -> None:
        await self._stopped.wait()
        if self._failure is not None:
            raise self._failure

    async def close(self) -> None:
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
        self._states.set(ConnectionState.IDLE)

    async def switch_token(self, token: str) -> None:
        """Connect as another token: a new IDENTIFY, so a new connection."""
        self.check_running()
        self._tokens.token = token
        ws = self._ws
        if ws is not None:
            self._switching = True
            self._lost()
            await ws.close(1000, "switching tokens")
        await self.wait_connected()

    def identified(self) -> None:
        """INIT came: the connection is up."""
        self._connections += 1
        self._redirects = 0
        self._backoff.reset()
        self._wake.set()

    async def flush(self, ws: ClientConnection | None = None) -> None:
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

    # The supervisor.

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
            self._states.set(ConnectionState.ERRORED)
        else:
            self._states.set(ConnectionState.IDLE)
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
            self._states.set(ConnectionState.CONNECTING)
            outcome = await self._connection()
            self.last_close = (outcome.code, outcome.reason)
            self._lost()
            if self._closing:
                return
            log.info("connection ended (%s %s)", outcome.code, outcome.reason)
            if self._switching:
                self._switching = False
                continue
            if outcome.code == CloseCode.INVALID_AUTH:
                if await self._tokens.after_refusal():
                    continue
                self._stop(AuthenticationFailed(outcome.reason))
                return
            self._states.set(ConnectionState.ERRORED)
            if outcome.code == CloseCode.BAD_ROUTE and self._follow(outcome.reason):
                continue
            await asyncio.sleep(self._backoff.next())

    def _lost(self) -> None:
        """The connection is gone: nothing more can be sent on it (idempotent)."""
        self._subs.on_connection_lost()
        self._tokens.lost()
        if not self._stopped.is_set():
            self._wake.clear()

    def _follow(self, reason: str) -> bool:
        """Take the 4006 close reason as the new URL; False if it is not one to follow."""
        if self._redirects >= MAX_REDIRECTS:
            log.warning("too many redirects in a row; backing off")
            return False
        try:
            self.url = wire.socket_url(reason, self._compression)
        except ValueError:
            log.warning("4006 with a reason that is not a socket URL: %r", reason)
            return False
        self._redirects += 1
        log.info("redirected to %s", self.url)
        return True

    # One connection.

    async def _connection(self) -> Outcome:
        try:
            async with websockets.connect(
                self.url,
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
        self._states.set(ConnectionState.AUTHENTICATING)
        self._echoed_tags.clear()
        heartbeat: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S) as handshake:
                interval = _heartbeat_interval(wire.decode(await ws.recv()))
                await ws.send(await self._identify())
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
            await ws.close(CloseCode.INVALID_PAYLOAD, "bad frame")
            return Outcome(None, f"bad frame: {exc}")
        finally:
            # At once, before awaiting anything: no call may queue frames for this socket.
            self._lost()
            if heartbeat is not None:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat

    async def _identify(self) -> str:
        token, extra = await self._tokens.identify()
        recover = self._positions.identify_map()
        if recover is not None:
            extra["recover"] = recover
        return wire.identify(self._project_id, token, extra)

    async def _heartbeat(self, ws: ClientConnection, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if not self._subs.heartbeat():
                # The beat of one interval ago was never acked: the link is dead even
                # if TCP has not noticed. Drop it; the reader sees the loss and reconnects.
                log.warning("no heartbeat ack within %.1fs; reconnecting", interval)
                ws.transport.abort()
                return
            await self.flush(ws)

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
        await self.flush(ws)


def _heartbeat_interval(hello: dict[str, Any]) -> float:
    if hello.get("op") != Op.HELLO:
        raise ValueError(f"expected HELLO first, got op {hello.get('op')}")
    d = hello.get("d")
    ms = d.get("heartbeat_interval") if isinstance(d, dict) else None
    if not isinstance(ms, int | float) or isinstance(ms, bool) or ms <= 0:
        raise ValueError(f"HELLO without a heartbeat_interval: {hello!r}")
    return float(ms) / 1000
