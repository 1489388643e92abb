"""The web console: its files under ``/console``, and ``GET /v1/stats`` for its overview.

The console is plain HTML, CSS and JavaScript modules shipped inside the package
(``switchboard/server/console/``); they are read once when the app is built and served
from memory, so a request never touches the file system and no path can escape the
folder. The page talks to the REST API with the project token in the ``Authorization``
header and to the gateway as a project-scope connection (docs/console.md).

``GET /v1/stats`` (permission ``read_channels``) answers for the caller's project: the
project itself, the permissions of the caller's project token, its channel and token
totals (from the store), this node's connections and online tokens, and messages
per second over the last five minutes (:class:`~switchboard.server.fanout.activity.Activity`,
sampled once a second by a background task of the app). With ``--redis`` the connection
and online counts are this node's; the message rate is the cluster's (every node hears
every message).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.resources
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib.resources.abc import Traversable

from aiohttp import web

from switchboard import __version__
from switchboard.exceptions import NotFound
from switchboard.server import permissions
from switchboard.server.api.auth import SERVICE, authenticated
from switchboard.server.api.envelope import ok
from switchboard.server.api.views import project_json
from switchboard.server.fanout.activity import Activity
from switchboard.server.fanout.hub import Hub
from switchboard.server.observability.process_stats import process_figures


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


HUB = web.AppKey("console_hub", Hub)
ASSETS = web.AppKey("console_assets", dict[str, Asset])

SAMPLE_INTERVAL_S = 1

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}


def _walk(folder: Traversable, prefix: str = "") -> dict[str, Asset]:
    found: dict[str, Asset] = {}
    for entry in folder.iterdir():
        name = prefix + entry.name
        if entry.is_dir():
            found.update(_walk(entry, name + "/"))
            continue
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        content_type = _TYPES.get(suffix)
        if content_type is None:
            continue  # only the kinds of file a page needs are served
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        found[name] = Asset(body, content_type, etag)
    return found


def load_assets() -> dict[str, Asset]:
    """Every servable file of the console, by its path under ``/console/``."""
    return _walk(importlib.resources.files("switchboard.server").joinpath("console"))


_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


def _security_headers(request: web.Request) -> dict[str, str]:
    # The Host header goes into the policy only when it is a plain host[:port].
    host = request.host
    ws = f" ws://{host} wss://{host}" if _HOST.match(host) else ""
    return {
        # Scripts, styles and connections only from this server; the WebSocket is on
        # the same host (Chromium and Firefox match 'self' to ws:, older ones need it).
        "Content-Security-Policy": (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self'{ws}; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-cache",
    }


def _serve(request: web.Request, name: str) -> web.Response:
    asset = request.app[ASSETS].get(name)
    if asset is None:
        raise NotFound(f"no console file {name!r}")
    headers = _security_headers(request)
    headers["ETag"] = asset.etag
    if request.headers.get("If-None-Match") == asset.etag:
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = asset.content_type
    return web.Response(body=asset.body, headers=headers)


async def console_index(request: web.Request) -> web.Response:
    return _serve(request, "index.html")


async def console_asset(request: web.Request) -> web.Response:
    return _serve(request, request.match_info["name"])


async def stats(request: web.Request) -> web.Response:
    """The overview of the caller's project (see the module docstring)."""
    access = await authenticated(request)
    project = access.project
    service = request.app[SERVICE]
    hub = request.app[HUB]
    channels = await service.list_channels(
        project, page=1, page_size=1, sort_by="created_at", descending=False
    )
    tokens = await service.list_tokens(project)
    here = hub.project_figures(project.id)
    activity = hub.activity
    series = activity.series(project.id)
    recent = series[-10:]
    return ok(
        {
            "project": project_json(project),
            # What the signed-in project token may do: the console shows it.
            "permissions": permissions.names(access.permissions),
            "version": __version__,
            # With --redis: connections and online tokens are this node's own.
            "cluster": service.broker.clustered,
            "connections": here.clients,
            "console_connections": here.consoles,
            "channels": channels.total,
            "channels_active": here.channels_active,
            "tokens": len(tokens),
            "tokens_online": here.tokens_online,
            # This process's memory, descriptors and tasks: a soak reads them for leaks.
            "process": process_figures(),
            "messages": {
                "total": activity.total(project.id),
                "per_second": round(sum(recent) / len(recent), 2),
                "interval_s": SAMPLE_INTERVAL_S,
                "series": [int(v) if v.is_integer() else round(v, 2) for v in series],
            },
        }
    )


async def _sample(activity: Activity) -> None:
    next_at = time.monotonic() + SAMPLE_INTERVAL_S
    while True:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        next_at += SAMPLE_INTERVAL_S
        activity.sample()


def setup(app: web.Application, hub: Hub) -> None:
    """Register the console's routes and its sampler on ``app`` (before the channel routes)."""
    app[HUB] = hub
    app[ASSETS] = load_assets()

    async def sampler(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_sample(hub.activity), name="console-activity-sampler")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(sampler)
    app.router.add_get("/console", console_index)
    app.router.add_get("/console/", console_index)
    app.router.add_get("/console/{name:.+}", console_asset)
    app.router.add_get("/v1/stats", stats)
