"""The channel calls: ``/v1/channels``, their state, subscribers, history and stats,
built and read once for both clients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from switchboard._rest._calls import (
    Call,
    channel_id,
    encode_json,
    message_body,
    nothing,
    state_object,
    token_id,
    token_refs,
)
from switchboard._rest._models import Channel, ChannelType, History, Stats, Token
from switchboard._rest._token_calls import read_tokens


def channel_type(value: object) -> ChannelType:
    if not isinstance(value, str):
        raise TypeError(f"type must be a ChannelType or str, got {type(value).__name__}")
    try:
        return ChannelType(value)
    except ValueError:
        choices = ", ".join(t.value for t in ChannelType)
        raise ValueError(f"unknown channel type {value!r}; use one of {choices}") from None


# Readers of the envelope's data.


def _channel(data: dict[str, Any]) -> Channel:
    return Channel.from_json(data["channel"])


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


# The calls.


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
    return Call("DELETE", f"/channels/{channel_id(channel)}", nothing, idempotent=True)


def get_channel_state(channel: object) -> Call[dict[str, Any]]:
    return Call("GET", f"/channels/{channel_id(channel)}/state", _state, idempotent=True)


def set_channel_state(channel: object, state: object) -> Call[None]:
    path = f"/channels/{channel_id(channel)}/state"
    body = encode_json(state_object(state), "state")
    return Call("PUT", path, nothing, body, idempotent=True)


def patch_channel_state(channel: object, partial: object) -> Call[None]:
    path = f"/channels/{channel_id(channel)}/state"
    body = encode_json(state_object(partial, "partial"), "partial")
    # Merging the same keys twice gives the same state.
    return Call("PATCH", path, nothing, body, idempotent=True)


def publish_message(
    channel: object, event: object, data: Any, idempotency_key: object = None
) -> Call[None]:
    path = f"/channels/{channel_id(channel)}/messages"
    body = message_body(event, data, idempotency_key)
    # With a key, a retry is answered, not published again: safe to retry.
    return Call("POST", path, nothing, body, idempotent=idempotency_key is not None)


def subscribe_token(channel: object, token: object) -> Call[None]:
    path = f"/channels/{channel_id(channel)}/subscribers/{token_id(token)}"
    return Call("PUT", path, nothing, idempotent=True)


def remove_token(channel: object, token: object) -> Call[None]:
    path = f"/channels/{channel_id(channel)}/subscribers/{token_id(token)}"
    return Call("DELETE", path, nothing, idempotent=True)


def subscribe_tokens(channel: object, tokens: object) -> list[Call[None]]:
    channel_id(channel)
    return [subscribe_token(channel, token) for token in token_refs(tokens)]


def remove_tokens(channel: object, tokens: object) -> list[Call[None]]:
    channel_id(channel)
    return [remove_token(channel, token) for token in token_refs(tokens)]


def channel_tokens(channel: object) -> Call[list[Token]]:
    return Call("GET", f"/channels/{channel_id(channel)}/tokens", read_tokens, idempotent=True)


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
