"""What the server API returns, as typed, immutable objects.

Each ``from_json`` reads one record of the wire format (SPEC §2) and raises
:class:`ValueError` or :class:`KeyError`/:class:`TypeError` on a record of the wrong
shape; :mod:`switchboard._rest._calls` turns those into an ``invalid_response``
:class:`~switchboard.APIError`. ``raw`` keeps the record as the server sent it, for
fields this version does not know about.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from switchboard._channel_type import ChannelType

__all__ = [
    "Channel",
    "ChannelType",
    "History",
    "HistoryMessage",
    "HistorySettings",
    "Stats",
    "Token",
]


def parse_time(value: object) -> datetime:
    """An ISO 8601 timestamp from the wire (``Z`` or an offset)."""
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO 8601 string, got {value!r}")
    return datetime.fromisoformat(value)


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{what} is not a JSON object: {value!r}")
    return value


def _state(record: dict[str, Any]) -> dict[str, Any]:
    # A server may send null for "no state"; callers always get a dict.
    state = record.get("state")
    return {} if state is None else _object(state, "state")


@dataclass(frozen=True, slots=True)
class HistorySettings:
    """How much history a channel keeps (Switchboard's own): the last ``size``
    messages that are at most ``ttl`` seconds old."""

    size: int
    ttl: int

    @classmethod
    def from_json(cls, value: object) -> HistorySettings:
        record = _object(value, "history")
        return cls(size=int(record["size"]), ttl=int(record["ttl_s"]))


@dataclass(frozen=True, slots=True)
class Channel:
    """A channel of the project."""

    id: str
    type: ChannelType
    state: dict[str, Any]
    """The channel's state when this object was read (a JSON object)."""
    created_at: datetime
    project_id: str
    capabilities: int = 0
    history: HistorySettings | None = None
    """What history the channel keeps; None: none (or a server without history)."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The record exactly as the server sent it."""

    @classmethod
    def from_json(cls, value: object) -> Channel:
        record = _object(value, "channel")
        project = record.get("project")
        history = record.get("history")
        project_id = (
            str(project["id"]) if isinstance(project, dict) else str(record.get("project_id", ""))
        )
        return cls(
            id=str(record["id"]),
            type=ChannelType(record["type"]),
            state=_state(record),
            created_at=parse_time(record["created_at"]),
            project_id=project_id,
            capabilities=int(record.get("capabilities") or 0),
            history=None if history is None else HistorySettings.from_json(history),
            raw=record,
        )


@dataclass(frozen=True, slots=True)
class Token:
    """A token (``leap_token_…``) that identifies one end user to the realtime gateway.

    The ``id`` is the secret the user's client connects with.
    """

    id: str
    state: dict[str, Any]
    """The token's metadata, e.g. ``{"user_id": "42"}`` (a JSON object)."""
    is_online: bool
    """True while at least one connection identified with the token is live."""
    project_id: str
    created_at: datetime
    expires_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The record exactly as the server sent it."""

    @classmethod
    def from_json(cls, value: object) -> Token:
        record = _object(value, "token")
        expires_at = record.get("expires_at")
        return cls(
            id=str(record["id"]),
            state=_state(record),
            is_online=bool(record.get("is_online", False)),
            project_id=str(record.get("project_id", "")),
            created_at=parse_time(record["created_at"]),
            expires_at=None if expires_at is None else parse_time(expires_at),
            raw=record,
        )


@dataclass(frozen=True, slots=True)
class Stats:
    """Live numbers of a channel."""

    online_count: int
    """Live connections subscribed to the channel, across the cluster."""

    @classmethod
    def from_json(cls, value: object) -> Stats:
        record = _object(value, "stats")
        return cls(online_count=int(record["online_count"]))


@dataclass(frozen=True, slots=True)
class HistoryMessage:
    """A message a channel with history kept."""

    offset: int
    """Its place in the channel's history: 1, 2, 3 … within an epoch."""
    event: str
    data: Any
    created_at: datetime

    @classmethod
    def from_json(cls, value: object) -> HistoryMessage:
        record = _object(value, "message")
        return cls(
            offset=int(record["offset"]),
            event=str(record["e"]),
            data=record["d"],
            created_at=parse_time(record["created_at"]),
        )


@dataclass(frozen=True, slots=True)
class History:
    """A page of a channel's history, and where the history stands.

    ``epoch`` changes when the history was lost (the channel was made again, history
    turned off and on): offsets of another epoch no longer apply. A reader whose last
    offset is below ``first_offset - 1`` missed messages that are no longer kept.
    ``has_more``: ask again with ``since`` the last message's offset.
    """

    messages: list[HistoryMessage]
    epoch: str
    top_offset: int
    first_offset: int
    has_more: bool

    @classmethod
    def from_json(cls, value: object) -> History:
        record = _object(value, "history")
        return cls(
            messages=[HistoryMessage.from_json(m) for m in record["messages"]],
            epoch=str(record["epoch"]),
            top_offset=int(record["top_offset"]),
            first_offset=int(record["first_offset"]),
            has_more=bool(record["has_more"]),
        )
