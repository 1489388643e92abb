"""`LocalBroker`: the single-node broker, a direct call into this node's hub."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from switchboard.server.broker import events as ev
from switchboard.server.broker.events import BrokerEvent

if TYPE_CHECKING:
    # Types only: the hub imports the broker's events, so importing it here is a cycle.
    from switchboard.server.hub import Hub
    from switchboard.server.presence import NodePresence


class LocalBroker:
    """Delivers events to the local :class:`~switchboard.server.hub.Hub` at once.

    Order is trivially publish order: each event is handled before ``publish`` returns.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        hub.on_member_change = self._member_changed

    def _member_changed(self, event: ev.MemberJoined | ev.MemberLeft) -> None:
        # Later in this loop turn, not now: the hub is in the middle of a join or leave.
        asyncio.get_running_loop().call_soon(self.hub.handle, event)

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

    async def channel_presence(self, project_id: str, channel_id: str) -> dict[str, NodePresence]:
        return {self.hub.node_id: self.hub.presence.local(project_id, channel_id)}
