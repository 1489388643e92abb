"""`LocalBroker`: the single-node broker, a direct call into this node's hub."""

from __future__ import annotations

from switchboard.server.broker.events import BrokerEvent
from switchboard.server.hub import Hub


class LocalBroker:
    """Delivers events to the local :class:`~switchboard.server.hub.Hub` at once.

    Order is trivially publish order: each event is handled before ``publish`` returns.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def __repr__(self) -> str:
        return "LocalBroker()"

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def ping(self) -> None:
        pass

    async def publish(self, event: BrokerEvent) -> None:
        self.hub.handle(event)

    async def token_connections(self, token_id: str) -> int:
        return self.hub.token_connections(token_id)

    async def channel_connections(self, project_id: str, channel_id: str) -> int:
        return self.hub.channel_connections(project_id, channel_id)
