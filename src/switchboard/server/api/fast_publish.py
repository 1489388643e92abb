"""The REST publish's fast path: ``POST /v1/channels/:id/messages`` (and a direct
message, ``POST /v1/channels/tokens/:token/messages``) answered from the connection's
bytes, without aiohttp's request, router, middleware and response objects.

It answers what aiohttp's route (``api/channels.py``, through ``api/app.py``'s
middleware) answers — same checks in the same order, the same exceptions becoming the
same envelope, the same success body and headers — and keeps what that route's
middleware does: the drain count (SIGTERM waits for it), the access-log line, the
REST metrics. Which requests take it and when a connection falls back to aiohttp is
``api/fast_conn.py``'s; docs/architecture.md has the why.
"""

from __future__ import annotations

import logging
import time
from http import HTTPStatus

from aiohttp import web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE

from switchboard.exceptions import APIError, InternalError
from switchboard.server.api.app import DRAIN, MAX_BODY, access_log, log, redact_path
from switchboard.server.api.auth import REST_LIMIT, SERVICE, check_route_permission, secret_of
from switchboard.server.api.channels import publish
from switchboard.server.api.envelope import error_parts, ok_body
from switchboard.server.api.fast_parse import FastRequest
from switchboard.server.api.tokens import direct
from switchboard.server.models import Access
from switchboard.server.observability.metrics import REST_METRICS

ROUTE = "/v1/channels/{channel_id}/messages"
DIRECT_ROUTE = "/v1/channels/tokens/{token}/messages"
"""The route templates the fast path answers (permissions, metrics)."""

_SERVER = f"\r\nServer: {SERVER_SOFTWARE}\r\n".encode()


class FastPublish:
    """What the fast path of one app needs, shared by its connections."""

    def __init__(self, app: web.Application, *, cors_origins: tuple[str, ...]) -> None:
        self.service = app[SERVICE]
        self.drain = app[DRAIN]
        self.max_body = app[MAX_BODY]
        self.origin_matters = bool(cors_origins)
        """With CORS on, a request with ``Origin`` is aiohttp's (its middleware adds
        the CORS headers)."""
        self.enabled = REST_LIMIT not in app
        """Off with a REST rate limit: aiohttp's route applies it."""
        self.metrics = app.get(REST_METRICS)
        self.answered = 0
        """Requests the fast path answered (tests read it; aiohttp's are not counted)."""
        self._ok: tuple[str, bytes, bytes] = ("", b"", b"")
        """The date, and the 200 answer with that date (keep-alive, close)."""

    @property
    def open(self) -> bool:
        """Whether a request may take the fast path now (not while draining: aiohttp's
        route answers those 503)."""
        return self.enabled and not self.drain.draining

    async def answer(self, request: FastRequest) -> bytes:
        """The whole HTTP answer to ``request``, as aiohttp's route would give it."""
        started = time.perf_counter()
        self.answered += 1
        drain = self.drain
        drain.enter()
        try:
            status, body, headers = await self._outcome(request)
        finally:
            drain.leave()
        seconds = time.perf_counter() - started
        # As the app's middleware: the record is built only if it will be written.
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "request",
                extra={
                    "method": "POST",
                    "path": _path(request),
                    "status": status,
                    "ms": round(seconds * 1000, 2),
                },
            )
        if self.metrics is not None:
            route = DIRECT_ROUTE if request.direct else ROUTE
            self.metrics.observe_route("POST", route, status, seconds)
        if status == 200 and body is OK_BODY:
            return self._ok_answer(request.close)
        return _http_answer(status, body, headers, request.close)

    async def _outcome(self, request: FastRequest) -> tuple[int, bytes, dict[str, str]]:
        """(status, body, extra headers), as ``api/app.py``'s ``_answer`` makes them."""
        service = self.service
        secret = secret_of(request.authorization)

        async def authenticated(deferred: bool, route: str = ROUTE) -> Access:
            access = await service.authenticate(secret, deferred=deferred)
            check_route_permission("POST", route, access.permissions)
            return access

        try:
            if request.direct:
                access = await authenticated(True, DIRECT_ROUTE)
                data = await direct(
                    service,
                    access,
                    request.target,
                    request.body,
                    lambda: authenticated(False, DIRECT_ROUTE),
                )
            else:
                access = await authenticated(True)
                data = await publish(
                    service, access, request.target, request.body, lambda: authenticated(False)
                )
            return 200, ok_body(data), {}
        except APIError as exc:
            return (exc.status, *error_parts(exc))
        except Exception:
            log.exception("unhandled error", extra={"method": "POST", "path": _path(request)})
            error = InternalError("the server failed; the error is in its log")
            return (error.status, *error_parts(error))

    def _ok_answer(self, close: bool) -> bytes:
        date, keep, closing = self._ok
        now = rfc822_formatted_time()
        if now is not date:
            keep = _http_answer(200, OK_BODY, {}, False)
            closing = _http_answer(200, OK_BODY, {}, True)
            self._ok = (now, keep, closing)
        return closing if close else keep


OK_BODY = ok_body(None)


def _path(request: FastRequest) -> str:
    """The request's path, fit for a log (a token in it cut short)."""
    kind = "tokens/" if request.direct else ""
    return redact_path(f"/v1/channels/{kind}{request.target}/messages")


def _http_answer(status: int, body: bytes, headers: dict[str, str], close: bool) -> bytes:
    """The bytes aiohttp writes for a ``web.Response`` of JSON ``body`` (its header
    order: the response's own headers, then Content-Type, Content-Length, Date, Server,
    and ``Connection: close`` when the connection ends)."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n{extra}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Date: {rfc822_formatted_time()}"
    ).encode("latin-1")
    return head + _SERVER + (b"Connection: close\r\n\r\n" if close else b"\r\n") + body
