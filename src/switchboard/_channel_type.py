"""`ChannelType`, shared by the server and the SDKs (standard library only)."""

from __future__ import annotations

import enum

__all__ = ["ChannelType"]


class ChannelType(enum.StrEnum):
    """Who may subscribe to a channel (SPEC §1).

    A plain string works wherever a ``ChannelType`` is expected: ``"private"`` is
    ``ChannelType.PRIVATE``.
    """

    PRIVATE = "private"
    """Only tokens granted a subscription (``subscribe_token``, ``PUT .../subscribers/:token``)."""
    PUBLIC = "public"
    """Any connection identified with a token of the project."""
    UNPROTECTED = "unprotected"
    """Anyone who knows the channel's ID, with or without a token."""
