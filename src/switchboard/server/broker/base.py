"""The `Broker` interface: fan-out between nodes, and presence across them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from switchboard.server.broker.events import BrokerEvent

if TYPE_CHECKING:
    # Only a type here: importing presence (which imports the events) would be a cycle.
    from switchboard.server.presence import NodePresence


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

    async def channel_presence(self, project_id: str, channel_id: str) -> dict[str, NodePresence]:
        """Each live node's share of the channel's presence, by node ID (this one included).

        Nodes with no subscriber of the channel may be left out. A node that died stops
        being listed when its presence key expires, as with the counts.
        """
