"""`Node`: one running Switchboard server, assembled from its parts."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
import signal
import socket
from dataclasses import dataclass

from aiohttp import web

from switchboard import __version__
from switchboard.exceptions import Conflict
from switchboard.server.api import build_app, http_errors
from switchboard.server.api.app import DRAIN
from switchboard.server.api.fast_publish import FastPublish
from switchboard.server.broker import Broker, LocalBroker
from switchboard.server.broker.base import EventHandler, LocalNode, PresenceChanges
from switchboard.server.broker.topics import TopicInterest
from switchboard.server.config import Settings
from switchboard.server.edge import Gateway
from switchboard.server.fanout import Dispatch, Hub
from switchboard.server.history import NoHistoryCache
from switchboard.server.models import Project
from switchboard.server.service import Service
from switchboard.server.store import SqliteStore, Store
from switchboard.server.webhooks import SenderOptions, Webhooks, WebhookSettings

log = logging.getLogger("switchboard.node")


def open_store(settings: Settings) -> Store:
    """The store ``settings`` ask for (the command line uses this too)."""
    if settings.redis_url:
        from switchboard.server.store.redis import RedisStore

        return RedisStore(
            settings.redis_url,
            prefix=settings.redis_prefix,
            min_replicas=settings.redis_min_replicas,
        )
    return SqliteStore(settings.data_dir)


def open_broker(
    settings: Settings,
    node_id: str,
    handler: EventHandler,
    local: LocalNode,
    changes: PresenceChanges,
    topics: TopicInterest,
) -> Broker:
    """In-process with the embedded store; Redis pub/sub and presence with Redis."""
    if settings.redis_url:
        from switchboard.server.broker.redis import RedisBroker

        return RedisBroker(
            settings.redis_url,
            handler,
            local,
            changes,
            topics,
            prefix=settings.redis_prefix,
            node_id=node_id,
        )
    return LocalBroker(handler, local, changes)


def offline_service(store: Store, settings: Settings) -> Service:
    """A service on ``store`` whose events reach no socket: the store commands' (a
    server's sockets are in its own process; it reads the store's new state anew)."""
    hub = Hub(max_buffered_bytes=settings.limits.max_buffered_bytes)
    broker = LocalBroker(Dispatch(hub, NoHistoryCache()), hub, hub.changes)
    return Service(store, broker, settings.limits)


def open_webhooks(settings: Settings, store: Store, node_id: str) -> Webhooks:
    """In-process with the embedded store; a Redis stream shared by the cluster with Redis."""
    options = SenderOptions(
        timeout_s=settings.webhook_timeout_s,
        retries=settings.webhook_retries,
        retry_base_s=settings.webhook_retry_base_s,
        authorize_timeout_s=settings.webhook_authorize_timeout_s,
    )
    config = WebhookSettings(store, log_size=settings.webhook_log_size)
    if settings.redis_url:
        from switchboard.server.webhooks.queue import RedisQueue

        queue = RedisQueue(
            settings.redis_url,
            prefix=settings.redis_prefix,
            node_id=node_id,
            # An event is claimed from a node only once it cannot still be sending it.
            claim_after_s=2 * options.worst_case_s + 10,
        )
        return Webhooks(config, queue, options)
    return Webhooks.local(config, options)


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """What the first start on an empty store created."""

    project: Project
    project_token: str


class Node:
    """Store, broker, hub, service, gateway and HTTP server, started and stopped together.

    Each part is made with the parts it uses, in the order they depend on each other.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # A node of a cluster is named at random, so a restarted one is a new node.
        self.node_id = secrets.token_hex(6) if settings.redis_url else LocalBroker.node_id
        self.store: Store = open_store(settings)
        self.webhooks = open_webhooks(settings, self.store, self.node_id)
        changes = PresenceChanges()
        # In one process the broker hears every event; on Redis, only the topics of the
        # channels and tokens of this node's sockets (broker/topics.py).
        topics = TopicInterest(hears_everything=not settings.redis_url)
        self.hub = Hub(
            max_buffered_bytes=settings.limits.max_buffered_bytes,
            node_id=self.node_id,
            changes=changes,
            topics=topics,
            occupancy=self.webhooks.occupancy_changed,
        )
        # One cache for the service that reads it and the dispatch that gets the events.
        no_history = NoHistoryCache()
        dispatch = Dispatch(self.hub, no_history)
        self.broker: Broker = open_broker(
            settings, self.node_id, dispatch, self.hub, changes, topics
        )
        self.service = Service(
            self.store,
            self.broker,
            settings.limits,
            webhooks=self.webhooks,
            no_history=no_history,
        )
        self.gateway = Gateway(self.service, self.hub, settings)
        self.app = build_app(
            self.service,
            self.gateway,
            max_body=settings.limits.max_request_bytes,
            body_timeout_s=settings.limits.http_body_timeout_s,
            cors_origins=settings.cors_origins,
            rest_requests_per_second=settings.limits.rest_requests_per_second,
            metrics=settings.metrics,
            workers=settings.workers,
        )
        self._runner: web.AppRunner | None = None
        self.fast_publish: FastPublish | None = None
        """The REST publish's fast path (api/fast_publish.py), once started."""
        self._unserved_socket: socket.socket | None = None
        self.port = settings.port
        self.bootstrap: Bootstrap | None = None

    @property
    def base_url(self) -> str:
        host = self.settings.host
        host = f"[{host}]" if ":" in host else host
        return self.settings.public_url or f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Open everything and listen; on failure, close what was opened and re-raise."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        # Bind first: a port in use must fail before anything is written to the store
        # (a "default" project made then would have its token never shown).
        sock = socket.socket(socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.settings.worker is not None:
                # Every worker listens on the same port; the kernel deals connections out.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.settings.host, self.settings.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._unserved_socket = sock
        await self.store.open()
        await self.broker.start()
        await self.webhooks.start()
        if not await self.store.list_projects():
            try:
                project, secret = await self.service.create_project("default")
                self.bootstrap = Bootstrap(project, secret)
            except Conflict:
                pass  # another node of the cluster made it first, and printed it
        await self.gateway.start()
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            # A connection must send a whole request head within this time (and an idle
            # keep-alive connection is closed after it): the bound on slowloris clients.
            keepalive_timeout=self.settings.limits.http_header_timeout_s,
            # In-flight REST calls get this long to finish on shutdown.
            shutdown_timeout=self.settings.shutdown_grace_s,
        )
        await self._runner.setup()
        # aiohttp's answers to unparsable request heads become the JSON envelope too,
        # and the REST publish takes its fast path (api/fast_conn.py).
        self.fast_publish = FastPublish(self.app, cors_origins=self.settings.cors_origins)
        http_errors.install(self._runner, self.fast_publish)
        site = web.SockSite(self._runner, sock, backlog=4096)
        await site.start()
        self._unserved_socket = None
        log.info("listening", extra={"url": self.base_url, "store": repr(self.store)})

    async def stop(self) -> None:
        """Drain, then close everything; bounded by twice ``shutdown_grace_s``.

        1. Stop listening: new connections are refused, so clients and load balancers
           go to another node at once.
        2. Close every socket with 1001 (clients reconnect, to another node) and wait up
           to the grace for their close handshakes.
        3. Let in-flight REST calls finish, up to the grace again (a publish that was
           acknowledged has reached the broker before its answer was sent).
        4. Leave the cluster (presence, subscription) and close the store.
        """
        log.info("shutting down")
        started = asyncio.get_running_loop().time()
        if self._unserved_socket is not None:  # a start that failed half-way
            self._unserved_socket.close()
            self._unserved_socket = None
        self.gateway.accepting = False
        if self._runner is not None:
            for site in list(self._runner.sites):
                await site.stop()
        sockets = len(self.gateway.hub.connections)
        grace = self.settings.shutdown_grace_s
        drain = self.app[DRAIN]
        drain.draining = True  # new REST calls on kept-alive connections: 503
        await self.gateway.shutdown(grace)
        if not await drain.wait_idle(grace):
            log.warning("REST calls still running at shutdown", extra={"calls": drain.in_flight})
        if self._runner is not None:
            await self._runner.cleanup()
        # The offline and vacated events of the sockets just closed reach the queue.
        await self.webhooks.stop(grace)
        await self.broker.stop()
        await self.store.close()
        log.info(
            "stopped",
            extra={
                "sockets_closed": sockets,
                "drain_s": round(asyncio.get_running_loop().time() - started, 3),
            },
        )

    def banner(self) -> str:
        url = self.base_url
        ws_url = url.replace("http", "ws", 1)
        lines = [
            f"Switchboard {__version__} is running.",
            f"  REST API:   {url}/v1",
            f"  WebSocket:  {ws_url}/ws",
            f"  Console:    {url}/console",
            f"  Store:      {self.store!r}",
        ]
        if self.bootstrap is not None:
            lines += [
                "",
                'First start on an empty store: created the project "default".',
                f"  Project ID:     {self.bootstrap.project.id}",
                f"  Project token:  {self.bootstrap.project_token}",
                "  The project token is shown once. Keep it secret; it is stored only as a hash.",
            ]
        return "\n".join(lines)


async def serve(settings: Settings) -> None:
    """Run a node until SIGTERM or SIGINT, then shut down gracefully."""
    node = Node(settings)
    await node.start()
    # What exists once the node is up (modules, routes, pools) lives as long as the process:
    # no collection needs to walk it again.
    gc.freeze()
    if settings.worker is None:
        print(node.banner(), flush=True)
    else:
        # The supervisor waits for this line from each worker, then prints the banner once.
        print(f"worker {settings.worker} ready", flush=True)
        log.info("worker ready", extra={"worker": settings.worker, "node": node.node_id})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await node.stop()


COLLECTOR_THRESHOLDS = (50_000, 50, 100)
"""CPython's cyclic collector, tuned for a server holding many sockets (defaults: 700, 10,
10). A socket keeps ~70 tracked objects alive, so 10,000 of them are ~0.7 million objects
that every full collection walks; and a request that sends to 1,000 tokens makes thousands
of short-lived objects, which at the default of 700 were promoted before they died and soon
called for another full collection. Profiled on a broadcast to 10,000 token sockets, the
collector took 43 % of a SQLite node's CPU and 70 % of a Redis node's; with these thresholds
a delivery cost 22-25 µs instead of 26-35 (SQLite) and 65-73 instead of 98-107 (Redis)
(bench/README.md, "Per-user messaging"). Cycles are still collected, later."""


def tune_collector() -> None:
    """Set :data:`COLLECTOR_THRESHOLDS` (``serve`` only: an app embedding a node keeps its own)."""
    gc.set_threshold(*COLLECTOR_THRESHOLDS)


def run(settings: Settings) -> None:
    """Serve on uvloop when it is installed, else on the standard asyncio loop."""
    tune_collector()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(settings))
        return
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(settings))
