"""``switchboard serve``: run a server.

Each option's parameter is named after the ``Settings`` or ``Limits`` field it sets
(``--heartbeat-interval`` is ``heartbeat_interval_ms``), so ``serve`` hands them over by
name instead of naming each one three times.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from switchboard.exceptions import APIError
from switchboard.server import logs
from switchboard.server.cli._options import option, store_options
from switchboard.server.cli._webhook_options import webhook_options
from switchboard.server.cli.workers import free_port, supervise, worker_count
from switchboard.server.config import Limits, Settings
from switchboard.server.node import run

_LIMITS = Limits()
_LIMIT_FIELDS = frozenset(f.name for f in dataclasses.fields(Limits))


@click.command()
@option("--host", default="127.0.0.1", help="Address to listen on.")
@option(
    "--port",
    default=4000,
    type=click.IntRange(0, 65535),
    help="Port for REST, WebSocket and console (0 picks a free one).",
)
@store_options
@option(
    "--redis-min-replicas",
    default=0,
    type=click.IntRange(0),
    help="Replicas each write to Redis must reach before it is acknowledged (WAIT): with "
    "1 or more, no acknowledged write is lost in a failover; writes fail while fewer "
    "replicas answer.",
)
@option(
    "--public-url",
    default=None,
    help="Base URL clients use, if not http://HOST:PORT (e.g. behind a proxy).",
)
@option(
    "--heartbeat-interval",
    "heartbeat_interval_ms",
    default=30_000,
    type=click.IntRange(100, 600_000),
    help="Heartbeat interval sent in HELLO, in milliseconds.",
)
@option(
    "--identify-timeout",
    "identify_timeout_s",
    default=10.0,
    type=float,
    help="Seconds a new socket has to IDENTIFY.",
)
@option(
    "--max-payload-bytes",
    default=_LIMITS.max_payload_bytes,
    type=click.IntRange(1),
    help="Largest message data, channel state or token state (encoded JSON).",
)
@option(
    "--client-messages-per-second",
    default=_LIMITS.client_messages_per_second,
    type=float,
    help="Messages a client connection may publish per second.",
)
@option(
    "--max-connections-per-ip",
    default=_LIMITS.max_connections_per_ip,
    type=click.IntRange(0),
    help="Open sockets one client address may hold (0: no bound; behind a reverse proxy "
    "every client has the proxy's address).",
)
@option(
    "--max-connections-per-token",
    default=_LIMITS.max_connections_per_token,
    type=click.IntRange(1),
    help="Live connections one token may hold.",
)
@option(
    "--max-buffered-bytes",
    default=_LIMITS.max_buffered_bytes,
    type=click.IntRange(1024),
    help="Unsent bytes per connection before it is closed (4000).",
)
@option(
    "--client-frames-per-second",
    default=_LIMITS.client_frames_per_second,
    type=click.FloatRange(min=1, min_open=False),
    help="Frames of any kind a client connection may send per second (burst twice that); "
    "a connection far over its limits for about a second is closed with 4008.",
)
@option(
    "--rest-requests-per-second",
    default=_LIMITS.rest_requests_per_second,
    type=click.FloatRange(min=0),
    help="REST calls per project token per second (burst of the same size); past it, "
    "429 with Retry-After. 0 is no limit.",
)
@option(
    "--http-header-timeout",
    "http_header_timeout_s",
    default=_LIMITS.http_header_timeout_s,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds an HTTP connection has to send a request head; also the keep-alive idle time.",
)
@option(
    "--http-body-timeout",
    "http_body_timeout_s",
    default=_LIMITS.http_body_timeout_s,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a request has to send its body (408 after).",
)
@option(
    "--cors-origin",
    "cors_origins",
    env="CORS_ORIGINS",
    multiple=True,
    help="A browser origin allowed to call the REST API (repeat, or comma-separate; * for "
    "any). None by default.",
)
@option(
    "--ws-origin",
    "ws_origins",
    env="WS_ORIGINS",
    multiple=True,
    help="If given, only these origins may open a WebSocket (repeat, or comma-separate); "
    "clients that send no Origin are not affected.",
)
@option(
    "--metrics/--no-metrics",
    default=False,
    help="Serve Prometheus metrics at GET /metrics on this port, without authentication: "
    "keep it off a public listener (docs/metrics.md).",
)
@option(
    "--history-size",
    default=_LIMITS.history_size,
    type=click.IntRange(min=0, max=10_000),
    help="Messages kept by a channel created without its own history setting (0: none, "
    "history off; docs/history.md).",
)
@option(
    "--history-ttl",
    "history_ttl_s",
    default=_LIMITS.history_ttl_s,
    type=click.IntRange(min=1, max=30 * 24 * 3600),
    help="Seconds such a channel keeps a message, with --history-size.",
)
@webhook_options
@option(
    "--shutdown-grace",
    "shutdown_grace_s",
    default=Settings().shutdown_grace_s,
    type=click.FloatRange(min=0),
    help="Seconds SIGTERM waits for sockets to close and REST calls to finish.",
)
@option(
    "--workers",
    default="1",
    help="Worker processes on this port, each a node of the cluster (needs --redis), "
    "or auto for one per core; the kernel deals connections out among them.",
)
@click.option("--worker", type=int, default=None, hidden=True)
@option(
    "--log-level",
    default="info",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Log level (JSON on stderr).",
)
def serve(
    log_level: str, cors_origins: tuple[str, ...], ws_origins: tuple[str, ...], **fields: Any
) -> None:
    """Run a server: REST at /v1, the Leap gateway at /ws, health at /healthz and /readyz.

    The first start on an empty store creates the project "default" and prints its ID
    and a project token, once. SIGTERM drains: new sockets are refused, live ones are
    closed with 1001 (clients reconnect), in-flight REST calls finish, then it exits 0.
    """
    logs.configure(log_level)
    try:
        fields["workers"] = worker_count(fields["workers"])
    except ValueError:
        raise click.BadParameter("a number of processes, or auto", param_hint="--workers") from None
    limits = Limits(**{name: fields.pop(name) for name in _LIMIT_FIELDS & fields.keys()})
    settings = Settings(
        **fields, cors_origins=_split(cors_origins), ws_origins=_split(ws_origins), limits=limits
    )
    if settings.workers > 1 and settings.worker is None:
        _supervise(settings)
        return
    try:
        run(settings)
    except APIError as exc:
        raise click.ClickException(exc.message) from None
    except ValueError as exc:  # a --redis URL that cannot be read
        raise click.ClickException(f"--redis: {exc}") from None
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
        ) from None


def _supervise(settings: Settings) -> None:
    """``--workers N``: this process starts N workers and watches them (cli/workers.py)."""
    if not settings.redis_url:
        raise click.ClickException(
            f"--workers {settings.workers} needs --redis: each worker is a node of a cluster, "
            "and the embedded SQLite store belongs to one process"
        )
    if settings.port == 0:
        settings = dataclasses.replace(settings, port=free_port(settings.host))
    raise SystemExit(supervise(settings, settings.workers))


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    """Origins given repeated, comma-separated or space-separated (from the environment)."""
    return tuple(o for v in values for o in v.replace(",", " ").split())
