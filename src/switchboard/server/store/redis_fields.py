"""How the Redis store writes a date as a sorted-set score and reads an optional field.

Shared by ``redis_projects`` and ``redis_channels``: both index records by creation
time and keep optional fields (``revoked_at``, ``expires_at``) by leaving them out.
"""

from __future__ import annotations

from switchboard.server.clock import parse_iso


def ms(timestamp: str) -> int:
    """An ISO 8601 time as milliseconds since the epoch: the score of a creation index."""
    return int(parse_iso(timestamp).timestamp() * 1000)


def text(value: bytes | None) -> str | None:
    """A hash field that may be absent, decoded."""
    return value.decode() if value is not None else None
