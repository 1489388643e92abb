"""``switchboard export`` and ``switchboard import``: move a whole store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import msgspec

from switchboard.exceptions import APIError
from switchboard.server.cli._options import (
    emit,
    json_option,
    store_options,
    store_settings,
    with_service,
)
from switchboard.server.store.transfer import decode_dump, export_store, import_store


@click.command("export")
@store_options
@click.option(
    "--output",
    "-o",
    type=click.File("wb"),
    default="-",
    help="File to write the JSON dump to.",
)
def export_command(data_dir: Path, redis_url: str | None, redis_prefix: str, output: Any) -> None:
    """Write the whole store (projects, project-token hashes, channels with state and
    history, tokens, subscriptions, project settings) as JSON, for `switchboard import`
    into another store. The dump holds webhook signing secrets: keep it private."""
    settings = store_settings(data_dir, redis_url, redis_prefix)
    dump = with_service(settings, lambda s: export_store(s.store))
    output.write(msgspec.json.format(msgspec.json.encode(dump)) + b"\n")


@click.command("import")
@click.argument("dump_file", type=click.File("rb"))
@store_options
@json_option
def import_command(
    dump_file: Any, data_dir: Path, redis_url: str | None, redis_prefix: str, as_json: bool
) -> None:
    """Load a dump made by `switchboard export` (DUMP_FILE, or - for stdin).

    Refused, with nothing written, if a project of the dump exists in the target.
    """
    settings = store_settings(data_dir, redis_url, redis_prefix)
    try:
        dump = decode_dump(dump_file.read())
    except APIError as exc:
        raise click.ClickException(exc.message) from None
    counts = with_service(settings, lambda s: import_store(s.store, dump))
    emit(
        as_json,
        {"imported": counts},
        "Imported " + ", ".join(f"{n} {kind}" for kind, n in counts.items()),
    )
