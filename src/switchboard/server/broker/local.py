"""`LocalBroker`: the single-node broker, a direct call into this node's handler."""

from __future__ import annotations

import asyncio

from switchboard.server.aio import cancel_and_wait
from switchboard.server.broker.base import EventHandler, LocalNode, PresenceChanges, StoreRoute
from switchboard.server.broker.events import (
    BrokerEvent,
    ChannelMessage,
    DirectMessage,
    NodePresence,
    TokenSubscribed,
)


class LocalBroker:
    """Hands events to this node's :class:`EventHandler` at once.

    Order is trivially publish order: each event is handled before ``publish`` returns.
    Presence events (a token's first join, its last leave) go the same way, from a
    task, since the hub emits them in the middle of a join or leave.
    """

    node_id = "local"

    def __init__(self, handler: EventHandler, local: LocalNode, changes: PresenceChanges) -> None:
        self._handler = handler
        self._local = local
        self._changes = changes
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return "LocalBroker()"

    @property
    def clustered(self) -> bool:
        return False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._hand_members_over())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None

    async def _hand_members_over(self) -> None:
        while True:
            await self._changes.members_queued.wait()
            for event in self._changes.take_members():
                self._handler.handle(event)

    async def ping(self) -> None:
        pass

    async def publish(self, event: BrokerEvent) -> None:
        self._handler.handle(event)

    async def publish_many(self, events: list[BrokerEvent]) -> None:
        handle = self._handler.handle
        for event in events:
            handle(event)

    def store_route(self, event: ChannelMessage | DirectMessage) -> StoreRoute | None:
        return None  # one node: publishing is a function call, nothing to combine

    async def publish_grant(self, event: TokenSubscribed) -> None:
        self._handler.handle(event)  # joined before this returns: one node hears everything

    async def token_connections(self, token_id: str) -> int:
        return self._local.token_connections(token_id)

    async def channel_connections(self, project_id: str, channel_id: str) -> int:
        return self._local.channel_connections(project_id, channel_id)

    async def channel_presence(self, project_id: str, channel_id: str) -> dict[str, NodePresence]:
        return {self.node_id: self._local.channel_share(project_id, channel_id)}

    def stats(self) -> dict[str, object]:
        return {}
