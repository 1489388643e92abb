"""The Leap gateway: WebSocket I/O around :class:`LeapSession` (at ``/ws`` and ``/1.0/ws``).

Each socket gets a session (the protocol, no I/O) and a :class:`GatewayConnection` (its
place in the hub). The reader task feeds frames to the session and carries out the
session's events through the service, one frame at a time, so a client's frames are
handled in the order it sent them. One sweeper task ticks every session once a second
for deadlines and probes, instead of a timer per socket.

Every frame to a client goes through its hub connection's queue, which the hub writes
to the socket's transport once per loop turn: the session's replies here, broadcasts by
the hub. Nothing awaits a slow reader; the hub closes a socket whose buffer passes the
limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Any

from aiohttp import WSMsgType, web

from switchboard.exceptions import APIError, Forbidden, RateLimited, Unauthorized
from switchboard.server import ids
from switchboard.server.address_limit import ConnectionsPerAddress
from switchboard.server.config import Settings
from switchboard.server.fanout.hub import Hub
from switchboard.server.gateway_connection import GatewayConnection
from switchboard.server.lingering_close import LingeringWebSocketResponse
from switchboard.server.origins import origin_allowed
from switchboard.server.presence_watch import start_watch
from switchboard.server.protocol import frames
from switchboard.server.protocol.frames import CloseCode, Since, leap_channel
from switchboard.server.protocol.session import (
    ClientPublish,
    Identify,
    LeapSession,
    RefreshToken,
    SessionLimits,
    Subscribe,
    Unsubscribe,
)
from switchboard.server.recovery import recover
from switchboard.server.service import Service

log = logging.getLogger("switchboard.gateway")


class Gateway:
    """Accepts Leap sockets; see the module docstring."""

    def __init__(self, service: Service, hub: Hub, settings: Settings) -> None:
        self.service = service
        self.hub = hub
        self.settings = settings
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
        self._live: dict[str, GatewayConnection] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self.accepting = True
        self.sockets_accepted = 0
        """WebSocket upgrades completed since the start (refused ones included)."""

    def stats(self) -> dict[str, int]:
        return {
            "sockets": len(self._live),
            "sockets_accepted": self.sockets_accepted,
            "sockets_refused_per_ip": self.addresses.refused,
        }

    async def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            now = loop.time()
            for conn in list(self._live.values()):
                conn.session.tick(now)
                conn.flush()

    async def shutdown(self, grace: float) -> None:
        """Close every socket with 1001 (clients reconnect) and wait up to ``grace``."""
        self.accepting = False
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        conns = list(self._live.values())
        for conn in conns:
            conn.close(CloseCode.GOING_AWAY, "server shutting down")
        if conns:
            await asyncio.wait(
                [asyncio.ensure_future(c.wait_closed()) for c in conns], timeout=grace
            )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler for ``/ws`` and ``/1.0/ws``."""
        limits = self.settings.limits
        # aiohttp refuses a message of max_msg_size bytes or more (its reader tests
        # ">="): + 1 takes max_frame_bytes itself, as docs/protocol.md says. A refused
        # frame's socket gets a lingering close, so the 1009 reaches a client still writing.
        ws = LingeringWebSocketResponse(
            autoping=True, max_msg_size=limits.max_frame_bytes + 1, compress=False, timeout=5.0
        )
        if not ws.can_prepare(request).ok:
            raise web.HTTPBadRequest(text="expected a WebSocket upgrade")
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
        # One coroutine per socket, this one: a nested call would hold a second frame
        # for the socket's life (measured: +0.26 KiB per idle connection).
        try:
            await ws.prepare(request)
            self.sockets_accepted += 1
            transport = request.transport
            assert transport is not None
            loop = asyncio.get_running_loop()
            encoding = request.query.get("encoding", "json")
            compression = request.query.get("compression", "none")
            session = LeapSession(now=loop.time(), limits=self.session_limits)
            conn = GatewayConnection(self, ws, session, transport, compression == "zlib")
            if not self.accepting:
                conn.close(CloseCode.GOING_AWAY, "server shutting down")
            elif encoding != "json" or compression not in ("none", "zlib", ""):
                conn.close(
                    CloseCode.INVALID_PAYLOAD, "only encoding=json and compression=none|zlib"
                )
            else:
                self._live[conn.cid] = conn
                conn.flush()
                try:
                    await self._read(conn, ws)
                finally:
                    self._live.pop(conn.cid, None)
                    self.hub.detach(conn)
                    conn.closing = True
                    conn.cancel_expiry()
            await conn.wait_closed()
            return ws
        finally:
            self.addresses.release(address)

    async def _read(self, conn: GatewayConnection, ws: web.WebSocketResponse) -> None:
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
                    await self._carry_out(conn, event)
            except Exception:
                # A bug or a failed backing service: this socket ends (its client
                # reconnects), every other socket is unaffected.
                log.exception("connection failed", extra={"cid": conn.cid})
                session.close(CloseCode.UNKNOWN_ERROR, "internal error")
            conn.flush()
            if conn.closing:
                break

    async def _carry_out(self, conn: GatewayConnection, event: Any) -> None:
        session = conn.session
        try:
            if isinstance(event, Identify):
                await self._identify(conn, event)
            elif isinstance(event, Subscribe):
                await self._subscribe(conn, event.channel, event.presence, event.since)
            elif isinstance(event, RefreshToken):
                await self._refresh(conn, event)
            elif isinstance(event, Unsubscribe):
                assert conn.identity is not None
                self.hub.leave(conn, event.channel)
                await self.service.unsubscribe(conn.identity, event.channel, conn.cid)
            elif isinstance(event, ClientPublish):
                assert conn.identity is not None
                if event.channel not in conn.channels:
                    session.send(
                        frames.error_dispatch(
                            event.channel, "forbidden", "subscribe to the channel before publishing"
                        )
                    )
                    return
                await self.service.client_publish(
                    conn.identity, event.channel, event.event, event.data, conn.cid
                )
        except APIError as exc:
            channel = getattr(event, "channel", None)
            session.send(frames.error_dispatch(channel, exc.code, exc.message))

    async def _identify(self, conn: GatewayConnection, event: Identify) -> None:
        token = event.token
        if not token:
            return await self._identify_watched(conn, event)
        # A deletion of the token during the lookups below closes this socket (the hub
        # knows it only once it is attached): the soak found sockets that outlived it.
        self.hub.watch_token(conn, token)
        try:
            await self._identify_watched(conn, event)
        finally:
            self.hub.unwatch_token(conn, token)

    async def _identify_watched(self, conn: GatewayConnection, event: Identify) -> None:
        session = conn.session
        try:
            identity = await self.service.identify(event.project_id, event.token)
        except Unauthorized as exc:
            log.info(
                "identify refused",
                extra={
                    "cid": conn.cid,
                    "project": event.project_id,
                    "token": ids.redact(event.token),
                    "reason": exc.message,
                },
            )
            session.close(CloseCode.INVALID_AUTH, exc.message)
            return
        except APIError as exc:
            # Too many connections for the token, or the store is unreachable: the
            # client may retry, so not 4001.
            session.close(CloseCode.UNKNOWN_ERROR, exc.message)
            return
        channels = await self.service.token_subscriptions(identity)
        count, metadata = 1, None
        if identity.token is not None:
            # Counted before this connection is attached, hence the + 1.
            count = await self.service.broker.token_connections(identity.token.id) + 1
            metadata = identity.token.state
        if conn.closing:
            return
        # From here to the INIT no await: no broadcast can slip in ahead of it.
        conn.identity = identity
        conn.project_id = identity.project.id
        conn.token_id = identity.token_id
        conn.scope = identity.scope
        conn.metadata = metadata
        self.hub.attach(conn)
        for channel in channels:
            self.hub.join(conn, channel.id)
        # Recovery (Switchboard's): every INIT channel is held from its join, so what is
        # published while its history is read comes after the replay, once.
        holds = [self.hub.hold(conn, c.id) for c in channels] if event.recover is not None else []
        if identity.token is not None:
            if event.expiry_notice_s is not None:
                conn.want_expiry_notice(event.expiry_notice_s)
            conn.expiry_changed(identity.token.expires_at)
        session.accept(
            {
                "cid": conn.cid,
                "connection_count": count,
                "metadata": metadata,
                "scope": identity.scope,
                "channels": [
                    leap_channel(c.project_id, c.id, c.type.value, c.state) for c in channels
                ],
            }
        )
        conn.flush()
        log.info(
            "connection identified",
            extra={
                "cid": conn.cid,
                "project": conn.project_id,
                "scope": conn.scope,
                "token": ids.redact(conn.token_id),
            },
        )
        positions = event.recover or {}
        try:
            for hold in holds:
                if conn.closing:
                    break
                since = positions.get(hold.channel_id)
                await recover(
                    self.hub,
                    self.service,
                    hold,
                    since,
                    report_no_history=since is not None and since.epoch is not None,
                )
                conn.flush()
        finally:
            for hold in holds:
                self.hub.release(hold, [], None, None)  # those not reached (idempotent)

    async def _refresh(self, conn: GatewayConnection, event: RefreshToken) -> None:
        """``TOKEN_REFRESH``: take the token's current expiry (see service/lifecycle.py)."""
        assert conn.identity is not None
        try:
            token = await self.service.refresh_token(conn.identity, event.token)
        except Unauthorized as exc:
            # The token is gone or expired: what its deletion or expiry does anyway.
            conn.session.close(CloseCode.INVALID_AUTH, exc.message)
            return
        except APIError as exc:
            # A refresh that cannot be right (no token, another token): said, not closed.
            conn.session.send(frames.refresh_error(exc.code, exc.message))
            return
        if conn.closing:
            return
        conn.identity = dataclasses.replace(conn.identity, token=token)
        conn.expiry_changed(token.expires_at)
        conn.session.send(frames.token_refreshed(token.expires_at))

    async def _subscribe(
        self, conn: GatewayConnection, channel_id: str, presence: bool, since: Since | None = None
    ) -> None:
        assert conn.identity is not None
        result = await self.service.subscribe(conn.identity, channel_id, conn.cid)
        if conn.closing:
            return
        channel = result.channel
        if channel is None:
            conn.session.send(
                frames.dispatch(
                    channel_id,
                    "UNAVAILABLE",
                    {"graceful": False, "error_code": result.error_code},
                    unicast=True,
                )
            )
            return
        # Presence shows who is there, with their tokens' state: not to anonymous visitors.
        watching = presence and conn.scope != "noauth"
        key = (channel.project_id, channel.id)
        if watching:
            await start_watch(self.hub.presence, self.service, key)
            if conn.closing:
                self.hub.presence.release(key)
                return
        # Join and answer with no await in between: no broadcast can slip ahead of AVAILABLE.
        self.hub.join(conn, channel.id)
        # Recovery: held from the join, so nothing live comes between AVAILABLE and the replay.
        hold = self.hub.hold(conn, channel.id) if since is not None else None
        conn.session.send(
            frames.dispatch(
                channel.id,
                "AVAILABLE",
                {
                    "channel": leap_channel(
                        channel.project_id, channel.id, channel.type.value, channel.state
                    )
                },
                unicast=True,
            )
        )
        if watching:
            members = self.hub.presence.add_watcher(conn, key)
            conn.session.send(
                frames.dispatch(channel.id, "PRESENCE", {"presence": members}, unicast=True)
            )
        elif presence:
            conn.session.send(
                frames.error_dispatch(
                    channel.id, "forbidden", "presence needs a connection with a token"
                )
            )
        conn.flush()
        if hold is not None and since is not None:
            # "No history" is said only to a client that claims a position in one.
            await recover(
                self.hub, self.service, hold, since, report_no_history=since.epoch is not None
            )
            conn.flush()
