"""Batches (Switchboard's own, docs/batch.md): ``sb.broadcast(...)`` and ``sb.batch(...)``,
built and read once for both clients.

:class:`Batch` builds the operations of ``POST /v1/batch`` (each method returns the
batch, so calls chain); a plain list of operation dicts works too. The answers are
:class:`BatchResult` (one :class:`ItemResult` per operation or target, in order): a
failing item does not raise, it carries its error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from switchboard._rest._calls import (
    Call,
    ChannelRef,
    State,
    TokenRef,
    channel_id,
    check_str,
    encode_json,
    state_object,
    token_id,
)
from switchboard._rest._models import Channel, Token
from switchboard.exceptions import APIError, api_error_for

__all__ = ["Batch", "BatchResult", "ItemResult"]

MAX_ITEMS = 1000
"""Operations in one batch, and channels (and tokens) in one broadcast: the server's caps."""

_STATUS = {
    "invalid_request": 400,
    "invalid_auth": 401,
    "forbidden": 403,
    "missing_permission": 403,
    "not_found": 404,
    "already_exists": 409,
    "in_progress": 409,
    "payload_too_large": 413,
    "rate_limited": 429,
    "internal_error": 500,
    "unavailable": 503,
}


def _id(ref: object) -> str:
    """A channel's or token's ID, unencoded (it goes in a body, not a path)."""
    return ref.id if isinstance(ref, Channel | Token) else str(ref)


def _with_key(op: dict[str, Any], idempotency_key: str | None) -> dict[str, Any]:
    if idempotency_key is not None:
        op["idempotency_key"] = check_str(idempotency_key, "idempotency_key")
    return op


class Batch:
    """The operations of one ``sb.batch(...)``, in order::

        batch = Batch().publish("game", "MOVE", {"x": 1}).direct(token, "TURN")
        result = await sb.batch(batch)

    Each method takes an optional ``idempotency_key``: a retry with the same key within
    5 minutes is answered as the first time, without being carried out again.
    """

    def __init__(self) -> None:
        self.operations: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self.operations)

    def _add(self, op: dict[str, Any], idempotency_key: str | None) -> Self:
        self.operations.append(_with_key(op, idempotency_key))
        return self

    def _channel(self, channel: ChannelRef) -> str:
        channel_id(channel)  # the checks
        return _id(channel)

    def _token(self, token: TokenRef) -> str:
        token_id(token)
        return _id(token)

    def publish(
        self,
        channel: ChannelRef,
        event: str,
        data: Any = None,
        *,
        idempotency_key: str | None = None,
    ) -> Self:
        """A message to a channel's subscribers."""
        op = {"op": "publish", "channel": self._channel(channel), "e": check_str(event, "event")}
        return self._add({**op, "d": data}, idempotency_key)

    def direct(
        self, token: TokenRef, event: str, data: Any = None, *, idempotency_key: str | None = None
    ) -> Self:
        """A direct message to a token's connections."""
        op = {"op": "direct", "token": self._token(token), "e": check_str(event, "event")}
        return self._add({**op, "d": data}, idempotency_key)

    def set_state(
        self, channel: ChannelRef, state: State, *, idempotency_key: str | None = None
    ) -> Self:
        """Replace a channel's state."""
        op = {"op": "set_state", "channel": self._channel(channel), "state": state_object(state)}
        return self._add(op, idempotency_key)

    def patch_state(
        self, channel: ChannelRef, state: State, *, idempotency_key: str | None = None
    ) -> Self:
        """Merge keys into a channel's state."""
        op = {"op": "patch_state", "channel": self._channel(channel), "state": state_object(state)}
        return self._add(op, idempotency_key)

    def subscribe_token(
        self, channel: ChannelRef, token: TokenRef, *, idempotency_key: str | None = None
    ) -> Self:
        """Subscribe a token to a channel."""
        op = {"op": "subscribe_token", "channel": self._channel(channel)}
        return self._add({**op, "token": self._token(token)}, idempotency_key)

    def remove_token(
        self, channel: ChannelRef, token: TokenRef, *, idempotency_key: str | None = None
    ) -> Self:
        """Unsubscribe a token from a channel."""
        op = {"op": "remove_token", "channel": self._channel(channel)}
        return self._add({**op, "token": self._token(token)}, idempotency_key)


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One operation's (or broadcast target's) result."""

    success: bool
    data: dict[str, Any] = field(default_factory=dict)
    """A publish to a channel that keeps history: its ``offset`` and ``epoch``."""
    error: APIError | None = None
    duplicate: bool = False
    """The answer kept under its idempotency key: it was not carried out again."""
    channel: str | None = None
    """In a broadcast's results: the channel (or :attr:`token`) this result is for."""
    token: str | None = None

    @classmethod
    def from_json(cls, value: object) -> ItemResult:
        if not isinstance(value, dict):
            raise TypeError(f"a result is not a JSON object: {value!r}")
        error = None
        if not value["success"]:
            raw = value["error"]
            code = str(raw.get("code") or "unknown_error")
            message = str(raw.get("message") or code)
            error = api_error_for(
                _STATUS.get(code, 400), code, message, permission=raw.get("permission")
            )
        return cls(
            success=bool(value["success"]),
            data=dict(value.get("data") or {}),
            error=error,
            duplicate=bool(value.get("duplicate", False)),
            channel=value.get("channel"),
            token=value.get("token"),
        )


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The answer of a batch or a broadcast: one result per item, in order."""

    results: list[ItemResult]
    succeeded: int
    failed: int
    duplicate: bool = False
    """A broadcast's: the answer kept under its idempotency key (nothing was sent again)."""

    @property
    def errors(self) -> list[APIError]:
        """The failed items' errors, in order."""
        return [r.error for r in self.results if r.error is not None]

    def raise_for_errors(self) -> None:
        """Raise the first failed item's error, if any."""
        if self.errors:
            raise self.errors[0]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BatchResult:
        return cls(
            results=[ItemResult.from_json(r) for r in data["results"]],
            succeeded=int(data["succeeded"]),
            failed=int(data["failed"]),
            duplicate=bool(data.get("duplicate", False)),
        )


def _targets(refs: Iterable[object], what: str) -> list[str]:
    if isinstance(refs, str | Channel | Token) or not isinstance(refs, Iterable):
        raise TypeError(f"{what} must be an iterable of IDs, got {type(refs).__name__}")
    ids = [_id(ref) for ref in refs]
    if len(ids) > MAX_ITEMS:
        raise ValueError(f"{what} may name at most {MAX_ITEMS}; got {len(ids)}")
    return ids


def broadcast(
    event: str,
    data: Any,
    channels: Iterable[ChannelRef],
    tokens: Iterable[TokenRef],
    idempotency_key: str | None,
) -> Call[BatchResult]:
    channel_ids = _targets(channels, "channels")
    token_ids = _targets(tokens, "tokens")
    for c in channel_ids:
        channel_id(c)
    for t in token_ids:
        token_id(t)
    body = _with_key(
        {"e": check_str(event, "event"), "d": data, "channels": channel_ids, "tokens": token_ids},
        idempotency_key,
    )
    return Call(
        "POST",
        "/broadcast",
        BatchResult.from_json,
        encode_json(body, "data"),
        # With a key a retry is answered, not sent again: safe to retry.
        idempotent=idempotency_key is not None,
    )


def batch(operations: Batch | Iterable[Mapping[str, Any]], parallel: bool) -> Call[BatchResult]:
    if isinstance(operations, Batch):
        ops = operations.operations
    elif isinstance(operations, Iterable) and not isinstance(operations, str | bytes | Mapping):
        ops = [dict(op) for op in operations]
    else:
        raise TypeError(
            f"operations must be a Batch or a list of dicts, got {type(operations).__name__}"
        )
    if len(ops) > MAX_ITEMS:
        raise ValueError(f"a batch holds at most {MAX_ITEMS} operations; got {len(ops)}")
    if not isinstance(parallel, bool):
        raise TypeError(f"parallel must be a bool, got {type(parallel).__name__}")
    body = encode_json({"requests": ops, "parallel": parallel}, "operations")
    keyed = bool(ops) and all("idempotency_key" in op for op in ops)
    return Call("POST", "/batch", BatchResult.from_json, body, idempotent=keyed)
