"""The Leap gateway: WebSocket I/O around :class:`LeapSession` (at ``/ws`` and ``/1.0/ws``).

Each socket gets a session (the protocol, no I/O) and a :class:`SocketConnection` (its
place in the hub). The reader task feeds frames to the session and carries out the
session's events with :class:`LeapSteps` (``edge/leap.py``), one frame at a time, so a
client's frames are handled in the order it sent them. One sweeper task ticks every
session once a second for deadlines and probes, instead of a timer per socket; it
takes only the sockets whose deadline has come up out of a :class:`DeadlineWheel`.

Every frame to a client goes through its hub connection's queue, which the hub writes
to the socket's transport once per loop turn: the session's replies here, broadcasts by
the hub. Nothing awaits a slow reader; the hub closes a socket whose buffer passes the
limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSMsgType, web

from switchboard.exceptions import Forbidden, RateLimited
from switchboard.server.config import Settings
from switchboard.server.edge.address_limit import ConnectionsPerAddress
from switchboard.server.edge.deadlines import DeadlineWheel
from switchboard.server.edge.leap import LeapSteps
from switchboard.server.edge.lingering_close import LingeringWebSocketResponse
from switchboard.server.edge.origins import origin_allowed
from switchboard.server.edge.socket import SocketConnection
from switchboard.server.fanout.hub import Hub
from switchboard.server.protocol.frames import CloseCode
from switchboard.server.protocol.session import LeapSession, SessionLimits
from switchboard.server.service import Service

log = logging.getLogger("switchboard.gateway")


class Gateway:
    """Accepts Leap sockets; see the module docstring."""

    def __init__(self, service: Service, hub: Hub, settings: Settings) -> None:
        self.service = service
        self.hub = hub
        self.settings = settings
        self.steps = LeapSteps(service, hub)
        limits = settings.limits
        self.session_limits = SessionLimits(
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            identify_timeout_s=settings.identify_timeout_s,
            max_payload_bytes=limits.max_payload_bytes,
            max_event_name=limits.max_event_name,
            messages_per_second=limits.client_messages_per_second,
            frames_per_second=limits.client_frames_per_second,
            flood_strikes=limits.client_flood_strikes,
        )
        self.addresses = ConnectionsPerAddress(limits.max_connections_per_ip)
        self._live: DeadlineWheel[SocketConnection] | None = None
        """Every live socket, by when its session next has something to do (made in
        :meth:`start`, on the loop's clock)."""
        self._heartbeat_s = settings.heartbeat_interval_ms / 1000
        self._sweeper: asyncio.Task[None] | None = None
        self.accepting = True
        self.sockets_accepted = 0
        """WebSocket upgrades completed since the start (refused ones included)."""

    def stats(self) -> dict[str, int]:
        return {
            "sockets": len(self._live) if self._live is not None else 0,
            "sockets_accepted": self.sockets_accepted,
            "sockets_refused_per_ip": self.addresses.refused,
        }

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._live = DeadlineWheel(loop.time())
        self._sweeper = loop.create_task(self._sweep(self._live))

    async def _sweep(self, live: DeadlineWheel[SocketConnection]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            now = loop.time()
            for conn in live.take_due(now):
                conn.session.tick(now)
                conn.flush()
                if not conn.closing:
                    self._file(live, conn, now)

    def _file(
        self, live: DeadlineWheel[SocketConnection], conn: SocketConnection, now: float
    ) -> None:
        """File ``conn`` for the sweep at its session's next deadline, or sooner.

        A frame only moves the deadline later (the sweep re-checks lazily), except the
        IDENTIFY (from the identify deadline to the heartbeat's) and the answer to a
        probe (from the probe's timeout to the next probe): both set the deadline to
        one interval after a frame received from now on, so filing at most one
        interval ahead never misses it.
        """
        due = conn.session.next_deadline()
        if due is not None:
            live.file(conn, min(due, now + self._heartbeat_s))

    async def shutdown(self, grace: float) -> None:
        """Close every socket with 1001 (clients reconnect) and wait up to ``grace``."""
        self.accepting = False
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        conns = list(self._live or ())
        for conn in conns:
            conn.close(CloseCode.GOING_AWAY, "server shutting down")
        if conns:
            await asyncio.wait(
                [asyncio.ensure_future(c.wait_closed()) for c in conns], timeout=grace
            )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler for ``/ws`` and ``/1.0/ws``."""
        # aiohttp refuses a message of max_msg_size bytes or more (its reader tests
        # ">="): + 1 takes max_frame_bytes itself, as docs/protocol.md says. A refused
        # frame's socket gets a lingering close, so the 1009 reaches a client still writing.
        ws = LingeringWebSocketResponse(
            autoping=True,
            max_msg_size=self.settings.limits.max_frame_bytes + 1,
            compress=False,
            timeout=5.0,
        )
        if not ws.can_prepare(request).ok:
            raise web.HTTPBadRequest(text="expected a WebSocket upgrade")
        address = self._admit(request)
        # One coroutine per socket, this one: a nested call would hold a second frame
        # for the socket's life (measured: +0.26 KiB per idle connection). Its frame
        # has a slot per local variable for as long, hence few locals (_connect's
        # frame is gone once it returns).
        try:
            await ws.prepare(request)
            self.sockets_accepted += 1
            conn = self._connect(request, ws)
            try:
                if not conn.closing:
                    await self._read(conn, ws)
            finally:
                self._forget(conn, ws)
            await conn.wait_closed()
            return ws
        finally:
            self.addresses.release(address)

    def _connect(self, request: web.Request, ws: web.WebSocketResponse) -> SocketConnection:
        """The upgraded socket's connection: filed in the wheel and sent HELLO, or
        closing already if the socket may not stay."""
        transport = request.transport
        assert transport is not None
        encoding = request.query.get("encoding", "json")
        compression = request.query.get("compression", "none")
        now = asyncio.get_running_loop().time()
        session = LeapSession(now=now, limits=self.session_limits)
        conn = SocketConnection(self.hub, ws, session, transport, compression == "zlib")
        if not self.accepting:
            conn.close(CloseCode.GOING_AWAY, "server shutting down")
        elif encoding != "json" or compression not in ("none", "zlib", ""):
            conn.close(CloseCode.INVALID_PAYLOAD, "only encoding=json and compression=none|zlib")
        elif self._live is None:
            raise RuntimeError("Gateway.start() was not called")
        else:
            self._file(self._live, conn, now)
            conn.flush()
        return conn

    def _admit(self, request: web.Request) -> str | None:
        """The checks before the upgrade; the client's address, now counted, or an error."""
        origin = request.headers.get("Origin")
        if (
            self.settings.ws_origins
            and origin
            and not origin_allowed(origin, self.settings.ws_origins)
        ):
            # Refused before the upgrade: a page of another site cannot open a socket
            # with its visitors' tokens. Clients that send no Origin (backends) pass.
            raise Forbidden(f"the origin {origin} may not open a socket here")
        address = request.remote
        if not self.addresses.admit(address):
            raise RateLimited(
                f"this address has {self.addresses.limit} sockets open already",
                retry_after=1.0,
            )
        return address

    def _forget(self, conn: SocketConnection, ws: LingeringWebSocketResponse) -> None:
        """After the socket's reader ended: out of the node's books."""
        if self._live is not None:
            self._live.discard(conn)
        if ws.refused_code is not None and not conn.closing:
            # aiohttp closed it (a refused frame), not the connection: counted here so
            # switchboard_closes_total has every code.
            self.hub.close_codes[ws.refused_code] += 1
        self.hub.detach(conn)
        conn.closing = True
        conn.cancel_expiry()

    async def _read(self, conn: SocketConnection, ws: web.WebSocketResponse) -> None:
        loop = asyncio.get_running_loop()
        session = conn.session
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            try:
                # Inside the try: a bug in the session must close this socket with
                # 4000, never leave it open with its reader gone.
                session.receive_text(msg.data, loop.time())
                for event in session.events_received():
                    if conn.closing:
                        break
                    await self.steps.carry_out(conn, event)
            except Exception:
                # A bug or a failed backing service: this socket ends (its client
                # reconnects), every other socket is unaffected.
                log.exception("connection failed", extra={"cid": conn.cid})
                session.close(CloseCode.UNKNOWN_ERROR, "internal error")
            conn.flush()
            if conn.closing:
                break
