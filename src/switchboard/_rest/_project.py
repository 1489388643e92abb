"""Project settings in the server SDK: ``GET``/``PATCH /v1/settings`` (Switchboard's own)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from switchboard._rest._calls import Call, encode_json
from switchboard._rest._models import HistorySettings

__all__ = [
    "ProjectSettings",
    "clear_history_default",
    "get_settings",
    "set_history_default",
    "set_inbox",
]


@dataclass(frozen=True, slots=True)
class ProjectSettings:
    history: HistorySettings | None
    """The project's own default history for new channels (size 0: none); None when it
    has none, and the server's default applies."""
    new_channel_history: HistorySettings | None
    """What a channel created now without its own history keeps (None: nothing)."""
    inbox: HistorySettings | None = None
    """The project's token inboxes: each token keeps its last ``size`` direct messages
    for ``ttl`` seconds (None: off, the default; docs/inbox.md)."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProjectSettings:
        settings = data["settings"]
        own, effective = settings.get("history"), settings.get("new_channel_history")
        inbox = settings.get("inbox")
        return cls(
            history=None if own is None else HistorySettings.from_json(own),
            new_channel_history=None if effective is None else HistorySettings.from_json(effective),
            inbox=None if inbox is None else HistorySettings.from_json(inbox),
        )


def get_settings() -> Call[ProjectSettings]:
    return Call("GET", "/settings", ProjectSettings.from_json, idempotent=True)


def _bounds(size: int, ttl: int | None) -> dict[str, int]:
    for value, what in ((size, "size"), (ttl, "ttl")):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise TypeError(f"{what} must be an int")
    bounds: dict[str, int] = {"size": size}
    if ttl is not None:
        bounds["ttl_s"] = ttl
    return bounds


def set_history_default(size: int, ttl: int | None) -> Call[ProjectSettings]:
    body = encode_json({"history": _bounds(size, ttl)}, "settings")
    return Call("PATCH", "/settings", ProjectSettings.from_json, body, idempotent=True)


def set_inbox(size: int | None, ttl: int | None) -> Call[ProjectSettings]:
    """``size`` None (or 0): token inboxes off."""
    body = encode_json({"inbox": None if size is None else _bounds(size, ttl)}, "settings")
    return Call("PATCH", "/settings", ProjectSettings.from_json, body, idempotent=True)


def clear_history_default() -> Call[ProjectSettings]:
    body = encode_json({"history": None}, "settings")
    return Call("PATCH", "/settings", ProjectSettings.from_json, body, idempotent=True)
