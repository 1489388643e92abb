"""Leap frames: opcodes, close codes, and the JSON of every frame.

Server frames are built here and nowhere else. Client frames are decoded here into
typed structs; a frame that is not JSON, or not of the right shape, raises
``ProtocolViolation(4005)``.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from switchboard.exceptions import ProtocolViolation


class Op(enum.IntEnum):
    DISPATCH = 0
    HELLO = 1
    IDENTIFY = 2
    HEARTBEAT = 3
    HEARTBEAT_ACK = 4


class CloseCode(enum.IntEnum):
    """WebSocket close codes the gateway sends, and what the official clients do on each."""

    GOING_AWAY = 1001
    """Server shutting down: clients reconnect."""
    UNKNOWN_ERROR = 4000
    """Slow consumer, too many connections, or an unexpected failure: clients reconnect."""
    INVALID_AUTH = 4001
    """Bad project, bad/expired/deleted token: clients stop."""
    IDENTIFY_TIMEOUT = 4002
    NOT_AUTHENTICATED = 4003
    """A dispatch before IDENTIFY."""
    UNKNOWN_OPCODE = 4004
    INVALID_PAYLOAD = 4005
    """Not JSON, or not the right shape."""
    BAD_ROUTE = 4006
    """The close reason is the socket URL to use instead."""
    OUT_OF_SYNC = 4007
    """No heartbeat in time."""
    FLOODING = 4008
    """Switchboard's own: the client kept sending past its rate limits. Hop's clients
    do not know the code and reconnect, with their usual backoff."""


# Client → server frames. Unknown keys are ignored (clients add their own, e.g. Go's "u").


class ClientFrame(msgspec.Struct):
    op: int
    d: msgspec.Raw = msgspec.Raw(b"null")


class IdentifyData(msgspec.Struct):
    project_id: str
    token: str | None = None


class HeartbeatData(msgspec.Struct):
    tag: str | None = None


class ClientDispatch(msgspec.Struct):
    e: str
    c: str | None = None
    d: msgspec.Raw = msgspec.Raw(b"null")


class SubscribeData(msgspec.Struct):
    """SUBSCRIBE's ``d``, which Hop's clients send as ``null`` (or leave out)."""

    presence: bool = False


class ClientMessage(msgspec.Struct):
    e: str
    d: msgspec.Raw = msgspec.Raw(b"null")


_frame_decoder = msgspec.json.Decoder(ClientFrame)
_identify_decoder = msgspec.json.Decoder(IdentifyData | None)
_heartbeat_decoder = msgspec.json.Decoder(HeartbeatData | None)
_dispatch_decoder = msgspec.json.Decoder(ClientDispatch)
_message_decoder = msgspec.json.Decoder(ClientMessage)
_subscribe_decoder = msgspec.json.Decoder(SubscribeData | None)


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
    data = _decode(_identify_decoder, raw, "IDENTIFY payload")
    if data is None:
        raise ProtocolViolation(CloseCode.INVALID_PAYLOAD, "IDENTIFY needs d.project_id")
    return data  # type: ignore[no-any-return]


def decode_heartbeat(raw: msgspec.Raw) -> HeartbeatData | None:
    return _decode(_heartbeat_decoder, raw, "HEARTBEAT payload")  # type: ignore[no-any-return]


def decode_dispatch(raw: msgspec.Raw) -> ClientDispatch:
    return _decode(_dispatch_decoder, raw, "DISPATCH payload")  # type: ignore[no-any-return]


def wants_presence(raw: msgspec.Raw) -> bool:
    """True if SUBSCRIBE's ``d`` is ``{"presence": true, ...}``.

    Anything else means no, and is never an error: Hop's clients put whatever they like
    there, and SUBSCRIBE ignored ``d`` before presence existed.
    """
    try:
        data = _subscribe_decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeError, RecursionError):
        return False
    return data is not None and data.presence


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


def error_dispatch(channel: str | None, code: str, message: str) -> bytes:
    """The ``ERROR`` dispatch: a refused client action that does not end the connection."""
    return dispatch(channel, "ERROR", {"code": code, "message": message}, unicast=True)
