"""Project-token authentication of REST calls, and the one permission check.

Every REST handler starts with :func:`authenticated_project` (or :func:`authenticated`).
Besides the token it checks the permission the request's route needs, looked up in
``switchboard.server.permissions.ROUTE_PERMISSIONS`` by the route's method and path
template, so no handler checks one itself. The check runs before the handler reads a
body or looks anything up: a caller without the permission learns nothing about
whether a channel or token exists.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from switchboard.exceptions import (
    APIError,
    Forbidden,
    InternalError,
    MissingPermission,
    RateLimited,
    StaleAccess,
)
from switchboard.server import permissions
from switchboard.server.models import Access, Project
from switchboard.server.ratelimit import TokenBuckets
from switchboard.server.service import Service

SERVICE = web.AppKey("service", Service)
REST_LIMIT = web.AppKey("rest_limit", TokenBuckets)
"""Per-project-token buckets, present only when a REST rate limit is configured."""


async def authenticated_project(request: web.Request) -> Project:
    """The caller's project, from ``Authorization: ptk_…`` (or ``Bearer ptk_…``).

    Raises Unauthorized for a missing, unknown or revoked token, Forbidden when
    ``?project=`` names a project other than the token's, and MissingPermission when
    the token lacks the permission of the request's route (see :func:`authenticated`).
    """
    return (await authenticated(request)).project


def _check_permission(request: web.Request, granted: permissions.Permission) -> None:
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else request.path
    check_route_permission(request.method, route, granted)


def check_route_permission(method: str, route: str, granted: permissions.Permission) -> None:
    """Raise unless ``granted`` opens ``method route`` (a route template): the one
    permission check, for aiohttp's routes and the REST publish's fast path alike."""
    gate = permissions.ITEM_ROUTES.get((method, route))
    if gate is not None:
        if not int(granted) & gate:
            wanted = permissions.names(gate)
            raise MissingPermission(
                f"the project token has none of the permissions the items of "
                f"{method} {route} need ({', '.join(wanted)})",
                permission=",".join(wanted),
            )
        return  # each item is checked by itself: item_permits
    if (method, route) in permissions.FULL_ACCESS_ROUTES:
        if int(granted) & permissions.ALL != permissions.ALL:
            raise MissingPermission(
                f"{method} {route} needs a project token with every permission (all)",
                permission="all",
            )
        return
    mask = permissions.route_mask(method, route)
    if mask is None:
        # A route someone added without declaring its permission: refused, never open.
        raise InternalError(f"{method} {route} declares no permission")
    if not int(granted) & mask:
        needed = permissions.required_for(method, route)
        assert needed is not None
        # The route's template, never the path: the message repeats no ID or secret.
        raise MissingPermission(
            f"the project token lacks the {permissions.describe(needed)} permission, "
            f"which {method} {route} needs",
            permission=permissions.name(needed),
        )


def _secret(request: web.Request) -> str | None:
    return secret_of(request.headers.get("Authorization", ""))


def secret_of(header: str) -> str | None:
    """The project token in an ``Authorization`` header's value (``ptk_…`` or
    ``Bearer ptk_…``), None if it is empty."""
    header = header.strip()
    if header[:7].lower() == "bearer ":
        header = header[7:].strip()
    return header or None


async def authenticated(request: web.Request, *, deferred: bool = False) -> Access:
    """The caller's project and permissions, after every check of
    :func:`authenticated_project`, for a handler that shows the permissions.

    ``deferred``: a lookup this node cached may come back unchecked against the store;
    the handler must then pass its ``generation`` to a service call that checks it, and
    on StaleAccess call :func:`reauthenticated` (``Service.authenticate``).
    """
    secret = _secret(request)
    access = await request.app[SERVICE].authenticate(secret, deferred=deferred)
    project = access.project
    limit = request.app.get(REST_LIMIT)
    if limit is not None:
        # Counted after authentication, keyed by the token itself: callers with bad
        # tokens cannot spend a real token's allowance, nor make buckets of their own.
        wait = limit.take(secret or "", asyncio.get_running_loop().time())
        if wait:
            raise RateLimited(
                f"over {limit.rate:g} requests per second for this project token",
                retry_after=wait,
            )
    wanted = request.query.get("project")
    if wanted and wanted != project.id:
        raise Forbidden("the project token does not belong to the project in ?project=")
    _check_permission(request, access.permissions)
    return access


def item_permits(granted: int) -> Callable[[str], APIError | None]:
    """For a route of ``permissions.ITEM_ROUTES``: an operation's refusal (None if the
    project token may), by the operation's name (``publish``, ``direct`` …)."""

    # Decided once per request, not per item (flag arithmetic costs microseconds).
    refusals: dict[str, APIError | None] = {}
    for op, needed in permissions.OPERATION_PERMISSIONS.items():
        refusals[op] = (
            None
            if permissions.allows(granted, needed)
            else MissingPermission(
                f"the project token lacks the {permissions.describe(needed)} permission, "
                f"which a {op} operation needs",
                permission=permissions.name(needed),
            )
        )
    return refusals.__getitem__


async def reauthenticated(request: web.Request) -> Access:
    """After StaleAccess: the token looked up again in the store (Unauthorized if it was
    revoked), with the checks of :func:`authenticated` but the rate limit (the request
    was counted once already)."""
    access = await request.app[SERVICE].authenticate(_secret(request))
    wanted = request.query.get("project")
    if wanted and wanted != access.project.id:
        raise Forbidden("the project token does not belong to the project in ?project=")
    _check_permission(request, access.permissions)
    return access


async def send_checked(
    service: Service,
    access: Access,
    idempotency_key: str | None,
    reauthenticate: Callable[[], Awaitable[Access]],
    send: Callable[[Project, int | None], Awaitable[object]],
) -> dict[str, object] | None:
    """A REST publish or direct message by a caller whose lookup may be a cached one
    (``authenticated(deferred=True)``); the answer's data.

    ``send(project, generation)`` sends it, checking ``generation`` (None: no check) in
    its own store call. A stale one (StaleAccess: a token of the project was revoked)
    looks the token up again (``reauthenticate``) and sends once more. With an
    idempotency key, the lookup is checked first and the key claimed (``Service.once``).
    """
    if idempotency_key is not None:  # rare: the lookup checked, the key claimed
        project = (await reauthenticate()).project

        async def once() -> dict[str, object]:
            await send(project, None)
            return {}

        return await service.once(project, idempotency_key, once)
    try:
        await send(access.project, access.generation)
    except StaleAccess:
        access = await reauthenticate()
        await send(access.project, None)
    return None
