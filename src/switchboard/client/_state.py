"""The client's public state types and argument checks (used across its modules)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["ClientStatistics", "ConnectionState"]


class ConnectionState(enum.StrEnum):
    """Where the client is. Compares equal to its string value (``"connected"``)."""

    IDLE = "idle"
    """Not started, or closed by :meth:`Client.close`."""
    CONNECTING = "connecting"
    """Opening the socket."""
    AUTHENTICATING = "authenticating"
    """Socket open; waiting for INIT."""
    CONNECTED = "connected"
    """INIT received: subscribing and messages work."""
    ERRORED = "errored"
    """The connection failed or dropped; the client waits, then reconnects (after a 4001
    it stops here for good)."""


@dataclass(frozen=True, slots=True)
class ClientStatistics:
    """Counters since the client started."""

    connections: int
    """Connections that reached INIT."""
    heartbeats_sent: int
    heartbeat_acks: int
    probes_answered: int
    """Server heartbeat probes (``{"op":3,"d":{"tag":…}}``) echoed."""


@dataclass(slots=True)
class Outcome:
    """How one connection ended."""

    code: int | None
    reason: str


def check_channel(channel: object) -> str:
    if not isinstance(channel, str):
        raise TypeError(f"channel must be a str, got {type(channel).__name__}")
    if not channel:
        raise ValueError("channel must not be empty")
    return channel


def check_event(event: object) -> str:
    if not isinstance(event, str):
        raise TypeError(f"event must be a str, got {type(event).__name__}")
    if not event:
        raise ValueError("event must not be empty")
    return event
