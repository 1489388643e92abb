"""``/v1/settings``: the project's own settings (Switchboard's; Hop has none).

``history``, the default policy of channels created without their own, and ``inbox``,
the project's token inboxes (docs/inbox.md).
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from switchboard.server.api import bodies
from switchboard.server.api.auth import SERVICE, authenticated_project
from switchboard.server.api.envelope import ok
from switchboard.server.models import Project

routes = web.RouteTableDef()


class SettingsBody(msgspec.Struct, forbid_unknown_fields=True):
    """``PATCH /v1/settings``: only the fields present change."""

    history: bodies.HistoryBody | msgspec.UnsetType | None = msgspec.UNSET
    """The project's default history for new channels; ``size: 0`` keeps none (even if
    the server has a default); null removes the project's own (the server's applies)."""
    inbox: bodies.HistoryBody | msgspec.UnsetType | None = msgspec.UNSET
    """Token inboxes: each token keeps its last ``size`` direct messages for ``ttl_s``;
    ``size: 0`` or null turns them off (the default). docs/inbox.md."""


class HistoryView(msgspec.Struct):
    size: int
    ttl_s: int


class SettingsView(msgspec.Struct):
    history: HistoryView | None
    """The project's own default; null when it has none (see ``new_channel_history``)."""
    new_channel_history: HistoryView | None
    """What a channel created now without a ``history`` of its own keeps (null: none)."""
    inbox: HistoryView | None = None
    """The project's token inboxes (null: off, the default; docs/inbox.md)."""


class SettingsData(msgspec.Struct):
    settings: SettingsView


def _view(size: int, ttl_s: int) -> dict[str, int]:
    return {"size": size, "ttl_s": ttl_s}


async def _answer(request: web.Request, project: Project) -> web.Response:
    service = request.app[SERVICE]
    own, effective = await service.history_settings(project)
    inbox = await service.inbox_setting(project)
    return ok(
        {
            "settings": {
                "history": None if own is None else _view(own.size, own.ttl_s),
                "new_channel_history": (
                    None if effective is None else _view(effective.size, effective.ttl_s)
                ),
                "inbox": None if inbox is None else _view(inbox.size, inbox.ttl_s),
            }
        }
    )


@routes.get("/v1/settings")
async def get_settings(request: web.Request) -> web.Response:
    return await _answer(request, await authenticated_project(request))


@routes.patch("/v1/settings")
async def update_settings(request: web.Request) -> web.Response:
    project = await authenticated_project(request)
    body = bodies.decode(await request.read(), SettingsBody)
    service = request.app[SERVICE]
    if not isinstance(body.inbox, msgspec.UnsetType):
        inbox = body.inbox
        await service.set_project_inbox(
            project, None if inbox is None else inbox.size, 300 if inbox is None else inbox.ttl_s
        )
    if not isinstance(body.history, msgspec.UnsetType):
        if body.history is None:
            await service.set_project_history_default(project, None)
        else:
            await service.set_project_history_default(
                project, body.history.size, body.history.ttl_s
            )
    return await _answer(request, project)
