"""The Structs every JSON response's ``data`` is, for ``/openapi.json``.

The handlers build their answers as dicts of views; the tests decode real responses
into these (``tests/e2e/test_openapi.py``), so the document cannot drift from them.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

import msgspec

from switchboard.server.api.views import (
    ChannelView,
    JsonObject,
    ProjectView,
    TokenView,
)

T = TypeVar("T")


class Ok(msgspec.Struct, Generic[T], forbid_unknown_fields=True):
    """The success envelope: ``200 {"success": true, "data": ...}``."""

    success: Literal[True]
    data: T


class ErrorDetail(msgspec.Struct, forbid_unknown_fields=True):
    code: str
    message: str


class ErrorEnvelope(msgspec.Struct, forbid_unknown_fields=True):
    """Every failure: ``{"success": false, "error": {"code", "message"}}``."""

    success: Literal[False]
    error: ErrorDetail


class Empty(msgspec.Struct, forbid_unknown_fields=True):
    """A call with no result: ``data`` is ``{}``."""


class ChannelData(msgspec.Struct, forbid_unknown_fields=True):
    channel: ChannelView


class ChannelPage(msgspec.Struct, forbid_unknown_fields=True):
    channels: list[ChannelView]
    page_size: int
    total_count: int


class StateData(msgspec.Struct, forbid_unknown_fields=True):
    state: JsonObject


class OnlineCount(msgspec.Struct, forbid_unknown_fields=True):
    online_count: int


class ChannelStats(msgspec.Struct, forbid_unknown_fields=True):
    stats: OnlineCount


class PresenceMember(msgspec.Struct, forbid_unknown_fields=True):
    token_id: str
    member_id: str
    """The token's name in PRESENCE_JOIN/LEAVE dispatches (a hash of its ID)."""
    state: JsonObject
    connections: int
    """The token's live connections subscribed to the channel, cluster-wide."""


class ChannelPresence(msgspec.Struct, forbid_unknown_fields=True):
    presence: list[PresenceMember]
    tokenless_connections: int
    total_connections: int
    """Equal to the channel's ``online_count``."""


class TokenData(msgspec.Struct, forbid_unknown_fields=True):
    token: TokenView


class TokenList(msgspec.Struct, forbid_unknown_fields=True):
    tokens: list[TokenView]


class Health(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["ok"]


class Ready(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["ready"]
    workers: int
    """Worker processes serving this port (``serve --workers``; 1 alone)."""


class MessageRate(msgspec.Struct):
    total: int
    per_second: float
    interval_s: int
    series: list[float]


class ProjectStats(msgspec.Struct):
    """``GET /v1/stats``, the console's overview. Open to new fields (no strict schema)."""

    project: ProjectView
    version: str
    cluster: bool
    connections: int
    console_connections: int
    channels: int
    channels_active: int
    tokens: int
    tokens_online: int
    messages: MessageRate


def ok_type(data: Any) -> Any:
    """``Ok[data]``: the success envelope around ``data`` (equal for equal ``data``)."""
    return Ok[data]
