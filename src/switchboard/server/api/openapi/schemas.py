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


class MessageSent(msgspec.Struct, forbid_unknown_fields=True):
    """A single publish or direct message: ``{}``."""

    duplicate: bool | msgspec.UnsetType = msgspec.UNSET
    """True: a retry of a request with the same ``idempotency_key``, not sent again."""


class ItemError(msgspec.Struct, forbid_unknown_fields=True):
    code: str
    message: str
    permission: str | msgspec.UnsetType = msgspec.UNSET
    """With ``missing_permission``: the flag the item needs."""


class ItemResult(msgspec.Struct, forbid_unknown_fields=True):
    """One item's result: the error envelope's shape, per item (docs/batch.md)."""

    success: bool
    data: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    """On success: ``{}``, or a publish's ``offset`` and ``epoch`` when the channel keeps
    history."""
    error: ItemError | msgspec.UnsetType = msgspec.UNSET
    duplicate: bool | msgspec.UnsetType = msgspec.UNSET
    """True: the answer kept under the item's idempotency key (it was not done again)."""


class TargetResult(msgspec.Struct, forbid_unknown_fields=True):
    """One target's result in a broadcast: the target, then as :class:`ItemResult`."""

    success: bool
    channel: str | msgspec.UnsetType = msgspec.UNSET
    token: str | msgspec.UnsetType = msgspec.UNSET
    data: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    error: ItemError | msgspec.UnsetType = msgspec.UNSET


class BroadcastData(msgspec.Struct, forbid_unknown_fields=True):
    results: list[TargetResult]
    """The channels' results, then the tokens', each list in the order sent."""
    succeeded: int
    failed: int
    duplicate: bool | msgspec.UnsetType = msgspec.UNSET
    """True: the answer kept under the request's idempotency key (nothing was sent)."""


class BatchData(msgspec.Struct, forbid_unknown_fields=True):
    results: list[ItemResult]
    """One per item, in the order sent."""
    succeeded: int
    failed: int


def ok_type(data: Any) -> Any:
    """``Ok[data]``: the success envelope around ``data`` (equal for equal ``data``)."""
    return Ok[data]
