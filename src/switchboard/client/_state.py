"""The client's public state types, where it is (:class:`States`), and argument checks
(used across its modules)."""

from __future__ import annotations

import enum
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from switchboard.client import _wire as wire
from switchboard.client._listeners import Broadcast, Listeners, Remove

__all__ = ["ClientStatistics", "ConnectionState", "States"]

log = logging.getLogger("switchboard.client")


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


class States:
    """The client's :class:`ConnectionState`, and who is told when it changes."""

    def __init__(self) -> None:
        self.current = ConnectionState.IDLE
        self._listeners: Listeners[None] = Listeners()
        self._readers: Broadcast[ConnectionState] = Broadcast("client.connection_states()")

    def set(self, state: ConnectionState) -> None:
        if state is self.current:
            return
        self.current = state
        log.debug("connection state %s", state.value)
        self._readers.publish(state)
        self._listeners.emit(None, state)

    def on_change(self, callback: Callable[[ConnectionState], Any]) -> Remove:
        return self._listeners.add(None, callback)

    def reader(self) -> AsyncIterator[ConnectionState]:
        return self._readers.reader()

    def close(self, failure: BaseException | None) -> None:
        """End the iterators (raising ``failure``, if any)."""
        self._readers.close(failure)


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
