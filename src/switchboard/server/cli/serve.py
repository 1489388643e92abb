"""``switchboard serve``: run a server."""

from __future__ import annotations

from pathlib import Path

import click

from switchboard.exceptions import APIError
from switchboard.server import logs
from switchboard.server.cli._options import store_options
from switchboard.server.cli._webhook_options import webhook_options
from switchboard.server.config import Limits, Settings
from switchboard.server.node import run

_DEFAULT_LIMITS = Limits()


@click.command()
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
    "--max-connections-per-ip",
    default=_DEFAULT_LIMITS.max_connections_per_ip,
    show_default=True,
    type=click.IntRange(0),
    envvar="SWITCHBOARD_MAX_CONNECTIONS_PER_IP",
    show_envvar=True,
    help="Open sockets one client address may hold (0: no bound; behind a reverse proxy "
    "every client has the proxy's address).",
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
    "--client-frames-per-second",
    default=_DEFAULT_LIMITS.client_frames_per_second,
    show_default=True,
    type=click.FloatRange(min=1, min_open=False),
    envvar="SWITCHBOARD_CLIENT_FRAMES_PER_SECOND",
    show_envvar=True,
    help="Frames of any kind a client connection may send per second (burst twice that); "
    "a connection far over its limits for about a second is closed with 4008.",
)
@click.option(
    "--rest-requests-per-second",
    default=_DEFAULT_LIMITS.rest_requests_per_second,
    show_default=True,
    type=click.FloatRange(min=0),
    envvar="SWITCHBOARD_REST_REQUESTS_PER_SECOND",
    show_envvar=True,
    help="REST calls per project token per second (burst of the same size); past it, "
    "429 with Retry-After. 0 is no limit.",
)
@click.option(
    "--http-header-timeout",
    default=_DEFAULT_LIMITS.http_header_timeout_s,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    envvar="SWITCHBOARD_HTTP_HEADER_TIMEOUT",
    show_envvar=True,
    help="Seconds an HTTP connection has to send a request head; also the keep-alive idle time.",
)
@click.option(
    "--http-body-timeout",
    default=_DEFAULT_LIMITS.http_body_timeout_s,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    envvar="SWITCHBOARD_HTTP_BODY_TIMEOUT",
    show_envvar=True,
    help="Seconds a request has to send its body (408 after).",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    envvar="SWITCHBOARD_CORS_ORIGINS",
    show_envvar=True,
    help="A browser origin allowed to call the REST API (repeat, or comma-separate; * for "
    "any). None by default.",
)
@click.option(
    "--ws-origin",
    "ws_origins",
    multiple=True,
    envvar="SWITCHBOARD_WS_ORIGINS",
    show_envvar=True,
    help="If given, only these origins may open a WebSocket (repeat, or comma-separate); "
    "clients that send no Origin are not affected.",
)
@click.option(
    "--metrics/--no-metrics",
    default=False,
    show_default=True,
    envvar="SWITCHBOARD_METRICS",
    show_envvar=True,
    help="Serve Prometheus metrics at GET /metrics on this port, without authentication: "
    "keep it off a public listener (docs/metrics.md).",
)
@click.option(
    "--history-size",
    default=_DEFAULT_LIMITS.history_size,
    show_default=True,
    type=click.IntRange(min=0, max=10_000),
    envvar="SWITCHBOARD_HISTORY_SIZE",
    show_envvar=True,
    help="Messages kept by a channel created without its own history setting (0: none, "
    "history off; docs/history.md).",
)
@click.option(
    "--history-ttl",
    default=_DEFAULT_LIMITS.history_ttl_s,
    show_default=True,
    type=click.IntRange(min=1, max=30 * 24 * 3600),
    envvar="SWITCHBOARD_HISTORY_TTL",
    show_envvar=True,
    help="Seconds such a channel keeps a message, with --history-size.",
)
@webhook_options
@click.option(
    "--shutdown-grace",
    default=Settings().shutdown_grace_s,
    show_default=True,
    type=click.FloatRange(min=0),
    envvar="SWITCHBOARD_SHUTDOWN_GRACE",
    show_envvar=True,
    help="Seconds SIGTERM waits for sockets to close and REST calls to finish.",
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
    max_connections_per_ip: int,
    max_connections_per_token: int,
    max_buffered_bytes: int,
    client_frames_per_second: float,
    rest_requests_per_second: float,
    http_header_timeout: float,
    http_body_timeout: float,
    cors_origins: tuple[str, ...],
    ws_origins: tuple[str, ...],
    metrics: bool,
    history_size: int,
    history_ttl: int,
    webhook_timeout: float,
    webhook_retries: int,
    webhook_retry_base: float,
    webhook_authorize_timeout: float,
    webhook_log_size: int,
    shutdown_grace: float,
    log_level: str,
) -> None:
    """Run a server: REST at /v1, the Leap gateway at /ws, health at /healthz and /readyz.

    The first start on an empty store creates the project "default" and prints its ID
    and a project token, once. SIGTERM drains: new sockets are refused, live ones are
    closed with 1001 (clients reconnect), in-flight REST calls finish, then it exits 0.
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
        shutdown_grace_s=shutdown_grace,
        cors_origins=_split(cors_origins),
        ws_origins=_split(ws_origins),
        metrics=metrics,
        webhook_timeout_s=webhook_timeout,
        webhook_retries=webhook_retries,
        webhook_retry_base_s=webhook_retry_base,
        webhook_authorize_timeout_s=webhook_authorize_timeout,
        webhook_log_size=webhook_log_size,
        limits=Limits(
            max_payload_bytes=max_payload_bytes,
            client_messages_per_second=client_messages_per_second,
            max_connections_per_token=max_connections_per_token,
            max_connections_per_ip=max_connections_per_ip,
            max_buffered_bytes=max_buffered_bytes,
            client_frames_per_second=client_frames_per_second,
            rest_requests_per_second=rest_requests_per_second,
            http_header_timeout_s=http_header_timeout,
            http_body_timeout_s=http_body_timeout,
            history_size=history_size,
            history_ttl_s=history_ttl,
        ),
    )
    try:
        run(settings)
    except APIError as exc:
        raise click.ClickException(exc.message) from None
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    """Origins given repeated, comma-separated or space-separated (from the environment)."""
    return tuple(o for v in values for o in v.replace(",", " ").split())
