"""`LeapSteps`: what each Leap request does once the session has accepted it.

The session (``protocol/session.py``) decides what a client's frames mean, without I/O;
this module carries the resulting events out against the service and the hub, one
small step each: identify, subscribe, refresh, unsubscribe, publish. The gateway calls
:meth:`LeapSteps.carry_out` for each event, one at a time per socket, in order.

The rule every step keeps: from the last await to the answer (``INIT``, ``AVAILABLE``)
nothing awaits, so no broadcast can slip in between the join and the answer, and
nothing published after the answer is missed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from switchboard.exceptions import APIError, Unauthorized, Unavailable
from switchboard.server import ids
from switchboard.server.broker.topics import channel_topic, token_topic
from switchboard.server.edge.presence_watch import start_watch
from switchboard.server.edge.recovery import recover
from switchboard.server.edge.socket import SocketConnection
from switchboard.server.fanout.holds import Hold
from switchboard.server.fanout.hub import Hub
from switchboard.server.history import INBOX_KEY
from switchboard.server.models import Channel
from switchboard.server.protocol import frames
from switchboard.server.protocol.frames import CloseCode, Since
from switchboard.server.protocol.session import (
    ClientPublish,
    Identify,
    RefreshToken,
    Subscribe,
    Unsubscribe,
)
from switchboard.server.service import Identity, Service

log = logging.getLogger("switchboard.gateway")

IDENTIFY_AT_ONCE = 32
"""IDENTIFYs looked up at the same time; the others wait their turn. A connect storm
(every client of a restarted node at once) then queues here instead of taking every
connection of the Redis pool and failing those that find none free within its timeout
(1,000 token sockets at once: closed 4000 before, all identified now)."""

TOPIC_WAIT_S = 5.0
"""How long a step waits for the broker to hear a topic before it gives up (Redis away)."""


class LeapSteps:
    """The service-facing half of the Leap protocol (see the module docstring)."""

    def __init__(self, service: Service, hub: Hub) -> None:
        self.service = service
        self.hub = hub
        self._identifying = asyncio.Semaphore(IDENTIFY_AT_ONCE)

    async def carry_out(self, conn: SocketConnection, event: Any) -> None:
        """Carry out one session event; a refused request is answered with ``ERROR``."""
        try:
            if isinstance(event, Identify):
                await self.identify(conn, event)
            elif isinstance(event, Subscribe):
                await self.subscribe(conn, event.channel, event.presence, event.since)
            elif isinstance(event, RefreshToken):
                await self.refresh(conn, event)
            elif isinstance(event, Unsubscribe):
                await self.unsubscribe(conn, event)
            elif isinstance(event, ClientPublish):
                await self.publish(conn, event)
        except APIError as exc:
            channel = getattr(event, "channel", None)
            conn.session.send(frames.error_dispatch(channel, exc.code, exc.message))

    # IDENTIFY.

    async def identify(self, conn: SocketConnection, event: Identify) -> None:
        async with self._identifying:
            if not conn.closing:
                await self._identify_watched(conn, event)

    async def _identify_watched(self, conn: SocketConnection, event: Identify) -> None:
        token = event.token
        if not token:
            return await self._identify(conn, event)
        # A deletion of the token during the lookups below closes this socket (the hub
        # knows it only once it is attached): the soak found sockets that outlived it.
        self.hub.watch_token(conn, token)
        try:
            # The token's topic is heard before the token is looked up: a deletion
            # published from then on reaches this socket (broker/topics.py).
            async with self.hub.topics.listening([token_topic(token)], TOPIC_WAIT_S):
                await self._identify(conn, event)
        except Unavailable as exc:
            conn.session.close(CloseCode.UNKNOWN_ERROR, exc.message)  # the client retries
        finally:
            self.hub.unwatch_token(conn, token)

    async def _identify(self, conn: SocketConnection, event: Identify) -> None:
        identity = await self._look_up(conn, event)
        if identity is None:
            return
        channels = await self.service.token_subscriptions(identity)
        count = 1
        if identity.token is not None:
            # Counted before this connection is attached, hence the + 1.
            count = await self.service.broker.token_connections(identity.token.id) + 1
        if conn.closing:
            return
        # INIT's channels are heard before INIT is sent: nothing published after it is missed.
        topics = [channel_topic(c.project_id, c.id) for c in channels]
        async with self.hub.topics.listening(topics, TOPIC_WAIT_S):
            if conn.closing:
                return
            holds = self._attach(conn, identity, channels, count, event)
        log.info(
            "connection identified",
            extra={
                "cid": conn.cid,
                "project": conn.project_id,
                "scope": conn.scope,
                "token": ids.redact(conn.token_id),
            },
        )
        await self._recover_all(conn, holds, event.recover or {})

    async def _look_up(self, conn: SocketConnection, event: Identify) -> Identity | None:
        """The identity IDENTIFY asks for, or None with the session closed and why."""
        try:
            return await self.service.identify(event.project_id, event.token)
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
            conn.session.close(CloseCode.INVALID_AUTH, exc.message)
        except APIError as exc:
            # Too many connections for the token, or the store is unreachable: the
            # client may retry, so not 4001.
            conn.session.close(CloseCode.UNKNOWN_ERROR, exc.message)
        return None

    def _attach(
        self,
        conn: SocketConnection,
        identity: Identity,
        channels: list[Channel],
        count: int,
        event: Identify,
    ) -> list[Hold]:
        """Attach, join the token's channels and queue ``INIT``, with no await: no
        broadcast can slip in ahead of the INIT. Returns the holds of a recovery."""
        metadata = identity.token.state if identity.token is not None else None
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
        if event.recover is not None and identity.token is not None:
            # And the token's inbox (docs/inbox.md), recovered after the channels.
            holds.append(self.hub.hold_inbox(conn))
        if identity.token is not None:
            if event.expiry_notice_s is not None:
                conn.want_expiry_notice(event.expiry_notice_s)
            conn.expiry_changed(identity.token.expires_at)
        init_channels = [
            frames.leap_channel(c.project_id, c.id, c.type.value, c.state) for c in channels
        ]
        conn.session.accept(
            {
                "cid": conn.cid,
                "connection_count": count,
                "metadata": metadata,
                "scope": identity.scope,
                "channels": init_channels,
            }
        )
        conn.flush()
        return holds

    async def _recover_all(
        self, conn: SocketConnection, holds: list[Hold], positions: dict[str, Since]
    ) -> None:
        """IDENTIFY ``recover``: each INIT channel's history after its position, in turn."""
        try:
            for hold in holds:
                if conn.closing:
                    break
                since = positions.get(INBOX_KEY if hold.inbox else hold.channel_id)
                # "No history" is said only to a client that claims a position in one.
                claimed = since is not None and since.epoch is not None
                await recover(self.hub, self.service, hold, since, report_no_history=claimed)
                conn.flush()
        finally:
            for hold in holds:
                self.hub.release(hold, [], None, None)  # those not reached (idempotent)

    # SUBSCRIBE and UNSUBSCRIBE.

    async def subscribe(
        self, conn: SocketConnection, channel_id: str, presence: bool, since: Since | None = None
    ) -> None:
        assert conn.identity is not None
        result = await self.service.subscribe(conn.identity, channel_id, conn.cid)
        if conn.closing:
            return
        channel = result.channel
        if channel is None:
            assert result.error_code is not None
            conn.session.send(frames.subscribe_refused(channel_id, result.error_code))
            return
        # Presence shows who is there, with their tokens' state: not to anonymous visitors.
        watching = presence and conn.scope != "noauth"
        key = (channel.project_id, channel.id)
        # The channel's topic is heard before AVAILABLE (and before a presence snapshot,
        # whose events meanwhile must reach the watch): nothing after them is missed.
        async with self.hub.topics.listening([channel_topic(*key)], TOPIC_WAIT_S):
            if watching:
                await start_watch(self.hub.presence, self.service, key)
                if conn.closing:
                    self.hub.presence.release(key)
                    return
            hold = self._join(conn, channel, watching, presence, since)
        if hold is not None and since is not None:
            # "No history" is said only to a client that claims a position in one.
            claimed = since.epoch is not None
            await recover(self.hub, self.service, hold, since, report_no_history=claimed)
            conn.flush()

    def _join(
        self,
        conn: SocketConnection,
        channel: Channel,
        watching: bool,
        presence: bool,
        since: Since | None,
    ) -> Hold | None:
        """Join and answer ``AVAILABLE`` (and ``PRESENCE``) with no await in between: no
        broadcast can slip ahead of AVAILABLE. Returns the hold of a recovery."""
        self.hub.join(conn, channel.id)
        # Recovery: held from the join, so nothing live comes between AVAILABLE and the replay.
        hold = self.hub.hold(conn, channel.id) if since is not None else None
        conn.session.send(
            frames.available(
                channel.project_id, channel.id, channel.type.value, channel.state, unicast=True
            )
        )
        if watching:
            members = self.hub.presence.add_watcher(conn, (channel.project_id, channel.id))
            conn.session.send(frames.presence_members(channel.id, members))
        elif presence:
            conn.session.send(
                frames.error_dispatch(
                    channel.id, "forbidden", "presence needs a connection with a token"
                )
            )
        conn.flush()
        return hold

    async def unsubscribe(self, conn: SocketConnection, event: Unsubscribe) -> None:
        assert conn.identity is not None
        self.hub.leave(conn, event.channel)
        await self.service.unsubscribe(conn.identity, event.channel, conn.cid)

    # MESSAGE and TOKEN_REFRESH.

    async def publish(self, conn: SocketConnection, event: ClientPublish) -> None:
        assert conn.identity is not None
        if event.channel not in conn.channels:
            conn.session.send(
                frames.error_dispatch(
                    event.channel, "forbidden", "subscribe to the channel before publishing"
                )
            )
            return
        await self.service.client_publish(
            conn.identity, event.channel, event.event, event.data, conn.cid
        )

    async def refresh(self, conn: SocketConnection, event: RefreshToken) -> None:
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
