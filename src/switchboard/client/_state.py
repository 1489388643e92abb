"""The client's public state types and argument checks (used across its modules)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from switchboard.client import _wire as wire

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


def check_arguments(
    project_id: object,
    token: object,
    url: object,
    compression: object,
    reconnect_delay: object,
) -> None:
    """The types and values of :class:`~switchboard.client.Client`'s connection arguments."""
    if not isinstance(project_id, str):
        raise TypeError(f"project_id must be a str, got {type(project_id).__name__}")
    if not project_id:
        raise ValueError("project_id must not be empty")
    if token is not None and not isinstance(token, str):
        raise TypeError(f"token must be a str or None, got {type(token).__name__}")
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, got {type(url).__name__}")
    if compression not in wire.COMPRESSIONS:
        raise ValueError(f"compression must be one of {wire.COMPRESSIONS}, got {compression!r}")
    if (
        not isinstance(reconnect_delay, tuple)
        or len(reconnect_delay) != 2
        or not all(isinstance(d, int | float) for d in reconnect_delay)
    ):
        raise TypeError("reconnect_delay must be a (minimum, maximum) tuple of seconds")
