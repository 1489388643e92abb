"""Prometheus metrics: ``GET /metrics`` in the Prometheus text format (``--metrics``).

For operators, not projects: served only when the node runs with ``--metrics``, on the
main port and without authentication (as Prometheus scrapers expect; keep the path off
a public listener, docs/metrics.md). No label carries a project, channel or token ID:
labels are scopes, close codes, HTTP methods, route templates and statuses, all from
small fixed sets.

The fan-out pays nothing per delivery for this (DESIGN §3, rule 5): the node's own
families come from ``node_metrics.NodeCollector``, which reads at scrape time the plain
integer counters the hub, gateway, service and broker keep for their ``stats()`` anyway.
The only per-request cost is the REST middleware of :class:`RestMetrics` (a few dict and
list updates per HTTP request, read the same way at scrape time; WebSocket upgrades are
left out). This module is the endpoint, its registry and that middleware.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Awaitable, Iterator

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder

from switchboard.server.edge import Gateway
from switchboard.server.observability.node_metrics import NodeCollector, probe_redis
from switchboard.server.service import Service

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""REST latency buckets, in seconds: a REST call here takes well under a millisecond to
tens of milliseconds (a store write); past 10 s it is a slow client or a stuck store."""

_BUCKET_LABELS = tuple(repr(bound) for bound in LATENCY_BUCKETS)
"""The ``le`` label of each bucket."""

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""HTTP methods kept as label values; any other is ``OTHER`` (a client picks the method:
taking it as it comes would let anyone create series)."""

UNMATCHED = "unmatched"
"""The ``route`` label of a request no route matched (its path is never a label)."""

_GATEWAY_PATHS = ("/ws", "/1.0/ws")


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
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else UNMATCHED
        self.observe_route(request.method, route, status, seconds)

    def observe_route(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request to ``route`` (a template) that took ``seconds``;
        the REST publish's fast path (``api/fast_publish.py``) counts its own so."""
        method = method if method in METHODS else "OTHER"
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
REST_METRICS = web.AppKey("rest_metrics", RestMetrics)
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
    app[REST_METRICS] = rest
    app[COLLECTOR] = collector
    app.router.add_get("/metrics", metrics)
