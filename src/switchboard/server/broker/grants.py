"""Grants that wait for the nodes with a token's sockets to join them to the channel.

A backend's grant (``subscribe_token``) returns once every node with the token's
sockets said it joined them (``GrantJoined``, on the granting node's own topic), or
after :data:`GRANT_WAIT_S`: a node that did not hear the channel yet joins them only
once it does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from switchboard.server.broker.events import GrantJoined

GRANT_WAIT_S = 2.0
"""How long a backend's grant waits for the nodes with the token's sockets to join them."""


class PendingGrants:
    """The grants of one node that wait for answers, by request."""

    def __init__(self) -> None:
        self._waiting: dict[str, tuple[set[str], asyncio.Future[None]]] = {}

    async def wait(
        self, request: str, nodes: set[str], publish: Callable[[], Awaitable[None]]
    ) -> None:
        """``publish`` the grant, then wait until ``nodes`` all answered ``request``."""
        done = asyncio.get_running_loop().create_future()
        self._waiting[request] = (nodes, done)
        try:
            await publish()
            # asyncio.wait: it neither cancels the future nor swallows a cancellation.
            await asyncio.wait([done], timeout=GRANT_WAIT_S)
        finally:
            del self._waiting[request]

    def joined(self, event: GrantJoined) -> None:
        waiting = self._waiting.get(event.request)
        if waiting is not None:
            nodes, done = waiting
            nodes.discard(event.node_id)
            if not nodes and not done.done():
                done.set_result(None)
