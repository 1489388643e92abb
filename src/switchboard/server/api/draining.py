"""Graceful shutdown of the REST API: finish the calls in flight, refuse new ones.

aiohttp's own shutdown stops reading from every connection at once, so a call whose
body is still arriving when SIGTERM lands would never complete. The node therefore
drains first (:meth:`Drain.wait_idle`) and only then hands over to aiohttp's cleanup.
While draining, a new call gets 503 ``unavailable`` with ``Connection: close``, which a
client retries on another node; a call already in flight runs to its answer.

The app's one request middleware (``api/app.py``) calls :meth:`Drain.enter` and
:meth:`Drain.leave` around every REST call; WebSocket sessions are the gateway's to close.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from switchboard.exceptions import Unavailable
from switchboard.server.api.envelope import error_response


class Drain:
    """Counts the REST calls in flight."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    def refusal(self) -> web.Response:
        """The answer to a call that arrives while draining."""
        return error_response(
            Unavailable("this node is shutting down; retry on another"), {"Connection": "close"}
        )

    def enter(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        if not self.in_flight:
            self._idle.set()

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
