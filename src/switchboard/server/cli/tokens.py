"""``switchboard tokens``: create leap tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import msgspec

from switchboard.server.api.views import token_json
from switchboard.server.cli._options import (
    emit,
    json_option,
    plain,
    project_option,
    store_options,
    store_settings,
    with_service,
)
from switchboard.server.service import Service


@click.group()
def tokens() -> None:
    """Create leap tokens (what end users connect with)."""


@tokens.command("create")
@project_option
@click.option("--state", default=None, help="Token state (metadata) as a JSON object.")
@click.option("--expires-at", default=None, help="Expiry, ISO 8601 (e.g. 2030-01-01T00:00:00Z).")
@store_options
@json_option
def tokens_create(
    project_id: str,
    state: str | None,
    expires_at: str | None,
    data_dir: Path,
    redis_url: str | None,
    redis_prefix: str,
    as_json: bool,
) -> None:
    """Create a leap token in a project."""
    raw: msgspec.Raw | None = None
    if state is not None:
        try:
            msgspec.json.decode(state)
        except msgspec.DecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--state") from None
        raw = msgspec.Raw(state.encode())
    settings = store_settings(data_dir, redis_url, redis_prefix)

    async def work(service: Service) -> Any:
        project = await service.store.get_project(project_id)
        if project is None:
            raise click.ClickException(f"no project {project_id!r}")
        return await service.create_token(project, raw, expires_at)

    token = with_service(settings, work)
    emit(as_json, {"token": plain(token_json(token, False))}, token.id)
