"""What the commands share: ``option`` (a flag with its environment variable), the store
options, ``--json``, and running work on a service."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec

from switchboard.exceptions import APIError
from switchboard.server.config import Settings
from switchboard.server.node import offline_service, open_store
from switchboard.server.service import Service
from switchboard.server.store import Store

T = TypeVar("T")

ENV_PREFIX = "SWITCHBOARD_"

F = TypeVar("F", bound=Callable[..., Any])


def option(*decls: str, env: str | None = None, **attrs: Any) -> Callable[[F], F]:
    """``click.option`` with its environment variable, shown in ``--help``.

    The variable is ``SWITCHBOARD_`` and the long flag in capitals (``--heartbeat-interval``:
    ``SWITCHBOARD_HEARTBEAT_INTERVAL``), or ``SWITCHBOARD_`` and ``env`` where the name
    differs (``--redis``: ``SWITCHBOARD_REDIS_URL``). Not click's ``auto_envvar_prefix``:
    that names variables after the command and the parameter
    (``SWITCHBOARD_SERVE_DATA_DIR``) and would give one to every option, ``--json`` too.
    Defaults are shown by the group's ``show_default`` (``cli/__init__.py``).
    """
    flag = next(d for d in decls if d.startswith("--")).partition("/")[0]
    name = env or flag.removeprefix("--").replace("-", "_").upper()
    return click.option(*decls, envvar=ENV_PREFIX + name, show_envvar=True, **attrs)


_store_options = [
    option(
        "--data",
        "data_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("switchboard-data"),
        help="Directory of the embedded SQLite store (created if missing).",
    ),
    option(
        "--redis",
        "redis_url",
        env="REDIS_URL",
        default=None,
        help="Redis URL: redis:// or rediss:// (with password and database), or "
        "redis+sentinel://[:password@]host:port[,host:port...]/MASTER[/DB] to follow "
        "the master Sentinels name, or redis+cluster://[:password@]host:port[,host:port...] "
        "for a Redis Cluster (sharded pub/sub); every process on one Redis is one cluster, "
        "and --data is not used.",
    ),
    option("--redis-prefix", default="sb:", help="Prefix of every Redis key and topic."),
]

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")

project_option = option("--project", "project_id", required=True, help="Project ID.")


def store_options(fn: F) -> F:
    """Add ``--data``, ``--redis`` and ``--redis-prefix`` to a command."""
    for decorate in reversed(_store_options):
        fn = decorate(fn)
    return fn


def store_settings(data_dir: Path, redis_url: str | None, redis_prefix: str) -> Settings:
    """Settings naming the store the store options chose (everything else default)."""
    return Settings(data_dir=data_dir, redis_url=redis_url, redis_prefix=redis_prefix)


def with_service(settings: Settings, work: Callable[[Service], Awaitable[T]]) -> T:
    """Open the store, run ``work`` against a service on it, close the store.

    Live sockets are in the server process, not here, so events go to an empty hub;
    the server sees the store's new state on its next read.
    """

    async def main() -> T:
        store: Store = open_store(settings)
        await store.open()
        try:
            return await work(offline_service(store, settings))
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except APIError as exc:
        raise click.ClickException(exc.message) from None


def emit(as_json: bool, data: Any, text: str) -> None:
    """Print ``data`` as indented JSON with ``--json``, else ``text``."""
    click.echo(json.dumps(data, indent=2) if as_json else text)


def plain(data: Any) -> Any:
    """Records with msgspec.Raw inside, as plain JSON values."""
    return json.loads(msgspec.json.encode(data))
