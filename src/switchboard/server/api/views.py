"""How records look on the wire (SPEC §2: Channel, Token)."""

from __future__ import annotations

from typing import Any

from switchboard.server.models import Channel, Project, Token


def project_json(project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "namespace": project.name,
        "type": "regular",
        "created_at": project.created_at,
    }


def channel_json(channel: Channel, project: Project) -> dict[str, Any]:
    return {
        "id": channel.id,
        "project": project_json(project),
        "state": channel.state,
        "type": channel.type.value,
        "capabilities": 0,
        "created_at": channel.created_at,
    }


def token_json(token: Token, is_online: bool) -> dict[str, Any]:
    return {
        "id": token.id,
        "project_id": token.project_id,
        "state": token.state,
        "is_online": is_online,
        "created_at": token.created_at,
        "expires_at": token.expires_at,
    }
