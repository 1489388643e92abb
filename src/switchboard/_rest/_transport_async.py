"""The async client's transport: :class:`AsyncTransport` carries calls over HTTP, with retries.

Source of :mod:`switchboard._rest._transport_sync` (``python -m switchboard._rest._unasync``).
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx

from switchboard._rest import _io_async as io
from switchboard._rest._calls import Call
from switchboard._rest._settings import Settings, unreachable

__all__ = ["AsyncTransport"]

T = TypeVar("T")


class AsyncTransport:
    """Sends :class:`~switchboard._rest._calls.Call` objects, retrying as the settings say."""

    def __init__(self, settings: Settings, http_client: httpx.AsyncClient | None) -> None:
        self.settings = settings
        self._owns_client = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=settings.timeout)
        self._http.headers.update(settings.headers())

    async def send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            request = self._http.build_request(**self.settings.request_args(call))
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                delay = self.settings.retry_delay(call, attempt, error=exc)
                if delay is None:
                    raise unreachable(self.settings, call, exc) from exc
            else:
                delay = self.settings.retry_delay(call, attempt, response=response)
                if delay is None:
                    return call.result(response.status_code, response.content)
            attempt += 1
            await io.sleep(delay)

    async def send_all(self, many: list[Call[Any]]) -> None:
        await io.settle(self.send, many)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._http.aclose()
