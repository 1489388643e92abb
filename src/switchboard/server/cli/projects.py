"""``switchboard projects``: create and list projects."""

from __future__ import annotations

from pathlib import Path

import click

from switchboard.server.api.views import project_json
from switchboard.server.cli._options import (
    emit,
    json_option,
    store_options,
    store_settings,
    with_service,
)


@click.group()
def projects() -> None:
    """Create and list projects."""


@projects.command("create")
@click.argument("name")
@store_options
@json_option
def projects_create(
    name: str, data_dir: Path, redis_url: str | None, redis_prefix: str, as_json: bool
) -> None:
    """Create project NAME and its first project token (printed once)."""
    settings = store_settings(data_dir, redis_url, redis_prefix)
    project, secret = with_service(settings, lambda s: s.create_project(name))
    emit(
        as_json,
        {"project": project_json(project), "project_token": secret},
        f"Created project {project.name!r}\n  Project ID:     {project.id}\n"
        f"  Project token:  {secret}\n  (shown once; keep it secret)",
    )


@projects.command("list")
@store_options
@json_option
def projects_list(data_dir: Path, redis_url: str | None, redis_prefix: str, as_json: bool) -> None:
    """List projects."""
    settings = store_settings(data_dir, redis_url, redis_prefix)
    found = with_service(settings, lambda s: s.store.list_projects())
    emit(
        as_json,
        {"projects": [project_json(p) for p in found]},
        "\n".join(f"{p.id}  {p.name}  {p.created_at}" for p in found) or "(no projects)",
    )
