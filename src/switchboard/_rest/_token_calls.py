"""The token calls: ``/v1/channels/tokens``, built and read once for both clients."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from switchboard._rest._calls import (
    Call,
    encode_json,
    message_body,
    nothing,
    state_object,
    token_id,
)
from switchboard._rest._models import History, Token


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


# Readers of the envelope's data.


def _token(data: dict[str, Any]) -> Token:
    return Token.from_json(data["token"])


def read_tokens(data: dict[str, Any]) -> list[Token]:
    return [Token.from_json(t) for t in data["tokens"]]


# The calls.


def create_token(state: object = None, expires_at: object = None) -> Call[Token]:
    body: dict[str, Any] = {"state": state_object(state)}
    expires = expiry(expires_at)
    if expires is not None:
        body["expires_at"] = expires
    return Call("POST", "/channels/tokens", _token, encode_json(body, "state"))


def get_token(token: object) -> Call[Token]:
    return Call("GET", f"/channels/tokens/{token_id(token)}", _token, idempotent=True)


def list_tokens() -> Call[list[Token]]:
    return Call("GET", "/channels/tokens", read_tokens, idempotent=True)


def set_token_state(token: object, state: object) -> Call[Token]:
    body = encode_json({"state": state_object(state)}, "state")
    # PATCH {state} replaces the token's state, so sending it twice is harmless.
    return Call("PATCH", f"/channels/tokens/{token_id(token)}", _token, body, idempotent=True)


def delete_token(token: object) -> Call[None]:
    return Call("DELETE", f"/channels/tokens/{token_id(token)}", nothing, idempotent=True)


def direct_message(
    token: object, event: object, data: Any, idempotency_key: object = None
) -> Call[None]:
    path = f"/channels/tokens/{token_id(token)}/messages"
    body = message_body(event, data, idempotency_key)
    return Call("POST", path, nothing, body, idempotent=idempotency_key is not None)


def token_inbox(token: object, since: object, limit: object) -> Call[History]:
    for name, value in (("since", since), ("limit", limit)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    params = (("since", str(since)), ("limit", str(limit)))
    path = f"/channels/tokens/{token_id(token)}/messages"
    return Call("GET", path, History.from_json, params=params, idempotent=True)
