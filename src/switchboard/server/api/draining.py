"""Graceful shutdown of the REST API: finish the calls in flight, refuse new ones.

aiohttp's own shutdown stops reading from every connection at once, so a call whose
body is still arriving when SIGTERM lands would never complete. The node therefore
drains first (:meth:`Drain.wait_idle`) and only then hands over to aiohttp's cleanup.
While draining, a new call gets 503 ``unavailable`` with ``Connection: close``, which a
client retries on another node; a call already in flight runs to its answer.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from switchboard.exceptions import Unavailable
from switchboard.server.api.envelope import error_response


class Drain:
    """Counts the REST calls in flight (WebSocket sessions are the gateway's to close)."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def middleware(self) -> Middleware:
        @web.middleware
        async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path.startswith(("/ws", "/1.0/ws")):
                return await handler(request)
            if self.draining:
                return error_response(
                    Unavailable("this node is shutting down; retry on another"),
                    {"Connection": "close"},
                )
            self.in_flight += 1
            self._idle.clear()
            try:
                return await handler(request)
            finally:
                self.in_flight -= 1
                if not self.in_flight:
                    self._idle.set()

        return count

    async def wait_idle(self, grace: float) -> bool:
        """Refuse new calls from now on; wait up to ``grace`` seconds for those in flight.

        True if every call finished in time.
        """
        self.draining = True
        try:
            async with asyncio.timeout(grace):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True
