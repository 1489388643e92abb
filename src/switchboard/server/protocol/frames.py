"""Leap frames: opcodes, close codes, and the JSON of every frame.

Server frames are built here and nowhere else. Client frames are decoded here into
typed structs; a frame that is not JSON, or not of the right shape, raises
``ProtocolViolation(4005)``.
"""

from __future__ import annotations

from typing import Any

import msgspec

# One definition for the server and the realtime client; re-exported for the server's side.
from switchboard._leap_ops import CloseCode as CloseCode
from switchboard._leap_ops import Op as Op
from switchboard.exceptions import ProtocolViolation

# Client → server frames. Unknown keys are ignored (clients add their own, e.g. Go's "u").


class ClientFrame(msgspec.Struct):
    op: int
    d: msgspec.Raw = msgspec.Raw(b"null")


class Since(msgspec.Struct, frozen=True):
    """A client's position in a channel's history (Switchboard's): the last ``offset`` it
    saw within ``epoch``. ``epoch`` None: no position yet (tell me where the history is)."""

    offset: int = 0
    epoch: str | None = None


MAX_EXPIRY_NOTICE_S = 24 * 3600.0
"""The longest notice a client may ask for before its token expires."""


class IdentifyData(msgspec.Struct):
    project_id: str
    token: str | None = None
    expiry_notice: float | None = None
    """Switchboard's: send ``TOKEN_EXPIRING`` this many seconds before the token expires."""
    recover: dict[str, Since] | None = None
    """Switchboard's: recover these INIT channels from these positions (present, even
    empty: report the position of every INIT channel that keeps history), and under
    ``$inbox`` the token's inbox (docs/inbox.md)."""


class HeartbeatData(msgspec.Struct):
    tag: str | None = None


class ClientDispatch(msgspec.Struct):
    e: str
    c: str | None = None
    d: msgspec.Raw = msgspec.Raw(b"null")


class TokenRefreshData(msgspec.Struct):
    """TOKEN_REFRESH's ``d`` (Switchboard's)."""

    token: str


class ClientMessage(msgspec.Struct):
    e: str
    d: msgspec.Raw = msgspec.Raw(b"null")


_frame_decoder = msgspec.json.Decoder(ClientFrame)
_identify_decoder = msgspec.json.Decoder(IdentifyData | None)
_heartbeat_decoder = msgspec.json.Decoder(HeartbeatData | None)
_dispatch_decoder = msgspec.json.Decoder(ClientDispatch)
_message_decoder = msgspec.json.Decoder(ClientMessage)
_loose_decoder = msgspec.json.Decoder()
_refresh_decoder = msgspec.json.Decoder(TokenRefreshData)


def _decode(decoder: msgspec.json.Decoder[Any], data: bytes | str, what: str) -> Any:
    try:
        return decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ProtocolViolation(CloseCode.INVALID_PAYLOAD, f"invalid {what}: {exc}") from exc
    except UnicodeError as exc:
        # msgspec raises these, not DecodeError, for bytes that are not UTF-8 (a binary
        # frame) and for a str holding a lone surrogate (which has no UTF-8 form).
        raise ProtocolViolation(CloseCode.INVALID_PAYLOAD, f"invalid {what}: not UTF-8") from exc
    except RecursionError as exc:
        # msgspec checks every nested array and object, even inside a Raw it keeps as
        # bytes, on the C stack under the interpreter's recursion limit: nesting deeper
        # than that (about 900 levels) raises RecursionError, not DecodeError.
        raise ProtocolViolation(
            CloseCode.INVALID_PAYLOAD, f"invalid {what}: nested too deeply"
        ) from exc


def decode_frame(data: bytes | str) -> ClientFrame:
    if isinstance(data, bytes):
        # msgspec checks the UTF-8 of the strings it decodes, not of a Raw it keeps as
        # bytes: unchecked, a binary frame's bad bytes in a message's d would be relayed
        # in every subscriber's text frame, and each of their clients would fail (1007).
        try:
            data.decode()
        except UnicodeDecodeError as exc:
            raise ProtocolViolation(CloseCode.INVALID_PAYLOAD, "invalid frame: not UTF-8") from exc
    return _decode(_frame_decoder, data, "frame")  # type: ignore[no-any-return]


def decode_identify(raw: msgspec.Raw) -> IdentifyData:
    data: IdentifyData | None = _decode(_identify_decoder, raw, "IDENTIFY payload")
    if data is None:
        raise ProtocolViolation(CloseCode.INVALID_PAYLOAD, "IDENTIFY needs d.project_id")
    notice = data.expiry_notice
    if notice is not None and not 0 < notice <= MAX_EXPIRY_NOTICE_S:
        raise ProtocolViolation(
            CloseCode.INVALID_PAYLOAD,
            f"IDENTIFY expiry_notice must be over 0 and at most {MAX_EXPIRY_NOTICE_S:g} seconds",
        )
    if data.recover and any(s.offset < 0 for s in data.recover.values()):
        raise ProtocolViolation(CloseCode.INVALID_PAYLOAD, "IDENTIFY recover offsets must be >= 0")
    return data


def decode_heartbeat(raw: msgspec.Raw) -> HeartbeatData | None:
    return _decode(_heartbeat_decoder, raw, "HEARTBEAT payload")  # type: ignore[no-any-return]


def decode_dispatch(raw: msgspec.Raw) -> ClientDispatch:
    return _decode(_dispatch_decoder, raw, "DISPATCH payload")  # type: ignore[no-any-return]


def decode_subscribe(raw: msgspec.Raw) -> tuple[bool, Since | None]:
    """SUBSCRIBE's ``d``: whether it asks for presence (``{"presence": true}``) and the
    history position it asks to recover from (``{"since": {"offset", "epoch"}}``).

    Either key may be there, or both. Anything else means a plain subscribe and is
    never an error: Hop's clients put whatever they like in ``d`` (``null``), and
    SUBSCRIBE ignored it before these extensions; a ``since`` of the wrong shape is
    ignored the same way.
    """
    try:
        data = _loose_decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeError, RecursionError):
        return False, None
    if not isinstance(data, dict):
        return False, None
    presence = data.get("presence") is True
    since = data.get("since")
    if not isinstance(since, dict):
        return presence, None
    offset, epoch = since.get("offset", 0), since.get("epoch")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        return presence, None
    if epoch is not None and not isinstance(epoch, str):
        return presence, None
    return presence, Since(offset, epoch or None)


def decode_token_refresh(raw: msgspec.Raw) -> str | None:
    """TOKEN_REFRESH's token, or None if ``d`` is not ``{"token": "…"}``."""
    try:
        return _refresh_decoder.decode(raw).token or None
    except (msgspec.DecodeError, UnicodeError, RecursionError):
        return None


def decode_message(raw: msgspec.Raw) -> ClientMessage:
    return _decode(_message_decoder, raw, "MESSAGE payload")  # type: ignore[no-any-return]


# Server → client frames.

_encoder = msgspec.json.Encoder()


def encode(frame: dict[str, Any]) -> bytes:
    return _encoder.encode(frame)


def hello(heartbeat_interval_ms: int) -> bytes:
    return encode({"op": Op.HELLO, "d": {"heartbeat_interval": heartbeat_interval_ms}})


def heartbeat_ack(tag: str | None = None, latency_ms: int | None = None) -> bytes:
    if tag is None:
        return b'{"op":4}'
    d: dict[str, Any] = {"tag": tag}
    if latency_ms is not None:
        d["latency"] = latency_ms
    return encode({"op": Op.HEARTBEAT_ACK, "d": d})


def heartbeat_probe(tag: str) -> bytes:
    return encode({"op": Op.HEARTBEAT, "d": {"tag": tag}})


def dispatch(channel: str | None, event: str, data: Any, *, unicast: bool) -> bytes:
    """A DISPATCH frame. All four keys are always present: strict clients need them."""
    return encode({"op": Op.DISPATCH, "d": {"c": channel, "u": unicast, "e": event, "d": data}})


# The dispatches every node sends, one builder each: the fan-out, the edge and presence
# build them here and nowhere else.

_GRACEFUL = msgspec.Raw(msgspec.json.encode({"graceful": True}))


def leap_channel(project_id: str, channel_id: str, channel_type: str, state: Any) -> dict[str, Any]:
    """The LeapChannel object of ``INIT`` and ``AVAILABLE``."""
    return {
        "id": channel_id,
        "project_id": project_id,
        "type": channel_type,
        "state": state,
        "capabilities": 0,
    }


def available(
    project_id: str, channel_id: str, channel_type: str, state: Any, *, unicast: bool
) -> bytes:
    """``AVAILABLE``: the connection is on the channel now (its answer to a SUBSCRIBE is
    unicast; a grant made by the backend is not)."""
    channel = leap_channel(project_id, channel_id, channel_type, state)
    return dispatch(channel_id, "AVAILABLE", {"channel": channel}, unicast=unicast)


def unavailable(channel_id: str) -> bytes:
    """``UNAVAILABLE {graceful: true}``: the channel was deleted or the grant removed."""
    return dispatch(channel_id, "UNAVAILABLE", _GRACEFUL, unicast=False)


def subscribe_refused(channel_id: str, error_code: str) -> bytes:
    """``UNAVAILABLE {graceful: false, error_code}``: a SUBSCRIBE was refused."""
    d = {"graceful": False, "error_code": error_code}
    return dispatch(channel_id, "UNAVAILABLE", d, unicast=True)


def message(
    channel_id: str, event: str, data: Any, offset: int | None = None, epoch: str | None = None
) -> bytes:
    """A live ``MESSAGE``. ``offset`` and ``epoch`` only on channels with history (an
    opt-in: Hop's clients read ``e`` and ``d``)."""
    d: dict[str, Any] = {"e": event, "d": data}
    if offset is not None:
        d["offset"] = offset
        d["epoch"] = epoch
    return dispatch(channel_id, "MESSAGE", d, unicast=False)


def direct_message(
    event: str, data: Any, offset: int | None = None, epoch: str | None = None
) -> bytes:
    """``DIRECT_MESSAGE`` to every connection of a token. ``offset`` and ``epoch`` only
    when the project keeps token inboxes (an opt-in: Hop's clients read ``e`` and ``d``)."""
    d: dict[str, Any] = {"e": event, "d": data}
    if offset is not None:
        d["offset"] = offset
        d["epoch"] = epoch
    return dispatch(None, "DIRECT_MESSAGE", d, unicast=False)


def state_update(channel_id: str, state: Any) -> bytes:
    """``STATE_UPDATE`` with the channel's whole new state."""
    return dispatch(channel_id, "STATE_UPDATE", {"state": state}, unicast=False)


def token_state_update(state: Any) -> bytes:
    """``TOKEN_STATE_UPDATE`` with the token's whole new state (its metadata)."""
    return dispatch(None, "TOKEN_STATE_UPDATE", {"state": state}, unicast=False)


def presence_change(channel_id: str, event: str, member: dict[str, Any]) -> bytes:
    """``PRESENCE_JOIN`` or ``PRESENCE_LEAVE`` (Switchboard's) to a channel's watchers."""
    return dispatch(channel_id, event, member, unicast=False)


def presence_members(channel_id: str, members: list[dict[str, Any]]) -> bytes:
    """``PRESENCE`` (Switchboard's): who is on the channel, answering a SUBSCRIBE."""
    return dispatch(channel_id, "PRESENCE", {"presence": members}, unicast=True)


def error_dispatch(channel: str | None, code: str, message: str) -> bytes:
    """The ``ERROR`` dispatch: a refused client action that does not end the connection."""
    return dispatch(channel, "ERROR", {"code": code, "message": message}, unicast=True)


def token_expiring(expires_at: str, expires_in_ms: int) -> bytes:
    """``TOKEN_EXPIRING`` (Switchboard's): the notice a client asked for in IDENTIFY."""
    return dispatch(
        None,
        "TOKEN_EXPIRING",
        {"expires_at": expires_at, "expires_in_ms": expires_in_ms},
        unicast=True,
    )


def token_refreshed(expires_at: str | None) -> bytes:
    """``TOKEN_REFRESHED`` (Switchboard's): the answer to a good ``TOKEN_REFRESH``."""
    return dispatch(None, "TOKEN_REFRESHED", {"expires_at": expires_at}, unicast=True)


def refresh_error(code: str, message: str) -> bytes:
    """The ``ERROR`` answering a refused ``TOKEN_REFRESH``; ``request`` names what it answers."""
    return dispatch(
        None,
        "ERROR",
        {"code": code, "message": message, "request": "TOKEN_REFRESH"},
        unicast=True,
    )


def replayed_message(channel: str, event: str, data: Any, offset: int, epoch: str) -> bytes:
    """A ``MESSAGE`` sent again by a history recovery: ``u: true`` (to this connection
    alone) tells it from a live one, which is always ``u: false``."""
    return dispatch(
        channel, "MESSAGE", {"e": event, "d": data, "offset": offset, "epoch": epoch}, unicast=True
    )


def replayed_direct_message(event: str, data: Any, offset: int, epoch: str) -> bytes:
    """A ``DIRECT_MESSAGE`` sent again by an inbox recovery: ``u: true``, like a
    replayed ``MESSAGE``."""
    return dispatch(
        None,
        "DIRECT_MESSAGE",
        {"e": event, "d": data, "offset": offset, "epoch": epoch},
        unicast=True,
    )


def recovery(
    channel: str | None,
    *,
    recovered: bool,
    epoch: str | None,
    top_offset: int | None,
    reason: str | None = None,
) -> bytes:
    """``RECOVERY`` (Switchboard's): how a recovery ended; live messages follow it.
    ``channel`` None: the token's inbox (``recover``'s ``$inbox``)."""
    d: dict[str, Any] = {"recovered": recovered, "epoch": epoch, "top_offset": top_offset}
    if reason is not None:
        d["reason"] = reason
    return dispatch(channel, "RECOVERY", d, unicast=True)
