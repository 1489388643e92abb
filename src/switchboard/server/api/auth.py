"""Project-token authentication of REST calls."""

from __future__ import annotations

from aiohttp import web

from switchboard.exceptions import Forbidden
from switchboard.server.models import Project
from switchboard.server.service import Service

SERVICE = web.AppKey("service", Service)


async def authenticated_project(request: web.Request) -> Project:
    """The caller's project, from ``Authorization: ptk_…`` (or ``Bearer ptk_…``).

    Raises Unauthorized for a missing, unknown or revoked token, and Forbidden when
    ``?project=`` names a project other than the token's.
    """
    header = request.headers.get("Authorization", "").strip()
    if header[:7].lower() == "bearer ":
        header = header[7:].strip()
    project = await request.app[SERVICE].authenticate(header or None)
    wanted = request.query.get("project")
    if wanted and wanted != project.id:
        raise Forbidden("the project token does not belong to the project in ?project=")
    return project
