"""Settings of one node: where it listens, where it keeps state, and its limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits of SPEC §4. Every refusal names the limit it hit."""

    max_payload_bytes: int = 64 * KIB
    """Largest message ``d``, channel state or token state, JSON-encoded."""
    max_event_name: int = 128
    """Longest event name, in characters (the shortest is 1)."""
    client_messages_per_second: float = 50.0
    """Client-published messages allowed per connection per second (burst of the same size)."""
    max_connections_per_token: int = 100
    """Live connections one token may hold on this node."""
    max_connections_per_ip: int = 0
    """Open WebSocket connections one client address may hold; past it, the upgrade is
    answered 429. 0 (the default) turns the bound off (``switchboard.server.address_limit``)."""
    max_buffered_bytes: int = 4 * MIB
    """Unsent bytes a connection may have before it is closed with 4000 (slow consumer)."""
    max_request_bytes: int = 1 * MIB
    """Largest REST request body."""
    max_frame_bytes: int = 256 * KIB
    """Largest WebSocket message a client may send, in bytes: this many is taken, one more
    closes with 1009 (a lingering close: ``switchboard.server.lingering_close``)."""
    client_frames_per_second: float = 200.0
    """Frames of any kind a connection may send per second (burst twice that); past it a
    frame is dropped unread and counts as a strike (SUBSCRIBE floods, garbage floods)."""
    client_flood_strikes: float = 100.0
    """Strikes (dropped frames, refused messages) a connection may hold before it is closed
    with 4008. Strikes drain at ``client_messages_per_second``, so a client a little over
    a limit only sees ``ERROR`` dispatches; one far over it is closed in about a second."""
    rest_requests_per_second: float = 0.0
    """REST calls allowed per project token per second (burst of the same size); past it,
    429 with ``Retry-After``. 0 turns the limit off (the default: the backend holding a
    project token is trusted; set it when tokens are shared or exposed)."""
    http_header_timeout_s: float = 15.0
    """Time a connection has to send a complete request head, and how long an idle
    keep-alive connection stays open (slowloris bound)."""
    http_body_timeout_s: float = 15.0
    """Time a request has to send its whole body; past it, 408."""
    history_size: int = 0
    """Messages kept by a channel created without a ``history`` of its own; 0 (the
    default) keeps none: history is opt-in (``switchboard.server.history``)."""
    history_ttl_s: int = 300
    """Seconds a message is kept by such a channel, when ``history_size`` is not 0."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `switchboard serve` can be told."""

    host: str = "127.0.0.1"
    port: int = 4000
    data_dir: Path = Path("switchboard-data")
    redis_url: str | None = None
    redis_prefix: str = "sb:"
    """Prefix of every Redis key and topic, so clusters can share one Redis."""
    redis_min_replicas: int = 0
    """Replicas each write to the store must reach before it is acknowledged (``WAIT``):
    with 1 or more, an acknowledged write survives a failover; 0 waits for none."""
    public_url: str | None = None
    """Base URL printed at startup and used in links; default ``http://host:port``."""
    heartbeat_interval_ms: int = 30_000
    identify_timeout_s: float = 10.0
    shutdown_grace_s: float = 5.0
    """How long SIGTERM waits for sockets to finish their close handshake."""
    limits: Limits = field(default_factory=Limits)
    cors_origins: tuple[str, ...] = ()
    """Origins allowed to call the REST API from a browser (``*`` for any); none by default."""
    ws_origins: tuple[str, ...] = ()
    """If set, a WebSocket upgrade whose ``Origin`` is not listed is refused with 403
    (``*`` matches any); browsers always send Origin, other clients may send none, and a
    missing Origin is allowed."""
    workers: int = 1
    """Worker processes serving this port (``serve --workers``): each is a node of the
    cluster; ``/readyz`` says how many."""
    worker: int | None = None
    """This process's number among them (1..workers), None when it runs alone: a
    worker shares its port with the others (``SO_REUSEPORT``) and prints no banner."""
    metrics: bool = False
    """Serve ``GET /metrics`` (Prometheus text format, no authentication) on the main
    port. Off by default: only operators should reach it (docs/metrics.md)."""

    webhook_timeout_s: float = 5.0
    """Per webhook attempt: connect, send and the whole answer (docs/webhooks.md)."""
    webhook_retries: int = 5
    """Attempts after the first before a webhook is given up on."""
    webhook_retry_base_s: float = 1.0
    """The first wait between attempts; it doubles each time (with jitter, at most 60 s)."""
    webhook_authorize_timeout_s: float = 3.0
    """How long a SUBSCRIBE waits for the app's subscribe hook before it is refused."""
    webhook_log_size: int = 100
    """Delivery attempts kept per project for ``GET /v1/webhooks/deliveries``."""

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"
