"""The part of :class:`Service` every operation shares: dependencies, checks, lookups."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import msgspec

from switchboard.exceptions import (
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
)
from switchboard.server import ids
from switchboard.server.broker import Broker
from switchboard.server.broker.base import StoreRoute
from switchboard.server.clock import parse_iso
from switchboard.server.config import Limits
from switchboard.server.history import INBOX_KEY, NoHistoryCache, StreamPosition
from switchboard.server.models import (
    EMPTY_STATE,
    Access,
    Channel,
    Project,
    Token,
)
from switchboard.server.store import Store

if TYPE_CHECKING:
    from switchboard.server.webhooks import Webhooks

SORT_FIELDS = ("created_at", "id")


def is_json_object(raw: msgspec.Raw) -> bool:
    """True if already-validated JSON bytes hold an object."""
    return bytes(raw).lstrip()[:1] == b"{"


def expired(token: Token, now: datetime | None = None) -> bool:
    if token.expires_at is None:
        return False
    return parse_iso(token.expires_at) <= (now or datetime.now(UTC))


class ServiceBase:
    """What every part of the service shares: the store, the broker, the limits, the checks."""

    def __init__(
        self,
        store: Store,
        broker: Broker,
        limits: Limits,
        *,
        webhooks: Webhooks | None = None,
        no_history: NoHistoryCache | None = None,
    ) -> None:
        self.store = store
        self.broker = broker
        self.limits = limits
        self.webhooks = webhooks
        """Told of every accepted message, and asked about private subscriptions a token
        was not granted (``switchboard.server.webhooks``); None runs without webhooks."""
        self.no_history = NoHistoryCache() if no_history is None else no_history
        """Channels known to keep no history; the node's dispatch shares it, so the
        broker's events keep it right on every node."""
        self._projects: dict[str, Project] = {}
        self._access: dict[str, Access] = {}
        """Project-token lookups by secret hash (``ProjectOperations.authenticate``)."""
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

    def forget_access(self, project_id: str) -> None:
        """Drop this node's cached lookups of the project's tokens (they are stale)."""
        for secret_hash, access in list(self._access.items()):
            if access.project.id == project_id:
                del self._access[secret_hash]

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

    async def _append(
        self,
        project_id: str,
        channel_id: str,
        event: str,
        data: msgspec.Raw,
        *,
        trusted: bool,
        access_generation: int | None = None,
        route: StoreRoute | None = None,
    ) -> StreamPosition | None:
        """Keep a published message if the channel keeps history: its position, or None.

        ``trusted``: the caller knows the channel exists (a client's subscription to it),
        so a channel known to keep no history costs no store read. Otherwise the read is
        the existence check (NotFound), and a channel found to keep none is remembered.
        ``access_generation``: a cached project-token lookup's, checked by the same store
        call (StaleAccess; ``ProjectOperations.authenticate``). ``route``: the broker's
        ``store_route`` of the message, which the store's call then publishes too (the
        caller does not; never with ``trusted``).
        """
        key = (project_id, channel_id)
        if trusted and key in self.no_history:
            return None
        generation = self.no_history.generation
        if route is None:
            position = await self.store.append_message(
                project_id, channel_id, event, data, generation=access_generation
            )
        else:
            position = await self.store.append_and_publish(
                project_id, channel_id, event, data, generation=access_generation, route=route
            )
        if position is None:
            self.no_history.add(key, generation)
        return position

    async def _inbox_append(
        self, project_id: str, token_id: str, event: str, data: msgspec.Raw
    ) -> StreamPosition | None:
        """Keep a direct message in the token's inbox if the project keeps inboxes: its
        position, or None. A project known to keep none costs no store read (its entry
        in the no-history cache, ``INBOX_KEY``, goes when the setting changes)."""
        key = (project_id, INBOX_KEY)
        if key in self.no_history:
            return None
        generation = self.no_history.generation
        position = await self.store.append_inbox(project_id, token_id, event, data)
        if position is None:
            self.no_history.add(key, generation)
        return position

    async def _token(self, project: Project, token_id: str) -> Token:
        token = await self.store.get_token(project.id, token_id)
        if token is None:
            raise NotFound(f"no token {ids.redact(token_id)!r} in this project")
        return token
