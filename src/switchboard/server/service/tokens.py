"""Leap tokens: create, read, update, delete, direct messages, online."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from switchboard.exceptions import (
    InvalidRequest,
    StaleAccess,
)
from switchboard.server import ids
from switchboard.server.broker import events as ev
from switchboard.server.clock import format_iso, now_iso, parse_iso
from switchboard.server.history import INBOX_KEY, MAX_PAGE, HistoryPage, StreamPosition
from switchboard.server.models import (
    UNCHANGED,
    Project,
    Token,
    Unchanged,
)
from switchboard.server.service._base import ServiceBase


class TokenOperations(ServiceBase):
    """The REST API's token operations."""

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
        await self.store.drop_inbox(project.id, token_id)

    async def direct_message(
        self,
        project: Project,
        token_id: str,
        event: str,
        data: msgspec.Raw,
        *,
        access_generation: int | None = None,
    ) -> StreamPosition | None:
        """Send a direct message to the token's connections; with the project's inboxes
        on, keep it in the token's inbox first and return its position (the
        ``DIRECT_MESSAGE`` carries it). Every way of sending one comes through here.

        ``access_generation``: the caller's project-token lookup was a cached one
        (``authenticate(deferred=True)``), checked here; raises StaleAccess (nothing
        sent, this node's cache of the project dropped) if a revocation made it stale.
        """
        self._check_event(event)
        self._check_size(data, "message data")
        message = ev.DirectMessage(project.id, token_id, event, data)
        route = self.broker.store_route(message)
        try:
            if route is not None:
                # On one Redis: the checks, the inbox and the publish in one script. What
                # it learns of the inbox setting is kept as _inbox_append keeps it.
                generation = self.no_history.generation
                position = await self.store.append_inbox_and_publish(
                    project.id,
                    token_id,
                    event,
                    data,
                    generation=access_generation,
                    route=route,
                )
                if position is None:
                    self.no_history.add((project.id, INBOX_KEY), generation)
            else:
                position = await self._direct(project, message, access_generation)
        except StaleAccess:
            self.forget_access(project.id)
            raise
        self.rest_direct_messages += 1
        return position

    async def _direct(
        self, project: Project, message: ev.DirectMessage, access_generation: int | None
    ) -> StreamPosition | None:
        """:meth:`direct_message` one store call at a time, then the broker's publish."""
        stale = (
            access_generation is not None
            and await self.store.project_generation(project.id) != access_generation
        )
        if stale:
            raise StaleAccess("the project's tokens changed")
        await self._token(project, message.token_id)
        position = await self._inbox_append(
            project.id, message.token_id, message.event, message.data
        )
        if position is not None:
            message = msgspec.structs.replace(message, offset=position.offset, epoch=position.epoch)
        await self.broker.publish(message)
        return position

    async def read_inbox(
        self, project: Project, token_id: str, *, since: int, limit: int
    ) -> HistoryPage:
        """The token's kept direct messages after offset ``since``. Raises NotFound, or
        InvalidRequest when the project keeps no inboxes."""
        if since < 0:
            raise InvalidRequest("since must be 0 or an offset")
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be 1 to {MAX_PAGE}")
        await self._token(project, token_id)
        page = await self.store.read_inbox(project.id, token_id, since, limit)
        if page is None:
            raise InvalidRequest(
                'this project keeps no token inboxes (PATCH /v1/settings {"inbox": …})'
            )
        return page

    async def is_online(self, token_id: str) -> bool:
        return await self.broker.token_connections(token_id) > 0
