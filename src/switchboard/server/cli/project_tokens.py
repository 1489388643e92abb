"""``switchboard project-tokens``: create, list and revoke project tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from switchboard.exceptions import InvalidRequest
from switchboard.server import permissions
from switchboard.server.cli._options import (
    emit,
    json_option,
    plain,
    project_option,
    store_options,
    store_settings,
    with_service,
)
from switchboard.server.models import ProjectTokenInfo


def _parse_permissions(values: tuple[str, ...]) -> permissions.Permission:
    try:
        return permissions.parse(values or ("all",))
    except InvalidRequest as exc:
        raise click.BadParameter(exc.message, param_hint="--permissions") from None


def _shown(granted: int) -> str:
    return "all" if granted == permissions.ALL else ",".join(permissions.names(granted))


def _token_json(info: ProjectTokenInfo) -> Any:
    # Names rather than the bit field: what --permissions takes, and readable.
    return {**plain(info), "permissions": permissions.names(info.permissions)}


@click.group("project-tokens")
def project_tokens() -> None:
    """Create, list and revoke project tokens (the secrets of the REST API)."""


@project_tokens.command("create")
@project_option
@click.option(
    "--permissions",
    "permission_names",
    multiple=True,
    metavar="NAMES",
    help="What the token may do: permission names, comma-separated or the option "
    "repeated (read_channels, publish_channel_messages, …; see docs/permissions.md). "
    "[default: all]",
)
@store_options
@json_option
def project_tokens_create(
    project_id: str,
    permission_names: tuple[str, ...],
    data_dir: Path,
    redis_url: str | None,
    redis_prefix: str,
    as_json: bool,
) -> None:
    """Create a project token for a project (printed once)."""
    granted = _parse_permissions(permission_names)
    settings = store_settings(data_dir, redis_url, redis_prefix)
    secret = with_service(settings, lambda s: s.create_project_token(project_id, granted))
    emit(
        as_json,
        {
            "project_id": project_id,
            "project_token": secret,
            "permissions": permissions.names(granted),
        },
        f"{secret}\n  permissions: {_shown(granted)}\n(shown once; keep it secret)",
    )


@project_tokens.command("list")
@project_option
@store_options
@json_option
def project_tokens_list(
    project_id: str, data_dir: Path, redis_url: str | None, redis_prefix: str, as_json: bool
) -> None:
    """List a project's tokens: ID, hint, permissions and state, never the secret."""
    settings = store_settings(data_dir, redis_url, redis_prefix)
    found = with_service(settings, lambda s: s.store.list_project_tokens(project_id))
    emit(
        as_json,
        {"project_tokens": [_token_json(t) for t in found]},
        "\n".join(
            f"{t.id}  {t.hint}  created {t.created_at}"
            + (f"  REVOKED {t.revoked_at}" if t.revoked_at else "")
            + f"  permissions: {_shown(t.permissions)}"
            for t in found
        )
        or "(no project tokens)",
    )


@project_tokens.command("revoke")
@click.argument("token_id")
@store_options
@json_option
def project_tokens_revoke(
    token_id: str, data_dir: Path, redis_url: str | None, redis_prefix: str, as_json: bool
) -> None:
    """Revoke the project token with ID TOKEN_ID (ptkid_…); it stops working at once."""
    settings = store_settings(data_dir, redis_url, redis_prefix)
    if not with_service(settings, lambda s: s.store.revoke_project_token(token_id)):
        raise click.ClickException(f"no unrevoked project token {token_id!r}")
    emit(as_json, {"revoked": token_id}, f"Revoked {token_id}")
