# Generated from _transport_async.py by `python -m switchboard._rest._unasync`. Do not edit:
# edit _transport_async.py and run that command again (a test fails while they differ).
"""The sync client's transport: :class:`Transport` carries calls over HTTP, with retries.

Generated from :mod:`switchboard._rest._transport_async`; see there.
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx

from switchboard._rest import _io_sync as io
from switchboard._rest._calls import Call
from switchboard._rest._settings import Settings, unreachable

__all__ = ["Transport"]

T = TypeVar("T")


class Transport:
    """Sends :class:`~switchboard._rest._calls.Call` objects, retrying as the settings say."""

    def __init__(self, settings: Settings, http_client: httpx.Client | None) -> None:
        self.settings = settings
        self._owns_client = http_client is None
        self._http = http_client or httpx.Client(timeout=settings.timeout)
        self._http.headers.update(settings.headers())

    def send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            request = self._http.build_request(**self.settings.request_args(call))
            try:
                response = self._http.send(request)
            except httpx.TransportError as exc:
                delay = self.settings.retry_delay(call, attempt, error=exc)
                if delay is None:
                    raise unreachable(self.settings, call, exc) from exc
            else:
                delay = self.settings.retry_delay(call, attempt, response=response)
                if delay is None:
                    return call.result(response.status_code, response.content)
            attempt += 1
            io.sleep(delay)

    def send_all(self, many: list[Call[Any]]) -> None:
        io.settle(self.send, many)

    def close(self) -> None:
        if self._owns_client:
            self._http.close()
