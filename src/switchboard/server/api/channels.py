"""``/v1/channels`` routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from switchboard.exceptions import InvalidRequest
from switchboard.server import ids
from switchboard.server.api import bodies
from switchboard.server.api.auth import (
    SERVICE,
    authenticated,
    authenticated_project,
    reauthenticated,
    send_checked,
)
from switchboard.server.api.envelope import ok
from switchboard.server.api.views import channel_view, history_view, token_view
from switchboard.server.history import HistoryPolicy, check_policy
from switchboard.server.models import UNCHANGED, Access, Project, Unchanged
from switchboard.server.service import Service

routes = web.RouteTableDef()
hot_routes = web.RouteTableDef()
"""A channel's ``/messages``, registered before every other route under ``/v1/channels/``:
aiohttp tries the resources that share a path prefix in registration order, so the
publish route is the first it tries, not the fourth (each a regex match)."""

CHANNEL = "/v1/channels/{channel_id:" + ids.CHANNEL_ID_SEGMENT + "}"
"""A channel's path. A reserved ID is not a channel ID here: ``/v1/channels/tokens`` and
the paths under it are the token routes' alone, whatever the method, so a method they
lack is a 405 (not a channel route refusing the ID "tokens"), as ``/openapi.json`` says."""


@routes.get("/v1/channels")
async def list_channels(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    query = request.query
    order = query.get("orderBy", "asc").lower()
    if order not in ("asc", "desc"):
        raise InvalidRequest("orderBy must be asc or desc")
    page_size = bodies.query_int(query, "pageSize", 1000)
    page = await request.app[SERVICE].list_channels(
        project,
        page=bodies.query_int(query, "page", 1),
        page_size=page_size,
        sort_by=query.get("sortBy", "created_at"),
        descending=order == "desc",
    )
    policies = await request.app[SERVICE].history_policies(project, page.items)
    return ok(
        {
            "channels": [channel_view(c, project, policies.get(c.id)) for c in page.items],
            "page_size": page_size,
            "total_count": page.total,
        }
    )


def _history(
    body: bodies.ChannelBody | bodies.ChannelUpdateBody,
) -> HistoryPolicy | Unchanged | None:
    if body.history is None:
        return None
    if isinstance(body.history, msgspec.UnsetType):
        return UNCHANGED
    return check_policy(body.history.size, body.history.ttl_s)


@routes.post("/v1/channels")
async def create_channel(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    body = bodies.decode(await request.read(), bodies.ChannelBody)
    service = request.app[SERVICE]
    history = await service.new_channel_history(project, _history(body))
    channel = await service.create_channel(
        project, body.type, None, bodies.optional(body.state), history
    )
    return ok({"channel": channel_view(channel, project, history)})


@routes.put(CHANNEL)
async def create_channel_with_id(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    body = bodies.decode(await request.read(), bodies.ChannelBody)
    service = request.app[SERVICE]
    history = await service.new_channel_history(project, _history(body))
    channel = await service.create_channel(
        project,
        body.type,
        request.match_info["channel_id"],
        bodies.optional(body.state),
        history,
    )
    return ok({"channel": channel_view(channel, project, history)})


@routes.get(CHANNEL)
async def get_channel(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    channel, history = await request.app[SERVICE].channel_and_history(
        project, request.match_info["channel_id"]
    )
    return ok({"channel": channel_view(channel, project, history)})


@routes.patch(CHANNEL)
async def update_channel(request: web.Request) -> web.Response:
    """Switchboard's own: change a channel's history policy (docs/history.md)."""
    project = await authenticated_project(request)
    body = bodies.decode(await request.read(), bodies.ChannelUpdateBody)
    channel, history = await request.app[SERVICE].update_channel(
        project, request.match_info["channel_id"], history=_history(body)
    )
    return ok({"channel": channel_view(channel, project, history)})


@routes.delete(CHANNEL)
async def delete_channel(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    await request.app[SERVICE].delete_channel(project, request.match_info["channel_id"])
    return ok()


@routes.get(CHANNEL + "/state")
async def get_state(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    state = await request.app[SERVICE].get_state(project, request.match_info["channel_id"])
    return ok({"state": state})


@routes.put(CHANNEL + "/state")
async def set_state(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    state = bodies.json_value(await request.read())
    await request.app[SERVICE].set_state(project, request.match_info["channel_id"], state)
    return ok()


@routes.patch(CHANNEL + "/state")
async def patch_state(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    partial = bodies.json_value(await request.read())
    await request.app[SERVICE].patch_state(project, request.match_info["channel_id"], partial)
    return ok()


@hot_routes.post(CHANNEL + "/messages")
async def publish_message(request: web.Request) -> web.Response:
    # The hot path: a project-token lookup this node cached is checked against the
    # store by the publish's own store call, not by a read of its own.
    access = await authenticated(request, deferred=True)
    body = await request.read()
    result = await publish(
        request.app[SERVICE],
        access,
        request.match_info["channel_id"],
        body,
        lambda: reauthenticated(request),
    )
    return ok(result)


async def publish(
    service: Service,
    access: Access,
    channel_id: str,
    raw: bytes,
    reauthenticate: Callable[[], Awaitable[Access]],
) -> dict[str, object] | None:
    """``POST /v1/channels/:id/messages`` once the caller is authenticated (maybe by a
    cached lookup, ``deferred``): the answer's data. aiohttp's route and the fast path
    (``api/fast_publish.py``) both answer with this. ``reauthenticate``: the token
    looked up again, with the route's checks (``reauthenticated``)."""
    body = bodies.decode(raw, bodies.MessageBody)

    def send(project: Project, generation: int | None) -> Awaitable[None]:
        return service.publish_message(
            project, channel_id, body.e, body.data, access_generation=generation
        )

    return await send_checked(service, access, body.idempotency_key, reauthenticate, send)


@hot_routes.get(CHANNEL + "/messages")
async def channel_history(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    limit = bodies.query_int(request.query, "limit", 100)
    page = await request.app[SERVICE].read_history(
        project,
        request.match_info["channel_id"],
        since=bodies.query_int(request.query, "since", 0),
        limit=limit,
    )
    return ok(history_view(page, limit))


@routes.put(CHANNEL + "/subscribers/{token}")
async def subscribe_token(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    await request.app[SERVICE].subscribe_token(
        project, request.match_info["channel_id"], request.match_info["token"]
    )
    return ok()


@routes.delete(CHANNEL + "/subscribers/{token}")
async def remove_token(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    await request.app[SERVICE].remove_token(
        project, request.match_info["channel_id"], request.match_info["token"]
    )
    return ok()


@routes.get(CHANNEL + "/tokens")
async def channel_tokens(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    service = request.app[SERVICE]
    tokens = await service.channel_tokens(project, request.match_info["channel_id"])
    return ok({"tokens": [token_view(t, await service.is_online(t.id)) for t in tokens]})


@routes.get(CHANNEL + "/presence")
async def channel_presence(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    data = await request.app[SERVICE].presence(project, request.match_info["channel_id"])
    return ok(data)


@routes.get(CHANNEL + "/stats")
async def channel_stats(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    count = await request.app[SERVICE].online_count(project, request.match_info["channel_id"])
    return ok({"stats": {"online_count": count}})
