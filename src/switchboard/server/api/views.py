"""How records look on the wire (SPEC §2: Channel, Token).

Each is a msgspec Struct: the handlers encode these very objects, and ``GET
/openapi.json`` documents them from the same classes (``api/openapi.py``), so the
document cannot drift from what is sent. ``forbid_unknown_fields`` makes the generated
schema exact (``additionalProperties: false``) and lets tests decode a real response
into these classes strictly.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from switchboard._channel_type import ChannelType
from switchboard.server.clock import format_ms
from switchboard.server.history import HistoryPage, HistoryPolicy
from switchboard.server.models import Channel, Project, Token

Timestamp = Annotated[
    str, msgspec.Meta(description="ISO 8601, UTC", extra_json_schema={"format": "date-time"})
]
JsonObject = Annotated[msgspec.Raw, msgspec.Meta(extra_json_schema={"type": "object"})]


class ProjectView(msgspec.Struct, forbid_unknown_fields=True):
    """A project; ``namespace`` and ``type`` are there for Hop's SDKs."""

    id: str
    name: str
    namespace: str
    type: Literal["regular"]
    created_at: Timestamp


class HistorySettingsView(msgspec.Struct, forbid_unknown_fields=True):
    """A channel's history bounds: the last ``size`` messages at most ``ttl_s`` old."""

    size: int
    ttl_s: int


class ChannelView(msgspec.Struct, forbid_unknown_fields=True):
    """A channel with its project and state.

    ``history`` (Switchboard's own) is there only on a channel that keeps history, so a
    channel without it has exactly Hop's keys.
    """

    id: str
    project: ProjectView
    state: JsonObject
    type: ChannelType
    capabilities: Literal[0]
    created_at: Timestamp
    history: HistorySettingsView | msgspec.UnsetType = msgspec.UNSET


class TokenView(msgspec.Struct, forbid_unknown_fields=True):
    """A leap token; ``is_online`` is true while a connection holds it."""

    id: str
    project_id: str
    state: JsonObject
    is_online: bool
    created_at: Timestamp
    expires_at: Timestamp | None


class HistoryMessageView(msgspec.Struct, forbid_unknown_fields=True):
    """A kept message: its offset, event ``e``, data ``d`` and when it was published."""

    offset: int
    e: str
    d: Any
    created_at: Timestamp


class HistoryView(msgspec.Struct, forbid_unknown_fields=True):
    """``GET /v1/channels/:id/messages``: a page of history and where it stands.

    ``top_offset`` is the latest message's offset, ``first_offset`` the oldest kept (a
    reader whose last offset is below ``first_offset - 1`` missed messages that are
    gone); an ``epoch`` other than the one a reader saw means its offsets no longer
    apply. ``has_more``: ask again with ``since`` the last offset of this page.
    """

    messages: list[HistoryMessageView]
    epoch: str
    top_offset: int
    first_offset: int
    limit: int
    has_more: bool


def history_view(page: HistoryPage, limit: int) -> HistoryView:
    messages = [
        HistoryMessageView(m.offset, m.event, m.data, format_ms(m.created_ms))
        for m in page.messages
    ]
    has_more = bool(messages) and len(messages) == limit and messages[-1].offset < page.top
    return HistoryView(messages, page.epoch, page.top, page.first, limit, has_more)


def project_view(project: Project) -> ProjectView:
    return ProjectView(project.id, project.name, project.name, "regular", project.created_at)


def channel_view(
    channel: Channel, project: Project, history: HistoryPolicy | None = None
) -> ChannelView:
    return ChannelView(
        channel.id,
        project_view(project),
        channel.state,
        channel.type,
        0,
        channel.created_at,
        msgspec.UNSET if history is None else HistorySettingsView(history.size, history.ttl_s),
    )


def token_view(token: Token, is_online: bool) -> TokenView:
    return TokenView(
        token.id, token.project_id, token.state, is_online, token.created_at, token.expires_at
    )


# Plain-dict forms of the same, for callers that write them with the json module (the CLI).


def project_json(project: Project) -> dict[str, Any]:
    return _plain(project_view(project))


def channel_json(channel: Channel, project: Project) -> dict[str, Any]:
    return _plain(channel_view(channel, project))


def token_json(token: Token, is_online: bool) -> dict[str, Any]:
    return _plain(token_view(token, is_online))


def _plain(view: msgspec.Struct) -> dict[str, Any]:
    # Through JSON so the msgspec.Raw state becomes plain values too.
    plain: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(view))
    return plain
