"""The records Switchboard keeps, as the store hands them out.

State is kept as the JSON bytes it arrived as (``msgspec.Raw``): the REST API and the
gateway splice it into their output without decoding and re-encoding it.
"""

from __future__ import annotations

import enum

import msgspec

from switchboard._channel_type import ChannelType
from switchboard.server.permissions import ALL, Permission


class Unchanged(enum.Enum):
    """The type of :data:`UNCHANGED`."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED
"""Passed for a field an update leaves as it is (a PATCH that does not name it)."""

__all__ = [
    "EMPTY_STATE",
    "Access",
    "Channel",
    "ChannelType",
    "Page",
    "Project",
    "ProjectTokenInfo",
    "Token",
]

EMPTY_STATE = msgspec.Raw(b"{}")


class Project(msgspec.Struct, frozen=True):
    id: str
    name: str
    created_at: str


class ProjectTokenInfo(msgspec.Struct, frozen=True):
    """A project token as stored: its hash, never its secret."""

    id: str
    project_id: str
    hint: str
    created_at: str
    revoked_at: str | None = None
    permissions: Permission = ALL
    """What the token may do (``switchboard.server.permissions``); all for older tokens."""


class Access(msgspec.Struct, frozen=True):
    """What an unrevoked project token opens: its project, and what it may do there."""

    project: Project
    permissions: Permission
    generation: int = 0
    """The project's credential generation when this was read: every revocation of one
    of its project tokens bumps it, so an older copy is known to be out of date."""


class Channel(msgspec.Struct, frozen=True):
    project_id: str
    id: str
    type: ChannelType
    state: msgspec.Raw
    created_at: str


class Token(msgspec.Struct, frozen=True):
    project_id: str
    id: str
    state: msgspec.Raw
    created_at: str
    expires_at: str | None = None


class Page(msgspec.Struct, frozen=True):
    """One page of a listing and the size of the whole listing."""

    items: list[Channel]
    total: int
