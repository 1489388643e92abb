"""Typed events: one class per server dispatch, as ``client.events()`` yields them.

:func:`parse_dispatch` reads a dispatch's ``d`` (``{c, u, e, d}``). It never raises: a
dispatch it does not know, or one of the wrong shape, becomes :class:`UnknownDispatch`
so that a newer server cannot break an older client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from switchboard.client._wire import INBOX

__all__ = [
    "Available",
    "DirectMessage",
    "ErrorEvent",
    "Event",
    "Init",
    "LeapChannel",
    "Member",
    "Message",
    "PresenceJoin",
    "PresenceLeave",
    "PresenceSnapshot",
    "Recovery",
    "StateUpdate",
    "TokenExpiring",
    "TokenRefreshed",
    "TokenStateUpdate",
    "Unavailable",
    "UnknownDispatch",
    "parse_dispatch",
]


@dataclass(frozen=True, slots=True)
class LeapChannel:
    """A channel as the gateway describes it (in ``INIT`` and ``AVAILABLE``)."""

    id: str
    project_id: str
    type: str
    state: dict[str, Any]
    capabilities: int = 0

    @classmethod
    def from_json(cls, value: Any) -> LeapChannel:
        if not isinstance(value, dict) or not isinstance(value.get("id"), str):
            raise ValueError(f"not a channel: {value!r}")
        state = value.get("state")
        return cls(
            id=value["id"],
            project_id=str(value.get("project_id", "")),
            type=str(value.get("type", "")),
            state=state if isinstance(state, dict) else {},
            capabilities=int(value.get("capabilities") or 0),
        )


@dataclass(frozen=True, slots=True)
class Init:
    """The connection is identified (``INIT``)."""

    cid: str
    """This connection's ID."""
    connection_count: int
    """Live connections of this token, this one included."""
    metadata: dict[str, Any] | None
    """The token's state; ``None`` without a token."""
    scope: str
    """``"token"``, ``"project"`` (identified with a project token) or ``"noauth"``."""
    channels: tuple[LeapChannel, ...]
    """The token's subscriptions (empty without a token)."""


@dataclass(frozen=True, slots=True)
class Available:
    """A subscription started (``AVAILABLE``): an answer to SUBSCRIBE, or a grant."""

    channel: str
    info: LeapChannel


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A subscription was refused or ended (``UNAVAILABLE``).

    ``graceful`` is true when the channel was deleted or the token's grant removed;
    false with an ``error_code`` (``NOT_GRANTED``, ``UNKNOWN``) when a SUBSCRIBE was
    refused.
    """

    channel: str
    graceful: bool
    error_code: str | None


@dataclass(frozen=True, slots=True)
class StateUpdate:
    """A channel's state changed (``STATE_UPDATE``); ``state`` is the full new state."""

    channel: str
    state: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Message:
    """A message published to a channel (``MESSAGE``)."""

    channel: str
    event: str
    data: Any
    offset: int | None = None
    """Its position in the channel's history (Switchboard's; None: no history)."""
    epoch: str | None = None
    recovered: bool = False
    """Sent again by a history recovery after a reconnect, not live (Switchboard's)."""


@dataclass(frozen=True, slots=True)
class Recovery:
    """How recovering a channel's missed messages ended (``RECOVERY``, Switchboard's).

    The recovered messages came before it (``Message.recovered``); live ones follow.
    When ``recovered`` is false the gap could not be filled (``reason``: ``too_old``,
    ``epoch_changed``, ``offset_ahead``, ``no_history``, ``unavailable``) and the app
    should reload the channel's state. ``channel`` ``"$inbox"``: the token's inbox.
    """

    channel: str
    recovered: bool
    reason: str | None
    epoch: str | None
    top_offset: int | None


@dataclass(frozen=True, slots=True)
class TokenExpiring:
    """The token expires soon (``TOKEN_EXPIRING``, Switchboard's; asked for with ``get_token``)."""

    expires_at: str
    expires_in: float
    """Seconds left when the server sent it."""


@dataclass(frozen=True, slots=True)
class TokenRefreshed:
    """A ``TOKEN_REFRESH`` was taken (``TOKEN_REFRESHED``): the connection's new expiry."""

    expires_at: str | None


@dataclass(frozen=True, slots=True)
class DirectMessage:
    """A message sent to this connection's token (``DIRECT_MESSAGE``)."""

    event: str
    data: Any
    offset: int | None = None
    """Its position in the token's inbox (Switchboard's; None: the project keeps none)."""
    epoch: str | None = None
    recovered: bool = False
    """Sent again by an inbox recovery after a reconnect, not live."""


@dataclass(frozen=True, slots=True)
class TokenStateUpdate:
    """This connection's token got a new state (``TOKEN_STATE_UPDATE``)."""

    state: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """The server refused something this connection sent (``ERROR``), e.g. a publish
    over the rate limit; the connection stays open."""

    channel: str | None
    code: str
    message: str
    request: str | None = None
    """What it answers, when the server says (``"TOKEN_REFRESH"``)."""


@dataclass(frozen=True, slots=True)
class Member:
    """A token present on a channel, as presence dispatches name it (Switchboard's own)."""

    member_id: str
    """A stable public name for the token (never the token ID, which is a credential)."""
    state: dict[str, Any]
    """The token's state (its metadata, e.g. ``{"user_id": "42"}``)."""

    @classmethod
    def from_json(cls, value: Any) -> Member:
        data = _object(value)
        state = data.get("state")
        return cls(str(data["member_id"]), state if isinstance(state, dict) else {})


@dataclass(frozen=True, slots=True)
class PresenceSnapshot:
    """Who was on the channel when this client asked for presence (``PRESENCE``)."""

    channel: str
    members: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class PresenceJoin:
    """A token's first connection subscribed to the channel (``PRESENCE_JOIN``)."""

    channel: str
    member: Member


@dataclass(frozen=True, slots=True)
class PresenceLeave:
    """A token's last connection left the channel (``PRESENCE_LEAVE``)."""

    channel: str
    member: Member


@dataclass(frozen=True, slots=True)
class UnknownDispatch:
    """A dispatch this client does not know, as it came."""

    channel: str | None
    event: str
    data: Any
    unicast: bool


Event = (
    Init
    | Available
    | Unavailable
    | StateUpdate
    | Message
    | DirectMessage
    | TokenStateUpdate
    | ErrorEvent
    | PresenceSnapshot
    | PresenceJoin
    | PresenceLeave
    | Recovery
    | TokenExpiring
    | TokenRefreshed
    | UnknownDispatch
)


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"expected an object, got {value!r}")
    return value


def _channel(c: Any) -> str:
    if not isinstance(c, str) or not c:
        raise ValueError(f"expected a channel ID in c, got {c!r}")
    return c


# One parser per dispatch the client knows: ``(c, d, u)`` of the dispatch in, the typed
# event out; a payload of the wrong shape raises LookupError, TypeError or ValueError.


def _init(c: Any, d: Any, u: bool) -> Init:
    data = _object(d)
    metadata = data.get("metadata")
    return Init(
        cid=str(data.get("cid", "")),
        connection_count=int(data.get("connection_count") or 0),
        metadata=metadata if isinstance(metadata, dict) else None,
        scope=str(data.get("scope", "")),
        channels=tuple(LeapChannel.from_json(ch) for ch in data.get("channels") or ()),
    )


def _available(c: Any, d: Any, u: bool) -> Available:
    info = LeapChannel.from_json(_object(d).get("channel"))
    # c is the ID; Go's client keys on d.channel.id. Both should agree.
    return Available(channel=c if isinstance(c, str) and c else info.id, info=info)


def _unavailable(c: Any, d: Any, u: bool) -> Unavailable:
    data = _object(d)
    code = data.get("error_code")
    return Unavailable(_channel(c), bool(data.get("graceful")), code if code else None)


def _state_update(c: Any, d: Any, u: bool) -> StateUpdate:
    return StateUpdate(_channel(c), _object(_object(d).get("state")))


def _message(c: Any, d: Any, u: bool) -> Message:
    data = _object(d)
    offset, epoch = data.get("offset"), data.get("epoch")
    if not (isinstance(offset, int) and isinstance(epoch, str)) or isinstance(offset, bool):
        offset = epoch = None
    # A unicast MESSAGE is one a history recovery sends again.
    return Message(_channel(c), str(data["e"]), data.get("d"), offset, epoch, u)


def _recovery(c: Any, d: Any, u: bool) -> Recovery:
    data = _object(d)
    reason, epoch, top = data.get("reason"), data.get("epoch"), data.get("top_offset")
    return Recovery(
        INBOX if c is None else _channel(c),  # c: null is the token's inbox
        data.get("recovered") is True,
        reason if isinstance(reason, str) else None,
        epoch if isinstance(epoch, str) else None,
        top if isinstance(top, int) and not isinstance(top, bool) else None,
    )


def _token_expiring(c: Any, d: Any, u: bool) -> TokenExpiring:
    data = _object(d)
    return TokenExpiring(str(data["expires_at"]), float(data.get("expires_in_ms", 0)) / 1000)


def _token_refreshed(c: Any, d: Any, u: bool) -> TokenRefreshed:
    expires_at = _object(d).get("expires_at")
    return TokenRefreshed(expires_at if isinstance(expires_at, str) else None)


def _direct_message(c: Any, d: Any, u: bool) -> DirectMessage:
    data = _object(d)
    offset, epoch = data.get("offset"), data.get("epoch")
    if not (isinstance(offset, int) and isinstance(epoch, str)) or isinstance(offset, bool):
        offset = epoch = None
    # Only an inbox recovery sends one with an offset as unicast.
    return DirectMessage(str(data["e"]), data.get("d"), offset, epoch, u and offset is not None)


def _token_state_update(c: Any, d: Any, u: bool) -> TokenStateUpdate:
    return TokenStateUpdate(_object(_object(d).get("state")))


def _error(c: Any, d: Any, u: bool) -> ErrorEvent:
    data = _object(d)
    request = data.get("request")
    return ErrorEvent(
        c if isinstance(c, str) else None,
        str(data.get("code", "")),
        str(data.get("message", "")),
        request if isinstance(request, str) else None,
    )


def _presence(c: Any, d: Any, u: bool) -> PresenceSnapshot:
    members = _object(d).get("presence")
    if not isinstance(members, list):
        raise ValueError(f"expected a list of members, got {members!r}")
    return PresenceSnapshot(_channel(c), tuple(Member.from_json(m) for m in members))


def _presence_join(c: Any, d: Any, u: bool) -> PresenceJoin:
    return PresenceJoin(_channel(c), Member.from_json(d))


def _presence_leave(c: Any, d: Any, u: bool) -> PresenceLeave:
    return PresenceLeave(_channel(c), Member.from_json(d))


_PARSERS: dict[str, Callable[[Any, Any, bool], Event]] = {
    "INIT": _init,
    "AVAILABLE": _available,
    "UNAVAILABLE": _unavailable,
    "STATE_UPDATE": _state_update,
    "MESSAGE": _message,
    "RECOVERY": _recovery,
    "TOKEN_EXPIRING": _token_expiring,
    "TOKEN_REFRESHED": _token_refreshed,
    "DIRECT_MESSAGE": _direct_message,
    "TOKEN_STATE_UPDATE": _token_state_update,
    "ERROR": _error,
    "PRESENCE": _presence,
    "PRESENCE_JOIN": _presence_join,
    "PRESENCE_LEAVE": _presence_leave,
}


def parse_dispatch(d: Any) -> Event:
    """The typed event for a dispatch's ``d`` (``{c, u, e, d}``)."""
    if not isinstance(d, dict):
        return UnknownDispatch(None, "", d, False)
    c, e, data = d.get("c"), d.get("e"), d.get("d")
    if not isinstance(e, str):
        return UnknownDispatch(c if isinstance(c, str) else None, "", data, bool(d.get("u")))
    try:
        return _PARSERS[e](c, data, d.get("u") is True)
    except (LookupError, TypeError, ValueError):
        return UnknownDispatch(c if isinstance(c, str) else None, e, data, bool(d.get("u")))
