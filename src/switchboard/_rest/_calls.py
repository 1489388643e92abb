"""Every server API call, built and parsed here once for both clients.

A builder (``get_channel(...)``) checks its arguments, raising :class:`TypeError` or
:class:`ValueError` before anything touches the network, and returns a :class:`Call`:
the request to make and how to read its answer. The sync and async clients only
carry calls over HTTP; they never build a path or read a body themselves.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from switchboard._rest._models import Channel, ChannelType, History, Stats, Token
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


def channel_type(value: object) -> ChannelType:
    if not isinstance(value, str):
        raise TypeError(f"type must be a ChannelType or str, got {type(value).__name__}")
    try:
        return ChannelType(value)
    except ValueError:
        choices = ", ".join(t.value for t in ChannelType)
        raise ValueError(f"unknown channel type {value!r}; use one of {choices}") from None


def expiry(value: object) -> str | None:
    """``expires_at`` as ISO 8601: an aware datetime or an ISO string."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware (e.g. datetime.now(UTC) + ...)")
        return value.isoformat()
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"expires_at {value!r} is not an ISO 8601 timestamp") from None
        if parsed.tzinfo is None:
            raise ValueError("expires_at must carry a timezone (e.g. a trailing Z)")
        return value
    raise TypeError(f"expires_at must be a datetime or ISO 8601 str, got {type(value).__name__}")


def message_body(event: object, data: Any) -> bytes:
    return encode_json({"e": check_str(event, "event"), "d": data}, "data")


# Readers of the envelope's data.


def _none(data: dict[str, Any]) -> None:
    return None


def _channel(data: dict[str, Any]) -> Channel:
    return Channel.from_json(data["channel"])


def _token(data: dict[str, Any]) -> Token:
    return Token.from_json(data["token"])


def _tokens(data: dict[str, Any]) -> list[Token]:
    return [Token.from_json(t) for t in data["tokens"]]


def _state(data: dict[str, Any]) -> dict[str, Any]:
    state = data.get("state")
    if state is None:
        return {}
    if not isinstance(state, dict):
        raise TypeError(f"state is not an object: {state!r}")
    return state


def _stats(data: dict[str, Any]) -> Stats:
    return Stats.from_json(data["stats"])


@dataclass(frozen=True, slots=True)
class ChannelPage:
    channels: list[Channel]
    total_count: int | None


def _channel_page(data: dict[str, Any]) -> ChannelPage:
    total = data.get("total_count")
    return ChannelPage(
        [Channel.from_json(c) for c in data["channels"]],
        None if total is None else int(total),
    )


# Channels.


def create_channel(
    type: object,
    id: object = None,
    state: object = None,
    history_size: object = None,
    history_ttl: object = None,
) -> Call[Channel]:
    fields: dict[str, Any] = {"type": channel_type(type).value, "state": state_object(state)}
    if history_size is not None:
        fields["history"] = history_body(history_size, history_ttl)
    body = encode_json(fields, "state")
    if id is None:
        return Call("POST", "/channels", _channel, body)
    # Not idempotent: a retry after a lost answer would get 409 for its own channel.
    return Call("PUT", f"/channels/{channel_id(id)}", _channel, body)


def get_channel(channel: object) -> Call[Channel]:
    return Call("GET", f"/channels/{channel_id(channel)}", _channel, idempotent=True)


LIST_PAGE_SIZE = 1000


def list_channels(page: int) -> Call[ChannelPage]:
    params = (
        ("page", str(page)),
        ("pageSize", str(LIST_PAGE_SIZE)),
        ("orderBy", "asc"),
        ("sortBy", "created_at"),
    )
    return Call("GET", "/channels", _channel_page, params=params, idempotent=True)


def delete_channel(channel: object) -> Call[None]:
    return Call("DELETE", f"/channels/{channel_id(channel)}", _none, idempotent=True)


def get_channel_state(channel: object) -> Call[dict[str, Any]]:
    return Call("GET", f"/channels/{channel_id(channel)}/state", _state, idempotent=True)


def set_channel_state(channel: object, state: object) -> Call[None]:
    path = f"/channels/{channel_id(channel)}/state"
    body = encode_json(state_object(state), "state")
    return Call("PUT", path, _none, body, idempotent=True)


def patch_channel_state(channel: object, partial: object) -> Call[None]:
    path = f"/channels/{channel_id(channel)}/state"
    body = encode_json(state_object(partial, "partial"), "partial")
    # Merging the same keys twice gives the same state.
    return Call("PATCH", path, _none, body, idempotent=True)


def publish_message(channel: object, event: object, data: Any) -> Call[None]:
    path = f"/channels/{channel_id(channel)}/messages"
    return Call("POST", path, _none, message_body(event, data))


def subscribe_token(channel: object, token: object) -> Call[None]:
    path = f"/channels/{channel_id(channel)}/subscribers/{token_id(token)}"
    return Call("PUT", path, _none, idempotent=True)


def remove_token(channel: object, token: object) -> Call[None]:
    path = f"/channels/{channel_id(channel)}/subscribers/{token_id(token)}"
    return Call("DELETE", path, _none, idempotent=True)


def subscribe_tokens(channel: object, tokens: object) -> list[Call[None]]:
    channel_id(channel)
    return [subscribe_token(channel, token) for token in token_refs(tokens)]


def remove_tokens(channel: object, tokens: object) -> list[Call[None]]:
    channel_id(channel)
    return [remove_token(channel, token) for token in token_refs(tokens)]


def channel_tokens(channel: object) -> Call[list[Token]]:
    return Call("GET", f"/channels/{channel_id(channel)}/tokens", _tokens, idempotent=True)


def history_body(size: object, ttl: object) -> dict[str, int]:
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise TypeError(f"history_size must be an int of 0 or more, got {size!r}")
    body = {"size": size}
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
            raise TypeError(f"history_ttl must be an int of 1 or more (seconds), got {ttl!r}")
        body["ttl_s"] = ttl
    return body


def set_channel_history(channel: object, size: object, ttl: object) -> Call[Channel]:
    fields = {"history": history_body(size, ttl)}
    path = f"/channels/{channel_id(channel)}"
    # Setting the same policy twice leaves the same policy (and epoch).
    return Call("PATCH", path, _channel, encode_json(fields, "history"), idempotent=True)


def _history(data: dict[str, Any]) -> History:
    return History.from_json(data)


def channel_history(channel: object, since: object, limit: object) -> Call[History]:
    for name, value in (("since", since), ("limit", limit)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    params = (("since", str(since)), ("limit", str(limit)))
    path = f"/channels/{channel_id(channel)}/messages"
    return Call("GET", path, _history, params=params, idempotent=True)


def channel_stats(channel: object) -> Call[Stats]:
    return Call("GET", f"/channels/{channel_id(channel)}/stats", _stats, idempotent=True)


# Tokens.


def create_token(state: object = None, expires_at: object = None) -> Call[Token]:
    body: dict[str, Any] = {"state": state_object(state)}
    expires = expiry(expires_at)
    if expires is not None:
        body["expires_at"] = expires
    return Call("POST", "/channels/tokens", _token, encode_json(body, "state"))


def get_token(token: object) -> Call[Token]:
    return Call("GET", f"/channels/tokens/{token_id(token)}", _token, idempotent=True)


def list_tokens() -> Call[list[Token]]:
    return Call("GET", "/channels/tokens", _tokens, idempotent=True)


def set_token_state(token: object, state: object) -> Call[Token]:
    body = encode_json({"state": state_object(state)}, "state")
    # PATCH {state} replaces the token's state, so sending it twice is harmless.
    return Call("PATCH", f"/channels/tokens/{token_id(token)}", _token, body, idempotent=True)


def delete_token(token: object) -> Call[None]:
    return Call("DELETE", f"/channels/tokens/{token_id(token)}", _none, idempotent=True)


def direct_message(token: object, event: object, data: Any) -> Call[None]:
    path = f"/channels/tokens/{token_id(token)}/messages"
    return Call("POST", path, _none, message_body(event, data))
