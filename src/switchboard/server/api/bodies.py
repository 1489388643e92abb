"""Request bodies, decoded and type-checked in one step.

``msgspec.Raw`` fields keep user JSON (state, message data) as the bytes it came in
as: validated as JSON, never decoded, spliced into what goes out.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from switchboard.exceptions import InvalidRequest

T = TypeVar("T")
NULL = b"null"


class ChannelBody(msgspec.Struct):
    type: str
    state: msgspec.Raw = msgspec.Raw(NULL)


class MessageBody(msgspec.Struct):
    e: str
    d: msgspec.Raw = msgspec.Raw(NULL)


class CreateTokenBody(msgspec.Struct):
    state: msgspec.Raw = msgspec.Raw(NULL)
    expires_at: str | None = None
    expiresAt: str | None = None


class UpdateTokenBody(msgspec.Struct):
    state: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    expires_at: str | msgspec.UnsetType | None = msgspec.UNSET
    expiresAt: str | msgspec.UnsetType | None = msgspec.UNSET


def decode(body: bytes, kind: type[T], what: str = "body") -> T:
    """Decode a request body as ``kind``; a clear 400 if it is not."""
    if not body.strip():
        raise InvalidRequest(f"the request {what} is empty; send JSON")
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid {what}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"the request {what} is not valid JSON: {exc}") from None


def optional(raw: msgspec.Raw) -> msgspec.Raw | None:
    """``None`` for a JSON ``null``."""
    return None if bytes(raw).strip() == NULL else raw


def json_value(body: bytes) -> msgspec.Raw:
    """A body that is itself the JSON value (channel state)."""
    return decode(body, msgspec.Raw)


def query_int(query: Any, name: str, default: int) -> int:
    value = query.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer") from None
