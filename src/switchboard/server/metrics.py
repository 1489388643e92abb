"""Prometheus metrics: ``GET /metrics`` in the Prometheus text format (``--metrics``).

For operators, not projects: served only when the node runs with ``--metrics``, on the
main port and without authentication (as Prometheus scrapers expect; keep the path off
a public listener, docs/metrics.md). No label carries a project, channel or token ID:
labels are scopes, close codes, HTTP methods, route templates and statuses, all from
small fixed sets.

The fan-out pays nothing per delivery for this (DESIGN §3, rule 5): :class:`NodeCollector`
reads, at scrape time, the plain integer counters the hub, gateway, service and broker
keep for their ``stats()`` anyway. The only per-request cost is the REST middleware of
:class:`RestMetrics` (a few dict and list updates per HTTP request, read the same way at
scrape time; WebSocket upgrades are left out). Redis health is a ``PING`` timed at scrape,
bounded by :data:`REDIS_PING_TIMEOUT_S`.

Webhook outcomes will appear here when webhooks exist; there is no placeholder.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder

from switchboard import __version__
from switchboard.exceptions import Unavailable
from switchboard.server.broker import LocalBroker
from switchboard.server.edge import Gateway
from switchboard.server.service import Service

if TYPE_CHECKING:
    from switchboard.server.broker.redis import RedisBroker

REDIS_PING_TIMEOUT_S = 0.5
"""A scrape waits at most this long for Redis to answer its PING (then: down)."""

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""REST latency buckets, in seconds: a REST call here takes well under a millisecond to
tens of milliseconds (a store write); past 10 s it is a slow client or a stuck store."""

_BUCKET_LABELS = tuple(repr(bound) for bound in LATENCY_BUCKETS)
"""The ``le`` label of each bucket."""

SCOPES = ("token", "project", "noauth", "unidentified")
"""Values of ``switchboard_connections``'s ``scope`` label, all present on every scrape."""

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""HTTP methods kept as label values; any other is ``OTHER`` (a client picks the method:
taking it as it comes would let anyone create series)."""

UNMATCHED = "unmatched"
"""The ``route`` label of a request no route matched (its path is never a label)."""

_GATEWAY_PATHS = ("/ws", "/1.0/ws")


@dataclass(frozen=True, slots=True)
class RedisProbe:
    """One scrape's PING: ``seconds`` is the round trip, None when Redis did not answer."""

    seconds: float | None


async def probe_redis(broker: RedisBroker) -> RedisProbe:
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
        self.redis_broker: RedisBroker | None = None
        if not isinstance(service.broker, LocalBroker):
            # Imported only here: a node on SQLite never loads the Redis client.
            from switchboard.server.broker.redis import RedisBroker

            if isinstance(service.broker, RedisBroker):
                self.redis_broker = service.broker
        self.redis: RedisProbe | None = None
        """Set by the handler just before each collection (collection cannot await)."""

    def collect(self) -> Iterator[Metric]:
        """Every metric family of this node (the registry calls this on each scrape)."""
        hub = self.gateway.hub.stats()
        gateway = self.gateway.stats()
        service = self.service.stats()

        info = GaugeMetricFamily(
            "switchboard_info", "The Switchboard version this node runs.", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info
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
            "Events this node received from the cluster's broker topic.",
            value=stats["events_received"],
        )


class _RouteSeries:
    """One (method, route template)'s answers by status and its latency histogram."""

    __slots__ = ("buckets", "statuses", "sum")

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        """Observations per bucket, not cumulative; the last is past every bound (+Inf)."""
        self.sum = 0.0


class RestMetrics:
    """REST requests by method, route template and status, and their latency.

    Plain ints and lists updated on the event loop, turned into metric families at
    scrape time: the library's own Counter and Histogram take a lock per update, which
    cost several microseconds per request when measured, this a fraction of one.
    """

    def __init__(self) -> None:
        self._series: dict[tuple[str, str], _RouteSeries] = {}

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        """Count one answered request that took ``seconds``."""
        method = request.method if request.method in METHODS else "OTHER"
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else UNMATCHED
        series = self._series.get((method, route))
        if series is None:
            series = self._series[method, route] = _RouteSeries()
        series.statuses[status] = series.statuses.get(status, 0) + 1
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le).
        series.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        series.sum += seconds

    def collect(self) -> Iterator[Metric]:
        """The request counter and the latency histogram (the registry calls this)."""
        requests = CounterMetricFamily(
            "switchboard_http_requests",
            "REST requests answered, by method, route template and status.",
            labels=["method", "route", "status"],
        )
        latency = HistogramMetricFamily(
            "switchboard_http_request_duration_seconds",
            "Time from a REST request's routing to its answer, by method and route template.",
            labels=["method", "route"],
        )
        for (method, route), series in sorted(self._series.items()):
            for status, count in sorted(series.statuses.items()):
                requests.add_metric([method, route, str(status)], count)
            cumulative, buckets = 0, []
            for bound, count in zip(_BUCKET_LABELS, series.buckets, strict=False):
                cumulative += count
                buckets.append((bound, cumulative))
            buckets.append(("+Inf", cumulative + series.buckets[-1]))
            latency.add_metric([method, route], buckets, series.sum)
        yield requests
        yield latency

    @web.middleware
    def middleware(self, request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        """Observe every REST request; the outermost middleware, so it sees every answer.

        Not a coroutine itself: for a WebSocket it hands back the handler's own
        coroutine, which runs for the socket's whole life, so no suspended frame of ours
        is kept per socket (api/app.py keeps to one middleware for the same reason).
        """
        if request.path.startswith(_GATEWAY_PATHS):
            return handler(request)  # a socket's lifetime is not a request's latency
        return self._observed(request, handler)

    async def _observed(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self.observe(request, exc.status, time.perf_counter() - started)
            raise
        except asyncio.CancelledError:
            raise  # the client went away: there was no answer to count
        except Exception:
            self.observe(request, 500, time.perf_counter() - started)
            raise
        self.observe(request, response.status, time.perf_counter() - started)
        return response


REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)
COLLECTOR = web.AppKey("metrics_collector", NodeCollector)


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: every metric, in the format the scraper's ``Accept`` asks for
    (Prometheus text by default, OpenMetrics when asked)."""
    collector = request.app[COLLECTOR]
    if collector.redis_broker is not None:
        # Set with no await before the collection below, so this scrape reads its own.
        collector.redis = await probe_redis(collector.redis_broker)
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return web.Response(
        body=encoder(request.app[REGISTRY]),
        headers={"Content-Type": content_type, "Cache-Control": "no-store"},
    )


def setup(app: web.Application, service: Service, gateway: Gateway) -> None:
    """Serve ``GET /metrics`` on ``app`` and observe its REST requests.

    Call before the app starts: the REST middleware goes first in the chain (outermost),
    so drained, refused and failed requests are counted too.
    """
    # A registry per app, not the library's global one: several nodes may share a
    # process (the tests do), and each must report only its own.
    registry = CollectorRegistry(auto_describe=False)
    collector = NodeCollector(service, gateway)
    registry.register(collector)
    for process_wide in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(process_wide)
    rest = RestMetrics()
    registry.register(rest)
    app.middlewares.insert(0, rest.middleware)
    app[REGISTRY] = registry
    app[COLLECTOR] = collector
    app.router.add_get("/metrics", metrics)
