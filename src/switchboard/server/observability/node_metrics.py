"""The node's own metric families (``switchboard_*``), read at scrape time.

:class:`NodeCollector` reads the plain integer counters the hub, gateway, service,
webhooks and broker keep for their ``stats()`` anyway, so the fan-out pays nothing per
delivery for them (DESIGN §3, rule 5). One small function per family of metrics, in
the order a scrape lists them. Redis health is a ``PING`` timed at scrape, bounded by
:data:`REDIS_PING_TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from switchboard import __version__
from switchboard.exceptions import Unavailable
from switchboard.server.broker import Broker
from switchboard.server.edge import Gateway
from switchboard.server.service import Service

if TYPE_CHECKING:
    from switchboard.server.fanout import HubStats

REDIS_PING_TIMEOUT_S = 0.5
"""A scrape waits at most this long for Redis to answer its PING (then: down)."""

SCOPES = ("token", "project", "noauth", "unidentified")
"""Values of ``switchboard_connections``'s ``scope`` label, all present on every scrape."""


@dataclass(frozen=True, slots=True)
class RedisProbe:
    """One scrape's PING: ``seconds`` is the round trip, None when Redis did not answer."""

    seconds: float | None


async def probe_redis(broker: Broker) -> RedisProbe:
    """PING Redis through the broker's client, bounded by :data:`REDIS_PING_TIMEOUT_S`."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(REDIS_PING_TIMEOUT_S):
            await broker.ping()
    except (Unavailable, TimeoutError):
        return RedisProbe(None)
    return RedisProbe(time.perf_counter() - started)


class NodeCollector:
    """The node's own metrics, read from its parts' counters at scrape time."""

    def __init__(self, service: Service, gateway: Gateway) -> None:
        self.service = service
        self.gateway = gateway
        self.redis_broker: Broker | None = service.broker if service.broker.clustered else None
        """The broker of a node of a cluster (on Redis), whose PING and counters are shown."""
        self.redis: RedisProbe | None = None
        """Set by the handler just before each collection (collection cannot await)."""

    def collect(self) -> Iterator[Metric]:
        """Every metric family of this node (the registry calls this on each scrape)."""
        hub = self.gateway.hub.stats()
        yield _info()
        yield from _socket_metrics(self.gateway.stats(), hub)
        yield from _fanout_state_metrics(hub)
        yield from _message_metrics(self.service.stats(), hub)
        yield from _close_metrics(hub)
        yield from self._webhook_metrics()
        yield from self._redis_metrics()

    def _webhook_metrics(self) -> Iterator[Metric]:
        webhooks = self.service.webhooks
        if webhooks is None:
            return
        stats = webhooks.stats()
        outcomes = CounterMetricFamily(
            "switchboard_webhook_attempts",
            "Webhook delivery attempts this node made, by outcome: delivered (2xx), retried "
            "(failed, tried again later) or failed (the last attempt failed: given up).",
            labels=["outcome"],
        )
        for outcome in ("delivered", "retried", "failed"):
            outcomes.add_metric([outcome], stats[outcome])
        yield outcomes
        authorize = CounterMetricFamily(
            "switchboard_webhook_authorizations",
            "Answers of the app's subscribe hook, by decision.",
            labels=["decision"],
        )
        authorize.add_metric(["granted"], stats["authorize_granted"])
        authorize.add_metric(["refused"], stats["authorize_refused"])
        yield authorize
        yield CounterMetricFamily(
            "switchboard_webhook_events_dropped",
            "Webhook events dropped before they were queued (the queue was full or the "
            "store or Redis could not be reached).",
            value=stats["dropped"],
        )
        yield GaugeMetricFamily(
            "switchboard_webhook_in_flight",
            "Webhook events this node is sending or waiting to retry.",
            value=stats["in_flight"],
        )

    def _redis_metrics(self) -> Iterator[Metric]:
        broker = self.redis_broker
        if broker is None:
            return
        probe = self.redis
        up = probe is not None and probe.seconds is not None
        yield GaugeMetricFamily(
            "switchboard_redis_up",
            f"1 if Redis answered this scrape's PING within {REDIS_PING_TIMEOUT_S:g} s.",
            value=1 if up else 0,
        )
        if probe is not None and probe.seconds is not None:
            yield GaugeMetricFamily(
                "switchboard_redis_ping_seconds",
                "Round trip of this scrape's PING to Redis (absent when Redis is down).",
                value=probe.seconds,
            )
        stats: dict[str, Any] = broker.stats()
        yield GaugeMetricFamily(
            "switchboard_broker_connected",
            "1 while the broker's pub/sub subscription to Redis is up.",
            value=1 if stats["connected"] else 0,
        )
        yield CounterMetricFamily(
            "switchboard_broker_reconnects",
            "Times the broker's subscription to Redis was lost and retried.",
            value=stats["reconnects"],
        )
        yield CounterMetricFamily(
            "switchboard_broker_events_received",
            "Events this node's broker reader decoded (it hears only its sockets' topics).",
            value=stats["events_received"],
        )
        yield GaugeMetricFamily(
            "switchboard_broker_topics",
            "Pub/sub topics this node wants now: its sockets' channels and tokens.",
            value=stats["topics"],
        )


def _info() -> Metric:
    info = GaugeMetricFamily(
        "switchboard_info", "The Switchboard version this node runs.", labels=["version"]
    )
    info.add_metric([__version__], 1)
    return info


def _socket_metrics(gateway: dict[str, int], hub: HubStats) -> Iterator[Metric]:
    """Open sockets, upgrades accepted, and connections by scope."""
    yield GaugeMetricFamily(
        "switchboard_sockets",
        "Open WebSocket connections, identified or not.",
        value=gateway["sockets"],
    )
    yield CounterMetricFamily(
        "switchboard_sockets_accepted",
        "WebSocket upgrades accepted since the node started.",
        value=gateway["sockets_accepted"],
    )
    by_scope = dict.fromkeys(SCOPES, 0)
    by_scope.update(hub.connections_by_scope)
    # Sockets the hub does not hold: before their IDENTIFY is done, or closing.
    by_scope["unidentified"] = max(0, gateway["sockets"] - hub.connections)
    connections = GaugeMetricFamily(
        "switchboard_connections",
        "WebSocket connections by scope (token, project, noauth once identified; "
        "unidentified before IDENTIFY or while closing).",
        labels=["scope"],
    )
    for scope, count in by_scope.items():
        connections.add_metric([scope], count)
    yield connections


def _fanout_state_metrics(hub: HubStats) -> Iterator[Metric]:
    """What the hub holds now: online tokens, active channels, subscriptions, unsent bytes."""
    yield GaugeMetricFamily(
        "switchboard_tokens_online",
        "Distinct leap tokens with an identified connection on this node.",
        value=hub.tokens_online,
    )
    yield GaugeMetricFamily(
        "switchboard_channels_active",
        "Channels with at least one subscribed connection on this node.",
        value=hub.channels_with_subscribers,
    )
    yield GaugeMetricFamily(
        "switchboard_subscriptions",
        "Channel subscriptions of this node's connections.",
        value=hub.subscriptions,
    )
    yield GaugeMetricFamily(
        "switchboard_pending_bytes",
        "Bytes written to sockets that the kernel has not taken yet, over all sockets.",
        value=hub.pending_bytes,
    )


def _message_metrics(service: dict[str, int], hub: HubStats) -> Iterator[Metric]:
    """Messages in (from clients and REST) and out (fanned out), deliveries, bytes."""
    messages_in = CounterMetricFamily(
        "switchboard_messages_in",
        "Messages accepted by this node: from clients (MESSAGE) or the REST API.",
        labels=["source", "kind"],
    )
    messages_in.add_metric(["client", "channel"], service["client_messages"])
    messages_in.add_metric(["rest", "channel"], service["rest_messages"])
    messages_in.add_metric(["rest", "direct"], service["rest_direct_messages"])
    yield messages_in
    messages_out = CounterMetricFamily(
        "switchboard_messages_out",
        "Messages this node's hub fanned out (in a cluster every node hears every "
        "channel message, with or without local subscribers).",
        labels=["kind"],
    )
    messages_out.add_metric(["channel"], hub.messages_published)
    messages_out.add_metric(["direct"], hub.direct_messages)
    yield messages_out
    yield CounterMetricFamily(
        "switchboard_deliveries",
        "Dispatches queued to sockets by the fan-out (MESSAGE, DIRECT_MESSAGE, "
        "STATE_UPDATE), one per recipient socket.",
        value=hub.deliveries,
    )
    yield CounterMetricFamily(
        "switchboard_bytes_written",
        "WebSocket bytes (frame headers included) written to sockets.",
        value=hub.bytes_written,
    )


def _close_metrics(hub: HubStats) -> Iterator[Metric]:
    """Closes this node started: slow consumers, and every close by code."""
    yield CounterMetricFamily(
        "switchboard_slow_consumer_closes",
        "Sockets closed with 4000 for having too many unsent bytes.",
        value=hub.closed_slow,
    )
    closes = CounterMetricFamily(
        "switchboard_closes",
        "WebSocket closes this node started, by close code.",
        labels=["code"],
    )
    for code, count in sorted(hub.close_codes.items()):
        closes.add_metric([str(code)], count)
    yield closes
