"""Presence in the server SDK: ``GET /v1/channels/:id/presence``, built and read once.

Switchboard's own (Hop has no presence). Kept apart from ``_models``/``_calls`` so the
call and its result types sit together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from switchboard._rest._calls import Call, channel_id

__all__ = ["ChannelPresence", "PresenceMember", "channel_presence"]


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{what} is not a JSON object: {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class PresenceMember:
    """A token with at least one live connection subscribed to the channel."""

    token_id: str
    member_id: str
    """The token's name in ``PRESENCE_JOIN``/``PRESENCE_LEAVE`` dispatches, which never
    carry token IDs (a token ID is its user's credential)."""
    state: dict[str, Any]
    """The token's state (its metadata, e.g. ``{"user_id": "42"}``)."""
    connections: int
    """Its live connections subscribed to the channel, across the cluster."""

    @classmethod
    def from_json(cls, value: object) -> PresenceMember:
        record = _object(value, "presence member")
        state = record.get("state")
        return cls(
            token_id=str(record["token_id"]),
            member_id=str(record.get("member_id", "")),
            state={} if state is None else _object(state, "state"),
            connections=int(record["connections"]),
        )


@dataclass(frozen=True, slots=True)
class ChannelPresence:
    """Who is subscribed to a channel right now, cluster-wide."""

    members: list[PresenceMember]
    """Tokens present, by token ID."""
    tokenless_connections: int
    """Connections without a token subscribed (counted, never listed)."""
    total_connections: int
    """Every connection subscribed: the channel's ``online_count``."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The record exactly as the server sent it."""

    @classmethod
    def from_json(cls, value: object) -> ChannelPresence:
        record = _object(value, "presence")
        return cls(
            members=[PresenceMember.from_json(m) for m in record["presence"]],
            tokenless_connections=int(record["tokenless_connections"]),
            total_connections=int(record["total_connections"]),
            raw=record,
        )


def channel_presence(channel: object) -> Call[ChannelPresence]:
    path = f"/channels/{channel_id(channel)}/presence"
    return Call("GET", path, ChannelPresence.from_json, idempotent=True)
