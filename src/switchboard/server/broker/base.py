"""The `Broker` interface: fan-out between nodes, and presence across them."""

from __future__ import annotations

from typing import Protocol

from switchboard.server.broker.events import BrokerEvent


class Broker(Protocol):
    """Carries :data:`BrokerEvent` to every node's hub, and counts live connections.

    With one node the broker is a function call into the local hub; with Redis it is
    pub/sub plus per-node presence counts. Callers never know which.
    """

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def ping(self) -> None:
        """Raise :class:`~switchboard.exceptions.Unavailable` if events cannot be carried."""

    async def publish(self, event: BrokerEvent) -> None:
        """Deliver ``event`` to every node, in publish order per channel and per token."""

    async def token_connections(self, token_id: str) -> int:
        """Live connections identified with this token, on every node."""

    async def channel_connections(self, project_id: str, channel_id: str) -> int:
        """Live connections subscribed to this channel, on every node (its ``online_count``)."""
