"""The aiohttp application: one port for REST, the Leap gateway and health checks."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from switchboard.exceptions import (
    APIError,
    InternalError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    Unavailable,
)
from switchboard.server import ids
from switchboard.server.api import batch, channels, console, openapi, settings, tokens, webhooks
from switchboard.server.api.auth import REST_LIMIT, SERVICE
from switchboard.server.api.cors import add_headers, is_preflight, preflight_response
from switchboard.server.api.draining import Drain
from switchboard.server.api.envelope import error_response, ok
from switchboard.server.edge import Gateway
from switchboard.server.observability import metrics as prometheus
from switchboard.server.ratelimit import TokenBuckets
from switchboard.server.service import Service

log = logging.getLogger("switchboard.api")
access_log = logging.getLogger("switchboard.access")

MAX_BODY = web.AppKey("max_body", int)
DRAIN = web.AppKey("drain", Drain)


_SECRET_IN_PATH = re.compile(r"(leap_token_|ptk_)[A-Za-z0-9_-]+")


def redact_path(path: str) -> str:
    """A request path fit for a log: tokens in it are cut short."""
    return _SECRET_IN_PATH.sub(lambda m: m.group(0)[:15] + "…", path)


def _reserved_hint(path: str) -> str:
    # PUT /v1/channels/tokens is most likely a channel named "tokens" being created
    # (Hop's SDKs send exactly that): say why that path has no such method.
    parts = [*path.split("/", 4), ""]
    if parts[1:3] == ["v1", "channels"] and parts[3] in ids.RESERVED_CHANNEL_IDS:
        return f" ({parts[3]!r} is reserved: it is not a channel ID)"
    return ""


def _from_http_exception(exc: web.HTTPException, request: web.Request) -> web.Response:
    headers: dict[str, str] = {}
    error: APIError
    if isinstance(exc, web.HTTPNotFound):
        error = NotFound(f"no route {request.method} {redact_path(request.path)}")
    elif isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        error = APIError(
            f"{request.method} is not allowed here; use {allowed}{_reserved_hint(request.path)}",
            status=405,
            code="method_not_allowed",
        )
        headers["Allow"] = allowed
    elif isinstance(exc, web.HTTPRequestEntityTooLarge):
        error = PayloadTooLarge(
            f"the request body is over the limit of {request.app[MAX_BODY]} bytes"
        )
    elif exc.status < 500:
        error = InvalidRequest(
            exc.reason or "bad request", status=exc.status, code="invalid_request"
        )
    else:
        error = InternalError(exc.reason or "internal error")
    return error_response(error, headers)


WEBSOCKET_PATHS = ("/ws", "/1.0/ws")


def request_middleware(
    drain: Drain, *, body_timeout_s: float, cors_origins: tuple[str, ...]
) -> Middleware:
    """The one middleware every request passes through.

    In order: CORS preflights, refusal while draining, the body deadline, the handler,
    every failure as the JSON error envelope, CORS headers, one access-log line.

    One middleware, not a stack of them, on purpose: a WebSocket's handler runs inside
    the middlewares for the socket's whole life, and each one keeps a suspended
    coroutine per socket (about 0.3 KiB each, ``bench/memory.py``).
    """

    @web.middleware
    def handle(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        # Not a coroutine itself: a socket gets _answer's coroutine straight back, so
        # one frame per socket is kept for its life, not two.
        if request.path.startswith(WEBSOCKET_PATHS):
            return _answer(request, handler)
        return rest(request, handler)

    async def rest(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        origin = request.headers.get("Origin") if cors_origins else None
        response: web.StreamResponse
        if origin is not None and is_preflight(request):
            response = preflight_response(request, origin, cors_origins)
        elif drain.draining:
            response = drain.refusal()
        else:
            drain.enter()
            try:
                response = await _answer(request, handler, body_timeout_s)
            finally:
                drain.leave()
        if origin is not None:
            add_headers(response, origin, cors_origins)
        # Build the record only if it will be written: it costs ~3% of a REST publish.
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "request",
                extra={
                    "method": request.method,
                    "path": redact_path(request.path),
                    "status": response.status,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
        return response

    return handle


async def _answer(
    request: web.Request, handler: Handler, body_timeout_s: float | None = None
) -> web.StreamResponse:
    """The handler's response, or the error envelope for whatever it raised."""
    try:
        if body_timeout_s is not None:
            await _read_body_within(request, body_timeout_s)
        return await handler(request)
    except APIError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        return _from_http_exception(exc, request)
    except Exception:
        log.exception(
            "unhandled error", extra={"method": request.method, "path": redact_path(request.path)}
        )
        return error_response(InternalError("the server failed; the error is in its log"))


async def _read_body_within(request: web.Request, seconds: float) -> None:
    """Read a request's body within ``seconds``, else 408 (slow senders)."""
    # A small body usually came in the same packets as the head: nothing to wait for,
    # and no timer to arm on the hot path.
    if request.can_read_body and not request.content.is_eof():
        try:
            async with asyncio.timeout(seconds):
                await request.read()  # kept by aiohttp: the handler's read() returns it
        except TimeoutError:
            raise APIError(
                f"the request body did not arrive within {seconds:g} s",
                status=408,
                code="request_timeout",
            ) from None


def build_app(
    service: Service,
    gateway: Gateway,
    *,
    max_body: int,
    body_timeout_s: float = 15.0,
    cors_origins: tuple[str, ...] = (),
    rest_requests_per_second: float = 0.0,
    metrics: bool = False,
    workers: int = 1,
) -> web.Application:
    drain = Drain()
    middleware = request_middleware(drain, body_timeout_s=body_timeout_s, cors_origins=cors_origins)
    app = web.Application(middlewares=[middleware], client_max_size=max_body)
    app[DRAIN] = drain
    app[SERVICE] = service
    app[MAX_BODY] = max_body
    if rest_requests_per_second > 0:
        app[REST_LIMIT] = TokenBuckets(rest_requests_per_second)

    async def healthz(request: web.Request) -> web.Response:
        return ok({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        try:
            await service.store.ping()
            await service.broker.ping()
        except Exception as exc:
            raise Unavailable(f"not ready: {exc}") from None
        if not gateway.accepting:
            raise Unavailable("shutting down")
        return ok({"status": "ready", "workers": workers})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/ws", gateway.handle)
    app.router.add_get("/1.0/ws", gateway.handle)
    console.setup(app, gateway.hub)  # /console and /v1/stats (api/console.py)
    # The channel routes' {channel_id} excludes the reserved IDs (api/channels.py), so
    # /v1/channels/tokens… is the token routes' alone, whatever the order here.
    app.router.add_routes(channels.hot_routes)  # the REST publish: tried first
    app.router.add_routes(tokens.routes)
    app.router.add_routes(channels.routes)
    app.router.add_routes(webhooks.routes)
    app.router.add_routes(settings.routes)
    app.router.add_routes(batch.routes)
    if metrics:
        prometheus.setup(app, service, gateway)  # /metrics, for operators (server/metrics.py)
    openapi.setup(app)  # /openapi.json and /docs, from the routes above (api/openapi.py)
    return app
