"""``/v1/webhooks`` routes: a project's webhook configuration and its delivery log.

They need a project token with every permission (``permissions.FULL_ACCESS_ROUTES``).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from aiohttp import web

from switchboard.server.api import bodies
from switchboard.server.api.auth import SERVICE, authenticated_project
from switchboard.server.api.envelope import ok
from switchboard.server.webhooks import Webhooks
from switchboard.server.webhooks.config import EventType

routes = web.RouteTableDef()

Url = Annotated[
    str, msgspec.Meta(description="An absolute http:// or https:// URL", max_length=2048)
]


class WebhooksBody(msgspec.Struct, forbid_unknown_fields=True):
    """A project's webhook configuration (Switchboard's own; Hop has no webhooks)."""

    url: Url | None = None
    """Where events are POSTed; null sends none."""
    events: list[EventType] | None = None
    """Which events; absent: token.online/offline and channel.occupied/vacated."""
    authorize_url: Url | None = None
    """Asked when a token SUBSCRIBEs to a private channel it was not granted."""


class WebhooksView(msgspec.Struct):
    url: str | None
    events: list[EventType]
    authorize_url: str | None
    secret_hint: str
    created_at: str
    updated_at: str


class WebhooksData(msgspec.Struct):
    webhooks: WebhooksView | None
    secret: str | None = None
    """The signing secret, only in the answer that made it (the first PUT)."""


class SecretData(msgspec.Struct):
    secret: str


class DeliveryView(msgspec.Struct):
    event_id: str
    type: str
    url: str | None
    attempt: int
    status: str
    """delivered, retrying, failed; granted or refused for subscribe.authorize."""
    response_status: int | None
    error: str | None
    duration_ms: float
    at: str


class DeliveryList(msgspec.Struct):
    deliveries: list[DeliveryView]


def _webhooks(request: web.Request) -> Webhooks:
    webhooks = request.app[SERVICE].webhooks
    assert webhooks is not None, "a node's service always has its webhooks"
    return webhooks


@routes.get("/v1/webhooks")
async def get_webhooks(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    config = await _webhooks(request).settings.get_fresh(project.id)
    return ok({"webhooks": config.view() if config is not None else None})


@routes.put("/v1/webhooks")
async def put_webhooks(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    body = bodies.decode(await request.read(), WebhooksBody)
    config, secret = await _webhooks(request).settings.put(
        project.id,
        url=body.url,
        events=None if body.events is None else [str(e) for e in body.events],
        authorize_url=body.authorize_url,
    )
    data: dict[str, Any] = {"webhooks": config.view()}
    if secret is not None:
        data["secret"] = secret
    return ok(data)


@routes.delete("/v1/webhooks")
async def delete_webhooks(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    await _webhooks(request).settings.delete(project.id)
    return ok()


@routes.post("/v1/webhooks/secret")
async def rotate_secret(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    return ok({"secret": await _webhooks(request).settings.rotate_secret(project.id)})


@routes.get("/v1/webhooks/deliveries")
async def deliveries(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    limit = bodies.query_int(request.query, "limit", 50)
    entries = await _webhooks(request).settings.deliveries(project.id, limit)
    return ok({"deliveries": entries})
