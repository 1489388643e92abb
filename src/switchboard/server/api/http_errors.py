"""The JSON envelope for errors aiohttp answers itself, before any route or middleware.

A request head aiohttp cannot parse — a header line over 8 KiB, more than 64 KiB of
headers, too many of them, a bad request line — is answered by aiohttp's protocol
handler with a plain-text 400, since no application code has run yet. Every REST
error is the JSON envelope (SPEC §2), so the node's server makes protocol handlers
whose answer is the envelope: the same status, ``invalid_request`` (or
``internal_error``), aiohttp's own reason as the message, the connection closed as
aiohttp closes it.

The same handler carries the REST publish's fast path (``api/fast_conn.py``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web, web_protocol
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from switchboard.exceptions import APIError, InternalError, InvalidRequest
from switchboard.server.api.envelope import error_response
from switchboard.server.api.fast_conn import FastPublishHandler
from switchboard.server.api.fast_publish import FastPublish


class _EnvelopeRequestHandler(FastPublishHandler):
    # No __dict__ per connection: aiohttp's handler has slots, and so must this one.
    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> StreamResponse:
        # aiohttp's own logs the error and refuses when part of a response went out.
        super().handle_error(request, status, exc, message)
        error: APIError
        if status >= 500:
            error = InternalError("the server failed to handle the request", status=status)
        else:
            # aiohttp's reason, without the bytes it quotes (they may hold a header's value).
            reason = (message or "unparsable").strip().splitlines()[0].split(": b'")[0][:200]
            error = InvalidRequest(f"malformed HTTP request: {reason}", status=status)
        response = error_response(error)
        response.force_close()
        return response


class EnvelopeServer(web.Server):
    """aiohttp's ``Server``, whose connections answer protocol errors with the envelope
    and take the REST publish's fast path (set by :func:`install`)."""

    handler_class: type[_EnvelopeRequestHandler] = _EnvelopeRequestHandler

    def __call__(self) -> web_protocol.RequestHandler:
        kwargs: dict[str, Any] = self._kwargs
        return self.handler_class(self, loop=self._loop, **kwargs)


def install(runner: web.AppRunner, fast: FastPublish | None = None) -> None:
    """After ``runner.setup()``: the connections its sites accept answer with the
    envelope, and with ``fast`` take the REST publish's fast path."""
    server = runner.server
    assert server is not None, "call after runner.setup()"
    server.__class__ = EnvelopeServer
    assert isinstance(server, EnvelopeServer)
    # The server's own handler class carries ``fast``: a class attribute, not a slot
    # per connection (idle sockets are counted in bytes, bench/memory.py).
    server.handler_class = type(
        "EnvelopeRequestHandler", (_EnvelopeRequestHandler,), {"__slots__": (), "_fast": fast}
    )
