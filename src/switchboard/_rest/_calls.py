"""The server API's calls: what a call is, how its answer is read, and the argument checks.

A builder (``get_channel(...)``) checks its arguments, raising :class:`TypeError` or
:class:`ValueError` before anything touches the network, and returns a :class:`Call`:
the request to make and how to read its answer. The sync and async clients only
carry calls over HTTP; they never build a path or read a body themselves.

The builders live with their resource: ``_channel_calls`` (channels, their state,
subscribers and history), ``_token_calls`` (tokens), ``_presence``, ``_project``
(settings) and ``_webhooks``. This module is what they share.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from switchboard._rest._models import Channel, Token
from switchboard.exceptions import APIError, api_error_for

T = TypeVar("T")

ChannelRef = str | Channel
"""A channel ID, or a :class:`Channel` read earlier."""
TokenRef = str | Token
"""A token ID (``leap_token_…``), or a :class:`Token` read earlier."""
State = Mapping[str, Any]
"""Channel or token state: a JSON object."""

RESERVED_CHANNEL_IDS = frozenset({"tokens"})


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request and the reading of its answer."""

    method: str
    path: str
    """Below ``/v1``, already percent-encoded."""
    read: Callable[[dict[str, Any]], T]
    """Turns the envelope's ``data`` into the result."""
    body: bytes | None = None
    params: tuple[tuple[str, str], ...] = ()
    idempotent: bool = False
    """Safe to send twice: the client may retry it after a timeout or a 502/503/504."""

    def result(self, status: int, content: bytes) -> T:
        """The call's result from a response, or the :class:`APIError` it carries."""
        if status == 204 or (200 <= status < 300 and not content.strip()):
            data: Any = {}
        else:
            envelope = _decode_envelope(status, content)
            if not 200 <= status < 300 or envelope.get("success") is False:
                raise _error_from(status, envelope)
            data = envelope.get("data")
            data = {} if data is None else data
        if not isinstance(data, dict):
            raise _invalid(status, f"expected an object in data, got {type(data).__name__}")
        try:
            return self.read(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise _invalid(
                status, f"unexpected response to {self.method} {self.path}: {exc!r}"
            ) from exc


def _invalid(status: int, message: str) -> APIError:
    return APIError(message, status=status, code="invalid_response")


def _decode_envelope(status: int, content: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(content)
    except ValueError:
        # Not our server answering (a proxy's HTML page, say): keep a short excerpt.
        excerpt = content[:200].decode("utf-8", "replace").strip()
        if 200 <= status < 300:
            raise _invalid(status, f"the response is not JSON: {excerpt!r}") from None
        raise api_error_for(status, "http_error", excerpt or f"HTTP {status}") from None
    if not isinstance(envelope, dict):
        raise _invalid(status, "the response is not a JSON object")
    return envelope


def _error_from(status: int, envelope: dict[str, Any]) -> APIError:
    error = envelope.get("error")
    if isinstance(error, dict):
        code = str(error.get("code") or "unknown_error")
        message = str(error.get("message") or code)
        permission = error.get("permission")
    else:
        # Older Hop-style errors put the message at the top level.
        code = "unknown_error"
        message = str(envelope.get("message") or error or f"HTTP {status}")
        permission = None
    return api_error_for(
        status, code, message, permission=permission if isinstance(permission, str) else None
    )


# Argument checks. Each names the argument so the error says what to fix.


def encode_json(value: Any, what: str) -> bytes:
    """Compact JSON, or :class:`TypeError`/:class:`ValueError` naming ``what``."""
    try:
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except TypeError as exc:
        raise TypeError(f"{what} must be JSON-serializable: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{what} must be JSON-serializable: {exc}") from None


def check_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    return value


def channel_id(channel: object) -> str:
    """The ID in a :data:`ChannelRef`, percent-encoded for a path."""
    if isinstance(channel, Channel):
        channel = channel.id
    elif not isinstance(channel, str):
        raise TypeError(
            f"channel must be a channel ID (str) or a Channel, got {type(channel).__name__}"
        )
    check_str(channel, "channel ID")
    if channel in RESERVED_CHANNEL_IDS:
        raise ValueError(f"channel ID {channel!r} is reserved")
    return quote(channel, safe="")


def token_id(token: object) -> str:
    """The ID in a :data:`TokenRef`, percent-encoded for a path."""
    if isinstance(token, Token):
        token = token.id
    elif not isinstance(token, str):
        raise TypeError(f"token must be a token ID (str) or a Token, got {type(token).__name__}")
    return quote(check_str(token, "token ID"), safe="")


def token_refs(tokens: object) -> list[TokenRef]:
    """The items of an iterable of :data:`TokenRef`, each checked (a lone ``str`` is refused)."""
    if isinstance(tokens, str | Token) or not isinstance(tokens, Iterable):
        raise TypeError(
            f"tokens must be an iterable of token IDs or Tokens, got {type(tokens).__name__}"
        )
    refs: list[TokenRef] = list(tokens)
    for ref in refs:
        token_id(ref)
    return refs


def state_object(state: object, what: str = "state") -> dict[str, Any]:
    """A state argument: a mapping with string keys (``None`` means ``{}``)."""
    if state is None:
        return {}
    if not isinstance(state, Mapping):
        raise TypeError(f"{what} must be a dict (a JSON object), got {type(state).__name__}")
    result = dict(state)
    for key in result:
        if not isinstance(key, str):
            raise TypeError(f"{what} keys must be str, got {key!r}")
    return result


def message_body(event: object, data: Any, idempotency_key: object = None) -> bytes:
    body = {"e": check_str(event, "event"), "d": data}
    if idempotency_key is not None:
        body["idempotency_key"] = check_str(idempotency_key, "idempotency_key")
    return encode_json(body, "data")


# Readers of the envelope's data.


def nothing(data: dict[str, Any]) -> None:
    """The reader of a call that answers nothing worth reading."""
    return None
