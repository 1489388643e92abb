"""`LeapSession`: one Leap connection's protocol state machine, with no I/O.

Feed it what the client sent with :meth:`LeapSession.receive_text`, and the passing of
time with :meth:`LeapSession.tick`; take out frames to write with
:meth:`~LeapSession.data_to_send` and things the application must do with
:meth:`~LeapSession.events_received`. Time is always passed in (seconds, any
monotonic origin); nothing here reads a clock or touches a socket, so tests drive it
with strings in and strings out.

What the session decides by itself: HELLO, heartbeat acks and probes, the IDENTIFY
deadline (4002), the heartbeat deadline (4007), dispatches before IDENTIFY (4003),
unknown opcodes (4004), malformed frames (4005), refusing ``SET_CHANNEL_STATE``, the
per-connection rate and size limits on client-published messages, and floods (4008):
a budget on frames of every kind, with strikes for what it refuses.

What it hands to the application as events: :class:`Identify`, :class:`Subscribe`,
:class:`Unsubscribe`, :class:`ClientPublish` and (Switchboard's) :class:`RefreshToken`. The application answers an
:class:`Identify` with :meth:`~LeapSession.accept` or :meth:`~LeapSession.close`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import msgspec

from switchboard.exceptions import ProtocolViolation
from switchboard.server.protocol import frames
from switchboard.server.protocol.frames import CloseCode, Op, Since
from switchboard.server.ratelimit import Bucket


class SessionState(enum.Enum):
    AWAITING_IDENTIFY = "awaiting_identify"
    """HELLO sent; the client must IDENTIFY before the deadline."""
    IDENTIFYING = "identifying"
    """IDENTIFY handed to the application; waiting for accept() or close()."""
    OPEN = "open"
    """INIT sent; dispatches flow both ways."""
    CLOSED = "closed"
    """A close code was chosen; the connection must be closed with it."""


@dataclass(frozen=True, slots=True)
class Identify:
    project_id: str
    token: str | None
    """``None`` for a tokenless connection (absent, ``null`` and ``""`` all mean none)."""
    expiry_notice_s: float | None = None
    """Switchboard's: send ``TOKEN_EXPIRING`` this long before the token expires."""
    recover: dict[str, Since] | None = None
    """Switchboard's: history positions of channels the client expects in INIT (``None``:
    no recovery asked for; ``{}``: only report where each INIT channel's history is)."""


@dataclass(frozen=True, slots=True)
class Subscribe:
    channel: str
    presence: bool = False
    """The client asked for presence dispatches (``d: {"presence": true}``, Switchboard's)."""
    since: Since | None = None
    """Switchboard's: recover the channel's history after this position
    (``d: {"since": {"offset", "epoch"}}``)."""


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """Switchboard's ``TOKEN_REFRESH``: the client presents its token again, to move the
    connection's expiry to the token's current one without reconnecting."""

    token: str | None
    """None when ``d`` was not ``{"token": "…"}`` (answered with an ``ERROR``)."""


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    channel: str


@dataclass(frozen=True, slots=True)
class ClientPublish:
    channel: str
    event: str
    data: msgspec.Raw
    """The message's ``d`` exactly as the client sent it."""


Event = Identify | Subscribe | Unsubscribe | ClientPublish | RefreshToken


@dataclass(frozen=True, slots=True)
class SessionLimits:
    heartbeat_interval_ms: int = 30_000
    identify_timeout_s: float = 10.0
    max_payload_bytes: int = 64 * 1024
    max_event_name: int = 128
    messages_per_second: float = 50.0
    frames_per_second: float = 200.0
    """Frames of any kind a client may send per second; past it a frame is dropped unread
    and counts as a strike. The burst is twice the rate (a reconnecting tokenless client
    subscribes to all its channels at once)."""
    flood_strikes: float = 100.0
    """Strikes (dropped frames, refused messages) a connection may hold; one more closes it
    with 4008. Strikes drain at ``messages_per_second``, so a client a little over a
    limit only sees ``ERROR`` dispatches and one far over it is closed in about a second."""


class LeapSession:
    """The protocol state of one connection. See the module docstring."""

    # One per live socket: slots instead of a __dict__ keep an idle connection small
    # (bench/memory.py).
    __slots__ = (
        "_events",
        "_frames",
        "_messages",
        "_outgoing",
        "_probe_count",
        "_probe_sent_at",
        "_probe_tag",
        "_strikes",
        "close_code",
        "close_reason",
        "last_received",
        "limits",
        "opened_at",
        "state",
    )

    def __init__(self, *, now: float, limits: SessionLimits | None = None) -> None:
        self.limits = limits or SessionLimits()
        self.state = SessionState.AWAITING_IDENTIFY
        self.close_code: int | None = None
        """Set when the session decides the connection must close."""
        self.close_reason = ""
        self.opened_at = now
        self.last_received = now
        """When the client last sent a frame; any frame proves it is alive."""
        self._outgoing: list[bytes] = []
        self._events: list[Event] = []
        self._probe_tag: str | None = None
        self._probe_sent_at = 0.0
        self._probe_count = 0
        limits = self.limits
        rate = limits.messages_per_second
        self._messages = Bucket(rate, rate, now)
        self._frames = Bucket(limits.frames_per_second, limits.frames_per_second * 2, now)
        self._strikes = Bucket(limits.messages_per_second, limits.flood_strikes, now)
        self._send(frames.hello(self.limits.heartbeat_interval_ms))

    # Public methods for receiving data.

    def receive_text(self, data: str | bytes, now: float) -> None:
        """Take one frame the client sent."""
        if self.state is SessionState.CLOSED:
            return
        self.last_received = now
        if not self._frames.take(now):
            self._strike("frames", now)
            return
        try:
            self._receive_frame(frames.decode_frame(data), now)
        except ProtocolViolation as exc:
            self.close(exc.close_code, exc.reason)

    def tick(self, now: float) -> None:
        """Let time pass: enforce deadlines and probe a silent client."""
        if self.state is SessionState.CLOSED:
            return
        if self.state is SessionState.AWAITING_IDENTIFY:
            if now - self.opened_at >= self.limits.identify_timeout_s:
                self.close(CloseCode.IDENTIFY_TIMEOUT, "no IDENTIFY in time")
            return
        interval = self.limits.heartbeat_interval_ms / 1000
        silent = now - self.last_received
        if silent >= interval * 1.5 + 5:
            self.close(CloseCode.OUT_OF_SYNC, "no heartbeat in time")
        elif silent >= interval and self._probe_tag is None:
            self._probe_count += 1
            self._probe_tag = str(self._probe_count)
            self._probe_sent_at = now
            self._send(frames.heartbeat_probe(self._probe_tag))

    def next_deadline(self) -> float | None:
        """The next time :meth:`tick` has something to do, or ``None`` if closed."""
        if self.state is SessionState.CLOSED:
            return None
        if self.state is SessionState.AWAITING_IDENTIFY:
            return self.opened_at + self.limits.identify_timeout_s
        interval = self.limits.heartbeat_interval_ms / 1000
        if self._probe_tag is None:
            return self.last_received + interval
        return self.last_received + interval * 1.5 + 5

    # Public methods for the application's answers.

    def accept(self, init: dict[str, Any]) -> None:
        """The IDENTIFY was good: send INIT with ``init`` as its data and open."""
        if self.state is not SessionState.IDENTIFYING:
            raise RuntimeError(f"accept() in state {self.state.name}, expected IDENTIFYING")
        self.state = SessionState.OPEN
        self._send(frames.dispatch(None, "INIT", init, unicast=True))

    def send(self, frame: bytes) -> None:
        """Queue a frame the application built (AVAILABLE, UNAVAILABLE, ERROR...)."""
        if self.state is not SessionState.CLOSED:
            self._send(frame)

    def close(self, code: int, reason: str) -> None:
        """Decide to close with ``code``. The first decision wins."""
        if self.state is SessionState.CLOSED:
            return
        self.state = SessionState.CLOSED
        self.close_code = code
        self.close_reason = reason

    # Public methods for taking output.

    def data_to_send(self) -> list[bytes]:
        """Frames to write, in order. Each is one JSON text payload."""
        out, self._outgoing = self._outgoing, []
        return out

    def events_received(self) -> list[Event]:
        """Intents for the application, in the order the client sent them."""
        out, self._events = self._events, []
        return out

    # Private methods.

    def _send(self, frame: bytes) -> None:
        self._outgoing.append(frame)

    def _receive_frame(self, frame: frames.ClientFrame, now: float) -> None:
        op = frame.op
        if op == Op.HEARTBEAT:
            self._receive_heartbeat(frames.decode_heartbeat(frame.d), now)
        elif op == Op.IDENTIFY:
            if self.state is not SessionState.AWAITING_IDENTIFY:
                raise ProtocolViolation(CloseCode.INVALID_PAYLOAD, "already identified")
            identify = frames.decode_identify(frame.d)
            self.state = SessionState.IDENTIFYING
            self._events.append(
                Identify(
                    identify.project_id,
                    identify.token or None,
                    identify.expiry_notice,
                    identify.recover,
                )
            )
        elif op == Op.DISPATCH:
            if self.state is not SessionState.OPEN:
                raise ProtocolViolation(CloseCode.NOT_AUTHENTICATED, "dispatch before IDENTIFY")
            self._receive_dispatch(frames.decode_dispatch(frame.d), now)
        else:
            raise ProtocolViolation(CloseCode.UNKNOWN_OPCODE, f"unknown opcode {op}")

    def _receive_heartbeat(self, data: frames.HeartbeatData | None, now: float) -> None:
        tag = data.tag if data is not None else None
        if tag is not None and tag == self._probe_tag:
            latency = round((now - self._probe_sent_at) * 1000)
            self._probe_tag = None
            self._send(frames.heartbeat_ack(tag, latency))
        else:
            self._send(frames.heartbeat_ack(tag))

    def _receive_dispatch(self, dispatch: frames.ClientDispatch, now: float) -> None:
        event = dispatch.e
        if event in ("SUBSCRIBE", "UNSUBSCRIBE", "MESSAGE", "SET_CHANNEL_STATE"):
            channel = dispatch.c
            if not isinstance(channel, str) or not channel:
                raise ProtocolViolation(CloseCode.INVALID_PAYLOAD, f"{event} needs a channel in c")
            if event == "SUBSCRIBE":
                presence, since = frames.decode_subscribe(dispatch.d)
                self._events.append(Subscribe(channel, presence, since))
            elif event == "UNSUBSCRIBE":
                self._events.append(Unsubscribe(channel))
            elif event == "MESSAGE":
                self._receive_message(channel, frames.decode_message(dispatch.d), now)
            else:
                self._send(
                    frames.error_dispatch(
                        channel,
                        "forbidden",
                        "SET_CHANNEL_STATE is not supported from clients; "
                        "set state through the server API",
                    )
                )
        elif event == "TOKEN_REFRESH":
            self._events.append(RefreshToken(frames.decode_token_refresh(dispatch.d)))
        # Anything else (pipe rooms, future events) is ignored, as SPEC §3 says.

    def _receive_message(self, channel: str, message: frames.ClientMessage, now: float) -> None:
        limits = self.limits
        if not 1 <= len(message.e) <= limits.max_event_name:
            self._send(
                frames.error_dispatch(
                    channel,
                    "invalid_request",
                    f"event name must be 1 to {limits.max_event_name} characters",
                )
            )
            return
        if len(message.d) > limits.max_payload_bytes:
            self._send(
                frames.error_dispatch(
                    channel,
                    "payload_too_large",
                    f"message data is {len(message.d)} bytes; "
                    f"the limit is {limits.max_payload_bytes}",
                )
            )
            return
        if not self._messages.take(now):
            self._send(
                frames.error_dispatch(
                    channel,
                    "rate_limited",
                    f"more than {limits.messages_per_second:g} messages per second; "
                    "this one was not delivered",
                )
            )
            self._strike("messages", now)
            return
        self._events.append(ClientPublish(channel, message.e, message.d))

    def _strike(self, what: str, now: float) -> None:
        """Count one refused frame or message; past the allowance, close with 4008."""
        if not self._strikes.take(now):
            self.close(CloseCode.FLOODING, f"too many {what}: over the rate limit for too long")
