"""`Service`: every operation and every access rule, in one place.

The REST API and the gateway both call this; neither re-implements a rule. Methods
take the caller's project (already authenticated) and plain values, check them against
the limits, change the store, then tell every node through the broker.

Rules of channel types (SPEC §1):

- ``unprotected``: anyone who knows the ID may subscribe, with a token or without.
- ``public``: any connection identified with a token of the project.
- ``private``: only tokens granted a subscription (``PUT .../subscribers/:token``).
- A project-scope connection (IDENTIFY with a project token) may subscribe to any channel;
  its token needs ``read_channels`` to IDENTIFY and ``publish_channel_messages`` to publish.

Which REST route needs which project-token permission is one table
(``switchboard.server.permissions``), checked where a REST call is authenticated.

A token's subscriptions are durable, whichever way they were made; a tokenless or
project-scope connection's last as long as the connection.
"""

from __future__ import annotations

import hmac
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from switchboard.exceptions import (
    Forbidden,
    InvalidRequest,
    MissingPermission,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
)
from switchboard.server import ids, permissions
from switchboard.server.broker import Broker
from switchboard.server.broker import events as ev
from switchboard.server.clock import format_iso, now_iso, parse_iso
from switchboard.server.config import Limits
from switchboard.server.history import MAX_PAGE, HistoryPage, HistoryPolicy, check_policy
from switchboard.server.models import (
    EMPTY_STATE,
    Access,
    Channel,
    ChannelType,
    Page,
    Project,
    Token,
)
from switchboard.server.permissions import ALL, NONE, Permission
from switchboard.server.presence import NodePresence, member_id
from switchboard.server.store import UNCHANGED, Store, Unchanged

SORT_FIELDS = ("created_at", "id")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a Leap connection is, once IDENTIFY succeeded."""

    project: Project
    token: Token | None
    scope: str
    """``token``, ``project`` (identified with a project token) or ``noauth``."""
    permissions: Permission = NONE
    """The project token's permissions, for scope ``project``; none otherwise."""

    @property
    def token_id(self) -> str | None:
        return self.token.id if self.token is not None else None


@dataclass(frozen=True, slots=True)
class Subscription:
    """The answer to a SUBSCRIBE: the channel, or why not."""

    channel: Channel | None
    error_code: str | None = None
    """``NOT_GRANTED`` or ``UNKNOWN`` when ``channel`` is None."""


def is_json_object(raw: msgspec.Raw) -> bool:
    """True if already-validated JSON bytes hold an object."""
    return bytes(raw).lstrip()[:1] == b"{"


def expired(token: Token, now: datetime | None = None) -> bool:
    if token.expires_at is None:
        return False
    return parse_iso(token.expires_at) <= (now or datetime.now(UTC))


class Service:
    """See the module docstring."""

    def __init__(self, store: Store, broker: Broker, limits: Limits) -> None:
        self.store = store
        self.broker = broker
        self.limits = limits
        self._projects: dict[str, Project] = {}
        # Messages accepted through this node, counted once each after the broker took
        # them (never per recipient): metrics read them through stats().
        self.rest_messages = 0
        self.rest_direct_messages = 0
        self.client_messages = 0

    def stats(self) -> dict[str, int]:
        """Messages this node accepted: REST channel and direct messages, client MESSAGEs."""
        return {
            "rest_messages": self.rest_messages,
            "rest_direct_messages": self.rest_direct_messages,
            "client_messages": self.client_messages,
        }

    def _shared(self, project: Project) -> Project:
        """One Project object per project for every connection (a copy each costs memory).

        The store stays the authority: a changed record replaces the shared one.
        """
        shared = self._projects.get(project.id)
        if shared != project:
            self._projects[project.id] = shared = project
        return shared

    # Checks shared by REST and gateway.

    def _check_state(self, state: msgspec.Raw | None, what: str) -> msgspec.Raw:
        if state is None:
            return EMPTY_STATE
        if not is_json_object(state):
            raise InvalidRequest(f"{what} must be a JSON object")
        self._check_size(state, what)
        return state

    def _check_size(self, data: msgspec.Raw, what: str) -> None:
        limit = self.limits.max_payload_bytes
        if len(data) > limit:
            raise PayloadTooLarge(f"{what} is {len(data)} bytes; the limit is {limit}")

    def _check_event(self, event: str) -> None:
        if not 1 <= len(event) <= self.limits.max_event_name:
            raise InvalidRequest(f"event name must be 1 to {self.limits.max_event_name} characters")

    @staticmethod
    def check_channel_id(channel_id: str) -> None:
        if channel_id in ids.RESERVED_CHANNEL_IDS:
            raise InvalidRequest(f"channel ID {channel_id!r} is reserved")
        if not ids.is_valid_channel_id(channel_id):
            raise InvalidRequest("channel ID must be 1 to 128 characters of A-Z a-z 0-9 _ . : @ -")

    async def _channel(self, project: Project, channel_id: str) -> Channel:
        channel = await self.store.get_channel(project.id, channel_id)
        if channel is None:
            raise NotFound(f"no channel {channel_id!r} in this project")
        return channel

    async def _require_channel(self, project: Project, channel_id: str) -> None:
        """Like :meth:`_channel` where only existence matters: the state is not read."""
        if not await self.store.channel_exists(project.id, channel_id):
            raise NotFound(f"no channel {channel_id!r} in this project")

    async def _token(self, project: Project, token_id: str) -> Token:
        token = await self.store.get_token(project.id, token_id)
        if token is None:
            raise NotFound(f"no token {ids.redact(token_id)!r} in this project")
        return token

    # Authentication.

    async def authenticate(self, secret: str | None) -> Access:
        """The project a project token belongs to and its permissions. Raises Unauthorized."""
        if not secret or not secret.startswith(ids.PROJECT_TOKEN_PREFIX):
            raise Unauthorized("a project token (ptk_…) is required in the Authorization header")
        secret_hash = ids.hash_secret(secret)
        # One read: the token's project, if the token exists and is not revoked. Nothing
        # is cached, so a revocation (from any node, or the command line) applies to the
        # very next call.
        access = await self.store.find_project_by_token(secret_hash)
        # The lookup is by hash, so timing says nothing about the secret; compare anyway
        # so that the decision itself is constant-time.
        if access is None or not hmac.compare_digest(secret_hash, ids.hash_secret(secret)):
            raise Unauthorized("unknown or revoked project token")
        return access

    # Projects (command line).

    async def create_project(self, name: str) -> tuple[Project, str]:
        """Create a project and its first project token; return both (the secret, once)."""
        if not 1 <= len(name) <= 128:
            raise InvalidRequest("project name must be 1 to 128 characters")
        project = await self.store.create_project(name)
        secret = await self.create_project_token(project.id)
        return project, secret

    async def create_project_token(self, project_id: str, permissions: Permission = ALL) -> str:
        """Create a project token with ``permissions``; return its secret (shown once)."""
        if not permissions & ALL:
            raise InvalidRequest("a project token needs at least one permission")
        secret = ids.new_project_token()
        await self.store.add_project_token(
            project_id, ids.hash_secret(secret), ids.secret_hint(secret), permissions & ALL
        )
        return secret

    # Channels.

    async def create_channel(
        self,
        project: Project,
        channel_type: str,
        channel_id: str | None = None,
        state: msgspec.Raw | None = None,
        history: HistoryPolicy | Unchanged | None = UNCHANGED,
    ) -> Channel:
        """Create a channel; ``history`` None keeps none, UNCHANGED takes the server's
        default (``Limits.history_size``, off unless set)."""
        try:
            kind = ChannelType(channel_type)
        except ValueError:
            raise InvalidRequest(
                f"unknown channel type {channel_type!r}; use private, public or unprotected"
            ) from None
        if channel_id is None:
            channel_id = ids.new_channel_id()
        else:
            self.check_channel_id(channel_id)
        channel = Channel(
            project.id, channel_id, kind, self._check_state(state, "state"), now_iso()
        )
        if isinstance(history, Unchanged):
            history = check_policy(self.limits.history_size, self.limits.history_ttl_s)
        channel = await self.store.create_channel(channel)
        if history is not None:
            # A second write: a publish in between keeps no history, and nobody can
            # hold an offset of this channel yet, so nothing is missed.
            await self.store.set_history_policy(project.id, channel.id, history)
        return channel

    async def read_history(
        self, project: Project, channel_id: str, *, since: int, limit: int
    ) -> HistoryPage:
        """The kept messages after offset ``since``. Raises NotFound, or InvalidRequest
        when the channel keeps no history."""
        if since < 0:
            raise InvalidRequest("since must be 0 or an offset")
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be 1 to {MAX_PAGE}")
        page = await self.store.read_history(project.id, channel_id, since, limit)
        if page is None:
            raise InvalidRequest(f"channel {channel_id!r} keeps no history")
        return page

    async def get_channel(self, project: Project, channel_id: str) -> Channel:
        return await self._channel(project, channel_id)

    async def list_channels(
        self, project: Project, *, page: int, page_size: int, sort_by: str, descending: bool
    ) -> Page:
        if page < 1:
            raise InvalidRequest("page starts at 1")
        if not 1 <= page_size <= 1000:
            raise InvalidRequest("pageSize must be 1 to 1000")
        if sort_by not in SORT_FIELDS:
            raise InvalidRequest(f"sortBy must be one of {', '.join(SORT_FIELDS)}")
        return await self.store.list_channels(
            project.id,
            offset=(page - 1) * page_size,
            limit=page_size,
            sort_by=sort_by,
            descending=descending,
        )

    async def delete_channel(self, project: Project, channel_id: str) -> None:
        await self.store.delete_channel(project.id, channel_id)
        await self.broker.publish(ev.ChannelDeleted(project.id, channel_id))

    async def get_state(self, project: Project, channel_id: str) -> msgspec.Raw:
        return (await self._channel(project, channel_id)).state

    async def set_state(self, project: Project, channel_id: str, state: msgspec.Raw) -> None:
        state = self._check_state(state, "state")
        await self.store.set_channel_state(project.id, channel_id, state)
        await self.broker.publish(ev.ChannelStateChanged(project.id, channel_id, state))

    async def patch_state(self, project: Project, channel_id: str, partial: msgspec.Raw) -> None:
        partial = self._check_state(partial, "state")
        new_state = await self.store.patch_channel_state(
            project.id,
            channel_id,
            msgspec.json.decode(partial, type=dict[str, Any]),
            self.limits.max_payload_bytes,
        )
        await self.broker.publish(ev.ChannelStateChanged(project.id, channel_id, new_state))

    async def publish_message(
        self, project: Project, channel_id: str, event: str, data: msgspec.Raw
    ) -> None:
        self._check_event(event)
        self._check_size(data, "message data")
        # The channel's existence check and, with history, the append and its offset.
        position = await self.store.append_message(project.id, channel_id, event, data)
        await self.broker.publish(
            ev.ChannelMessage(
                project.id,
                channel_id,
                event,
                data,
                offset=position.offset if position else None,
                epoch=position.epoch if position else None,
            )
        )
        self.rest_messages += 1

    async def subscribe_token(self, project: Project, channel_id: str, token_id: str) -> None:
        channel = await self._channel(project, channel_id)
        await self._token(project, token_id)
        if await self.store.add_subscription(project.id, channel_id, token_id):
            await self.broker.publish(
                ev.TokenSubscribed(
                    project.id, token_id, channel_id, channel.type.value, channel.state
                )
            )

    async def remove_token(self, project: Project, channel_id: str, token_id: str) -> None:
        await self._require_channel(project, channel_id)
        await self._token(project, token_id)
        if await self.store.remove_subscription(project.id, channel_id, token_id):
            await self.broker.publish(ev.TokenUnsubscribed(project.id, token_id, channel_id))

    async def channel_tokens(self, project: Project, channel_id: str) -> list[Token]:
        await self._require_channel(project, channel_id)
        return await self.store.channel_tokens(project.id, channel_id)

    async def online_count(self, project: Project, channel_id: str) -> int:
        await self._require_channel(project, channel_id)
        return await self.broker.channel_connections(project.id, channel_id)

    async def presence(self, project: Project, channel_id: str) -> dict[str, Any]:
        """Who is subscribed to the channel, cluster-wide (``GET .../presence``'s data)."""
        await self._require_channel(project, channel_id)
        shares, states = await self.presence_snapshot(project.id, channel_id)
        counts: Counter[str] = Counter()
        tokenless = 0
        for share in shares.values():
            counts.update(share.tokens)
            tokenless += share.tokenless
        # A token deleted a moment ago has no state: its sockets are closing, leave it out.
        present = [(t, n) for t, n in sorted(counts.items()) if t in states]
        return {
            "presence": [
                {"token_id": t, "member_id": member_id(t), "state": states[t], "connections": n}
                for t, n in present
            ],
            "tokenless_connections": tokenless,
            "total_connections": tokenless + sum(n for _, n in present),
        }

    async def presence_snapshot(
        self, project_id: str, channel_id: str
    ) -> tuple[dict[str, NodePresence], dict[str, msgspec.Raw]]:
        """Every node's share of the channel's presence, and the present tokens' states."""
        shares = await self.broker.channel_presence(project_id, channel_id)
        present = {t for share in shares.values() for t in share.tokens}
        if not present:
            return shares, {}
        # One read for the usual case: a present token is subscribed (durably) to the
        # channel. One that is not (its grant removed a moment ago) is read by itself.
        subscribed = await self.store.channel_tokens(project_id, channel_id)
        states = {t.id: t.state for t in subscribed if t.id in present}
        for token_id in present - states.keys():
            token = await self.store.get_token(project_id, token_id)
            if token is not None:
                states[token_id] = token.state
        return shares, states

    # Tokens.

    def _expiry(self, value: str | None, *, allow_past: bool) -> str | None:
        if value is None:
            return None
        try:
            moment = parse_iso(value)
        except ValueError:
            raise InvalidRequest(f"expires_at {value!r} is not an ISO 8601 timestamp") from None
        if not allow_past and moment <= datetime.now(UTC):
            raise InvalidRequest("expires_at must be in the future")
        return format_iso(moment)

    async def create_token(
        self, project: Project, state: msgspec.Raw | None = None, expires_at: str | None = None
    ) -> Token:
        token = Token(
            project.id,
            ids.new_leap_token(),
            self._check_state(state, "token state"),
            now_iso(),
            self._expiry(expires_at, allow_past=False),
        )
        return await self.store.create_token(token)

    async def get_token(self, project: Project, token_id: str) -> Token:
        return await self._token(project, token_id)

    async def list_tokens(self, project: Project) -> list[Token]:
        return await self.store.list_tokens(project.id)

    async def update_token(
        self,
        project: Project,
        token_id: str,
        *,
        state: msgspec.Raw | Unchanged | None = UNCHANGED,
        expires_at: str | Unchanged | None = UNCHANGED,
    ) -> Token:
        """Replace the token's state and/or move its expiry (a past one cuts it off now)."""
        new_state: msgspec.Raw | Unchanged = (
            state if isinstance(state, Unchanged) else self._check_state(state, "token state")
        )
        new_expiry: str | Unchanged | None = (
            expires_at
            if isinstance(expires_at, Unchanged)
            else self._expiry(expires_at, allow_past=True)
        )
        token = await self.store.update_token(
            project.id, token_id, state=new_state, expires_at=new_expiry
        )
        await self.broker.publish(
            ev.TokenUpdated(
                project.id,
                token.id,
                token.state,
                token.expires_at,
                state_changed=not isinstance(new_state, Unchanged),
            )
        )
        return token

    async def delete_token(self, project: Project, token_id: str) -> None:
        await self.store.delete_token(project.id, token_id)
        await self.broker.publish(ev.TokenDeleted(project.id, token_id))

    async def direct_message(
        self, project: Project, token_id: str, event: str, data: msgspec.Raw
    ) -> None:
        self._check_event(event)
        self._check_size(data, "message data")
        await self._token(project, token_id)
        await self.broker.publish(ev.DirectMessage(project.id, token_id, event, data))
        self.rest_direct_messages += 1

    async def is_online(self, token_id: str) -> bool:
        return await self.broker.token_connections(token_id) > 0

    # The gateway's side.

    async def identify(self, project_id: str, secret: str | None) -> Identity:
        """Check an IDENTIFY. Raises Unauthorized (close 4001) or RateLimited (4000)."""
        project = await self.store.get_project(project_id)
        if project is None:
            raise Unauthorized("unknown project")
        project = self._shared(project)
        if secret is None:
            return Identity(project, None, "noauth")
        if secret.startswith(ids.PROJECT_TOKEN_PREFIX):
            access = await self.authenticate(secret)
            if access.project.id != project.id:
                raise Unauthorized("the project token belongs to another project")
            # A project-scope connection exists to subscribe, which reads channels; a
            # token that may not read them is refused here, not at every SUBSCRIBE.
            if not permissions.allows(access.permissions, permissions.LEAP_SUBSCRIBE):
                raise Unauthorized(
                    "the project token lacks the read_channels permission, "
                    "which a project-scope connection needs"
                )
            return Identity(project, None, "project", access.permissions)
        token = await self.store.get_token_any_project(secret)
        if token is None or token.project_id != project.id:
            raise Unauthorized("unknown token")
        if expired(token):
            raise Unauthorized("token expired")
        if await self.broker.token_connections(token.id) >= self.limits.max_connections_per_token:
            raise RateLimited(
                f"token has {self.limits.max_connections_per_token} connections already"
            )
        return Identity(project, token, "token")

    async def token_subscriptions(self, identity: Identity) -> list[Channel]:
        if identity.token is None:
            return []
        return await self.store.token_channels(identity.project.id, identity.token.id)

    async def subscribe(self, identity: Identity, channel_id: str, origin_cid: str) -> Subscription:
        """Decide a SUBSCRIBE; record it durably for a token (SPEC §3)."""
        project = identity.project
        channel = (
            await self.store.get_channel(project.id, channel_id)
            if ids.is_valid_channel_id(channel_id)
            else None
        )
        if channel is None:
            return Subscription(None, "UNKNOWN")
        token = identity.token
        if identity.scope == "project" or (
            channel.type is ChannelType.UNPROTECTED and token is None
        ):
            return Subscription(channel)
        if token is None:
            return Subscription(None, "NOT_GRANTED")
        if channel.type is ChannelType.PRIVATE:
            granted = await self.store.is_subscribed(project.id, channel_id, token.id)
            return Subscription(channel) if granted else Subscription(None, "NOT_GRANTED")
        if await self.store.add_subscription(project.id, channel_id, token.id):
            await self.broker.publish(
                ev.TokenSubscribed(
                    project.id,
                    token.id,
                    channel_id,
                    channel.type.value,
                    channel.state,
                    origin_cid=origin_cid,
                )
            )
        return Subscription(channel)

    async def unsubscribe(self, identity: Identity, channel_id: str, origin_cid: str) -> None:
        """Drop a subscription; for a token, durably and on all its connections."""
        token = identity.token
        if token is None:
            return
        project_id = identity.project.id
        if await self.store.remove_subscription(project_id, channel_id, token.id):
            await self.broker.publish(
                ev.TokenUnsubscribed(project_id, token.id, channel_id, origin_cid=origin_cid)
            )

    async def client_publish(
        self,
        identity: Identity,
        channel_id: str,
        event: str,
        data: msgspec.Raw,
        origin_cid: str,
    ) -> None:
        """A MESSAGE from a client that is subscribed to ``channel_id``."""
        if identity.scope == "noauth":
            raise Forbidden("only connections identified with a token may publish")
        if identity.scope == "project" and not permissions.allows(
            identity.permissions, permissions.LEAP_PUBLISH
        ):
            raise MissingPermission(
                "the project token lacks the publish_channel_messages permission",
                permission="publish_channel_messages",
            )
        position = await self.store.append_message(identity.project.id, channel_id, event, data)
        await self.broker.publish(
            ev.ChannelMessage(
                identity.project.id,
                channel_id,
                event,
                data,
                exclude_cid=origin_cid,
                offset=position.offset if position else None,
                epoch=position.epoch if position else None,
            )
        )
        self.client_messages += 1
