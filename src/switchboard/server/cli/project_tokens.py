"""``switchboard project-tokens``: create, list and revoke project tokens."""

from __future__ import annotations

from pathlib import Path

import click

from switchboard.server.cli._options import (
    emit,
    json_option,
    plain,
    project_option,
    store_options,
    store_settings,
    with_service,
)


@click.group("project-tokens")
def project_tokens() -> None:
    """Create, list and revoke project tokens (the secrets of the REST API)."""


@project_tokens.command("create")
@project_option
@store_options
@json_option
def project_tokens_create(
    project_id: str, data_dir: Path, redis_url: str | None, redis_prefix: str, as_json: bool
) -> None:
    """Create a project token for a project (printed once)."""
    settings = store_settings(data_dir, redis_url, redis_prefix)
    secret = with_service(settings, lambda s: s.create_project_token(project_id))
    emit(
        as_json,
        {"project_id": project_id, "project_token": secret},
        f"{secret}\n(shown once; keep it secret)",
    )


@project_tokens.command("list")
@project_option
@store_options
@json_option
def project_tokens_list(
    project_id: str, data_dir: Path, redis_url: str | None, redis_prefix: str, as_json: bool
) -> None:
    """List a project's tokens: ID, hint and state, never the secret."""
    settings = store_settings(data_dir, redis_url, redis_prefix)
    found = with_service(settings, lambda s: s.store.list_project_tokens(project_id))
    emit(
        as_json,
        {"project_tokens": plain(found)},
        "\n".join(
            f"{t.id}  {t.hint}  created {t.created_at}"
            + (f"  REVOKED {t.revoked_at}" if t.revoked_at else "")
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
