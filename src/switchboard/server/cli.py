"""The ``switchboard`` command line.

Every flag has an environment variable (shown in ``--help``). Every command that
touches the store takes ``--data`` / ``--redis`` exactly as ``serve`` does, so a project
can be created before the first ``serve`` or beside a running one.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec

from switchboard import __version__
from switchboard.exceptions import APIError
from switchboard.server import logs
from switchboard.server.api.views import project_json, token_json
from switchboard.server.broker import LocalBroker
from switchboard.server.config import Limits, Settings
from switchboard.server.hub import Hub
from switchboard.server.node import open_store, run
from switchboard.server.service import Service
from switchboard.server.store import Store
from switchboard.server.transfer import decode_dump, export_store, import_store

T = TypeVar("T")
_DEFAULT_LIMITS = Limits()

_store_options = [
    click.option(
        "--data",
        "data_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("switchboard-data"),
        show_default=True,
        envvar="SWITCHBOARD_DATA",
        show_envvar=True,
        help="Directory of the embedded SQLite store (created if missing).",
    ),
    click.option(
        "--redis",
        "redis_url",
        default=None,
        envvar="SWITCHBOARD_REDIS_URL",
        show_envvar=True,
        help="Redis URL (redis:// or rediss://, with password and database); every "
        "process on one Redis is one cluster, and --data is not used.",
    ),
    click.option(
        "--redis-prefix",
        default="sb:",
        show_default=True,
        envvar="SWITCHBOARD_REDIS_PREFIX",
        show_envvar=True,
        help="Prefix of every Redis key and topic.",
    ),
]

_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def store_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_store_options):
        fn = option(fn)
    return fn


def _with_service(settings: Settings, work: Callable[[Service], Awaitable[T]]) -> T:
    """Open the store, run ``work`` against a service on it, close the store.

    Live sockets are in the server process, not here, so events go to an empty hub;
    the server sees the store's new state on its next read.
    """

    async def main() -> T:
        store: Store = open_store(settings)
        await store.open()
        try:
            hub = Hub(max_buffered_bytes=settings.limits.max_buffered_bytes)
            return await work(Service(store, LocalBroker(hub), settings.limits))
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except APIError as exc:
        raise click.ClickException(exc.message) from None


def _emit(as_json: bool, data: Any, text: str) -> None:
    click.echo(json.dumps(data, indent=2) if as_json else text)


def _plain(data: Any) -> Any:
    """Records with msgspec.Raw inside, as plain JSON values."""
    return json.loads(msgspec.json.encode(data))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="switchboard")
def main() -> None:
    """Switchboard: a self-hostable realtime Channels server with Tokens, Hop-compatible."""


@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="SWITCHBOARD_HOST",
    show_envvar=True,
    help="Address to listen on.",
)
@click.option(
    "--port",
    default=4000,
    show_default=True,
    type=click.IntRange(0, 65535),
    envvar="SWITCHBOARD_PORT",
    show_envvar=True,
    help="Port for REST, WebSocket and console (0 picks a free one).",
)
@store_options
@click.option(
    "--public-url",
    default=None,
    envvar="SWITCHBOARD_PUBLIC_URL",
    show_envvar=True,
    help="Base URL clients use, if not http://HOST:PORT (e.g. behind a proxy).",
)
@click.option(
    "--heartbeat-interval",
    default=30_000,
    show_default=True,
    type=click.IntRange(100, 600_000),
    envvar="SWITCHBOARD_HEARTBEAT_INTERVAL",
    show_envvar=True,
    help="Heartbeat interval sent in HELLO, in milliseconds.",
)
@click.option(
    "--identify-timeout",
    default=10.0,
    show_default=True,
    type=float,
    envvar="SWITCHBOARD_IDENTIFY_TIMEOUT",
    show_envvar=True,
    help="Seconds a new socket has to IDENTIFY.",
)
@click.option(
    "--max-payload-bytes",
    default=_DEFAULT_LIMITS.max_payload_bytes,
    show_default=True,
    type=click.IntRange(1),
    envvar="SWITCHBOARD_MAX_PAYLOAD_BYTES",
    show_envvar=True,
    help="Largest message data, channel state or token state (encoded JSON).",
)
@click.option(
    "--client-messages-per-second",
    default=_DEFAULT_LIMITS.client_messages_per_second,
    show_default=True,
    type=float,
    envvar="SWITCHBOARD_CLIENT_MESSAGES_PER_SECOND",
    show_envvar=True,
    help="Messages a client connection may publish per second.",
)
@click.option(
    "--max-connections-per-token",
    default=_DEFAULT_LIMITS.max_connections_per_token,
    show_default=True,
    type=click.IntRange(1),
    envvar="SWITCHBOARD_MAX_CONNECTIONS_PER_TOKEN",
    show_envvar=True,
    help="Live connections one token may hold.",
)
@click.option(
    "--max-buffered-bytes",
    default=_DEFAULT_LIMITS.max_buffered_bytes,
    show_default=True,
    type=click.IntRange(1024),
    envvar="SWITCHBOARD_MAX_BUFFERED_BYTES",
    show_envvar=True,
    help="Unsent bytes per connection before it is closed (4000).",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
    envvar="SWITCHBOARD_LOG_LEVEL",
    show_envvar=True,
    help="Log level (JSON on stderr).",
)
def serve(
    host: str,
    port: int,
    data_dir: Path,
    redis_url: str | None,
    redis_prefix: str,
    public_url: str | None,
    heartbeat_interval: int,
    identify_timeout: float,
    max_payload_bytes: int,
    client_messages_per_second: float,
    max_connections_per_token: int,
    max_buffered_bytes: int,
    log_level: str,
) -> None:
    """Run a server: REST at /v1, the Leap gateway at /ws, health at /healthz and /readyz.

    The first start on an empty store creates the project "default" and prints its ID
    and a project token, once. SIGTERM closes every socket with 1001 and exits 0.
    """
    logs.configure(log_level)
    settings = Settings(
        host=host,
        port=port,
        data_dir=data_dir,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        public_url=public_url,
        heartbeat_interval_ms=heartbeat_interval,
        identify_timeout_s=identify_timeout,
        limits=Limits(
            max_payload_bytes=max_payload_bytes,
            client_messages_per_second=client_messages_per_second,
            max_connections_per_token=max_connections_per_token,
            max_buffered_bytes=max_buffered_bytes,
        ),
    )
    try:
        run(settings)
    except APIError as exc:
        raise click.ClickException(exc.message) from None
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None


@main.group()
def projects() -> None:
    """Create and list projects."""


@projects.command("create")
@click.argument("name")
@store_options
@_json_option
def projects_create(
    name: str, data_dir: Path, redis_url: str | None, redis_prefix: str, as_json: bool
) -> None:
    """Create project NAME and its first project token (printed once)."""
    settings = Settings(data_dir=data_dir, redis_url=redis_url, redis_prefix=redis_prefix)
    project, secret = _with_service(settings, lambda s: s.create_project(name))
    _emit(
        as_json,
        {"project": project_json(project), "project_token": secret},
        f"Created project {project.name!r}\n  Project ID:     {project.id}\n"
        f"  Project token:  {secret}\n  (shown once; keep it secret)",
    )


@projects.command("list")
@store_options
@_json_option
def projects_list(data_dir: Path, redis_url: str | None, redis_prefix: str, as_json: bool) -> None:
    """List projects."""
    settings = Settings(data_dir=data_dir, redis_url=redis_url, redis_prefix=redis_prefix)
    found = _with_service(settings, lambda s: s.store.list_projects())
    _emit(
        as_json,
        {"projects": [project_json(p) for p in found]},
        "\n".join(f"{p.id}  {p.name}  {p.created_at}" for p in found) or "(no projects)",
    )


@main.group("project-tokens")
def project_tokens() -> None:
    """Create, list and revoke project tokens (the secrets of the REST API)."""


@project_tokens.command("create")
@click.option(
    "--project",
    "project_id",
    required=True,
    envvar="SWITCHBOARD_PROJECT",
    show_envvar=True,
    help="Project ID.",
)
@store_options
@_json_option
def project_tokens_create(
    project_id: str, data_dir: Path, redis_url: str | None, redis_prefix: str, as_json: bool
) -> None:
    """Create a project token for a project (printed once)."""
    settings = Settings(data_dir=data_dir, redis_url=redis_url, redis_prefix=redis_prefix)
    secret = _with_service(settings, lambda s: s.create_project_token(project_id))
    _emit(
        as_json,
        {"project_id": project_id, "project_token": secret},
        f"{secret}\n(shown once; keep it secret)",
    )


@project_tokens.command("list")
@click.option(
    "--project",
    "project_id",
    required=True,
    envvar="SWITCHBOARD_PROJECT",
    show_envvar=True,
    help="Project ID.",
)
@store_options
@_json_option
def project_tokens_list(
    project_id: str, data_dir: Path, redis_url: str | None, redis_prefix: str, as_json: bool
) -> None:
    """List a project's tokens: ID, hint and state, never the secret."""
    settings = Settings(data_dir=data_dir, redis_url=redis_url, redis_prefix=redis_prefix)
    found = _with_service(settings, lambda s: s.store.list_project_tokens(project_id))
    _emit(
        as_json,
        {"project_tokens": _plain(found)},
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
@_json_option
def project_tokens_revoke(
    token_id: str, data_dir: Path, redis_url: str | None, redis_prefix: str, as_json: bool
) -> None:
    """Revoke the project token with ID TOKEN_ID (ptkid_…); it stops working at once."""
    settings = Settings(data_dir=data_dir, redis_url=redis_url, redis_prefix=redis_prefix)
    if not _with_service(settings, lambda s: s.store.revoke_project_token(token_id)):
        raise click.ClickException(f"no unrevoked project token {token_id!r}")
    _emit(as_json, {"revoked": token_id}, f"Revoked {token_id}")


@main.group()
def tokens() -> None:
    """Create leap tokens (what end users connect with)."""


@tokens.command("create")
@click.option(
    "--project",
    "project_id",
    required=True,
    envvar="SWITCHBOARD_PROJECT",
    show_envvar=True,
    help="Project ID.",
)
@click.option("--state", default=None, help="Token state (metadata) as a JSON object.")
@click.option("--expires-at", default=None, help="Expiry, ISO 8601 (e.g. 2030-01-01T00:00:00Z).")
@store_options
@_json_option
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
    settings = Settings(data_dir=data_dir, redis_url=redis_url, redis_prefix=redis_prefix)

    async def work(service: Service) -> Any:
        project = await service.store.get_project(project_id)
        if project is None:
            raise click.ClickException(f"no project {project_id!r}")
        return await service.create_token(project, raw, expires_at)

    token = _with_service(settings, work)
    _emit(as_json, {"token": _plain(token_json(token, False))}, token.id)


@main.command("export")
@store_options
@click.option(
    "--output",
    "-o",
    type=click.File("wb"),
    default="-",
    show_default=True,
    help="File to write the JSON dump to.",
)
def export_command(data_dir: Path, redis_url: str | None, redis_prefix: str, output: Any) -> None:
    """Write the whole store (projects, project-token hashes, channels with state, tokens,
    subscriptions) as JSON, for `switchboard import` into another store."""
    settings = Settings(data_dir=data_dir, redis_url=redis_url, redis_prefix=redis_prefix)
    dump = _with_service(settings, lambda s: export_store(s.store))
    output.write(msgspec.json.format(msgspec.json.encode(dump)) + b"\n")


@main.command("import")
@click.argument("dump_file", type=click.File("rb"))
@store_options
@_json_option
def import_command(
    dump_file: Any, data_dir: Path, redis_url: str | None, redis_prefix: str, as_json: bool
) -> None:
    """Load a dump made by `switchboard export` (DUMP_FILE, or - for stdin).

    Refused, with nothing written, if a project of the dump exists in the target.
    """
    settings = Settings(data_dir=data_dir, redis_url=redis_url, redis_prefix=redis_prefix)
    try:
        dump = decode_dump(dump_file.read())
    except APIError as exc:
        raise click.ClickException(exc.message) from None
    counts = _with_service(settings, lambda s: import_store(s.store, dump))
    _emit(
        as_json,
        {"imported": counts},
        "Imported " + ", ".join(f"{n} {kind}" for kind, n in counts.items()),
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
