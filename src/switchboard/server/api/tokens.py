"""``/v1/channels/tokens`` routes (no channel route matches these paths: ``api/channels.py``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from switchboard.server.api import bodies
from switchboard.server.api.auth import (
    SERVICE,
    authenticated,
    authenticated_project,
    reauthenticated,
    send_checked,
)
from switchboard.server.api.envelope import ok
from switchboard.server.api.views import history_view, token_view
from switchboard.server.models import UNCHANGED, Access, Project
from switchboard.server.service import Service

routes = web.RouteTableDef()


@routes.post("/v1/channels/tokens")
async def create_token(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    raw = await request.read()
    body = bodies.decode(raw, bodies.CreateTokenBody) if raw.strip() else bodies.CreateTokenBody()
    # "" is a timestamp to check (and refuse), as on PATCH, not a missing expiry.
    expires_at = body.expires_at if body.expires_at is not None else body.expiresAt
    token = await request.app[SERVICE].create_token(
        project, bodies.optional(body.state), expires_at
    )
    return ok({"token": token_view(token, False)})


@routes.get("/v1/channels/tokens")
async def list_tokens(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    service = request.app[SERVICE]
    tokens = await service.list_tokens(project)
    return ok({"tokens": [token_view(t, await service.is_online(t.id)) for t in tokens]})


@routes.get("/v1/channels/tokens/{token}")
async def get_token(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    service = request.app[SERVICE]
    token = await service.get_token(project, request.match_info["token"])
    return ok({"token": token_view(token, await service.is_online(token.id))})


@routes.patch("/v1/channels/tokens/{token}")
async def update_token(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    service = request.app[SERVICE]
    body = bodies.decode(await request.read(), bodies.UpdateTokenBody)
    expires_at = body.expires_at if body.expires_at is not msgspec.UNSET else body.expiresAt
    token = await service.update_token(
        project,
        request.match_info["token"],
        state=UNCHANGED if body.state is msgspec.UNSET else bodies.optional(body.state),
        expires_at=UNCHANGED if expires_at is msgspec.UNSET else expires_at,
    )
    return ok({"token": token_view(token, await service.is_online(token.id))})


@routes.delete("/v1/channels/tokens/{token}")
async def delete_token(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    await request.app[SERVICE].delete_token(project, request.match_info["token"])
    return ok()


@routes.post("/v1/channels/tokens/{token}/messages")
async def direct_message(request: web.Request) -> web.Response:
    # As a channel's publish: a cached project-token lookup is checked by the message's
    # own store call (on one Redis, the script that also publishes it).
    access = await authenticated(request, deferred=True)
    body = await request.read()
    token_id = request.match_info["token"]
    result = await direct(
        request.app[SERVICE], access, token_id, body, lambda: reauthenticated(request)
    )
    return ok(result)


async def direct(
    service: Service,
    access: Access,
    token_id: str,
    raw: bytes,
    reauthenticate: Callable[[], Awaitable[Access]],
) -> dict[str, object] | None:
    """``POST /v1/channels/tokens/:token/messages`` once the caller is authenticated
    (maybe by a cached lookup, ``deferred``): the answer's data. aiohttp's route and the
    fast path (``api/fast_publish.py``) share it. ``reauthenticate``: the token looked up
    again, with the route's checks (``reauthenticated``)."""
    body = bodies.decode(raw, bodies.MessageBody)

    def send(project: Project, generation: int | None) -> Awaitable[object]:
        return service.direct_message(
            project, token_id, body.e, body.data, access_generation=generation
        )

    return await send_checked(service, access, body.idempotency_key, reauthenticate, send)


@routes.get("/v1/channels/tokens/{token}/messages")
async def token_inbox(request: web.Request) -> web.Response:
    """Switchboard's own: the token's kept direct messages (docs/inbox.md)."""
    project = await authenticated_project(request)
    limit = bodies.query_int(request.query, "limit", 100)
    page = await request.app[SERVICE].read_inbox(
        project,
        request.match_info["token"],
        since=bodies.query_int(request.query, "since", 0),
        limit=limit,
    )
    return ok(history_view(page, limit))
