"""Channels: create, read, state, publish, history, grants, online counts and presence."""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec

from switchboard.exceptions import (
    InvalidRequest,
    StaleAccess,
)
from switchboard.server import ids
from switchboard.server.broker import events as ev
from switchboard.server.broker.events import NodePresence
from switchboard.server.clock import now_iso
from switchboard.server.history import MAX_PAGE, HistoryPage, HistoryPolicy
from switchboard.server.ids import member_id
from switchboard.server.models import (
    UNCHANGED,
    Channel,
    ChannelType,
    Page,
    Project,
    Token,
    Unchanged,
)
from switchboard.server.service._base import SORT_FIELDS
from switchboard.server.service.settings import SettingsOperations


class ChannelOperations(SettingsOperations):
    """The REST API's channel operations."""

    async def create_channel(
        self,
        project: Project,
        channel_type: str,
        channel_id: str | None = None,
        state: msgspec.Raw | None = None,
        history: HistoryPolicy | Unchanged | None = UNCHANGED,
    ) -> Channel:
        """Create a channel; ``history`` None keeps none, UNCHANGED takes the project's
        default, else the server's (``Limits.history_size``, off unless set)."""
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
        history = await self.new_channel_history(project, history)
        channel = await self.store.create_channel(channel)
        if history is not None:
            # A second write: a publish in between keeps no history, and nobody can
            # hold an offset of this channel yet, so nothing is missed.
            await self.store.set_history_policy(project.id, channel.id, history)
            await self._history_changed(project.id, channel.id)
        return channel

    async def _history_changed(self, project_id: str, channel_id: str) -> None:
        """After a policy change: forget, here at once and on every node, that the
        channel kept none."""
        self.no_history.forget((project_id, channel_id))
        await self.broker.publish(ev.HistoryChanged(project_id, channel_id))

    async def channel_and_history(
        self, project: Project, channel_id: str
    ) -> tuple[Channel, HistoryPolicy | None]:
        """The channel and its history policy (None: it keeps none). Raises NotFound."""
        channel = await self._channel(project, channel_id)
        policies = await self.store.history_policies(project.id, [channel_id])
        return channel, policies.get(channel_id)

    async def history_policies(
        self, project: Project, channels: list[Channel]
    ) -> dict[str, HistoryPolicy]:
        """The policies of those of ``channels`` that keep history, in one read."""
        return await self.store.history_policies(project.id, [c.id for c in channels])

    async def update_channel(
        self,
        project: Project,
        channel_id: str,
        *,
        history: HistoryPolicy | Unchanged | None = UNCHANGED,
    ) -> tuple[Channel, HistoryPolicy | None]:
        """Change a channel's settings (today its history policy); return the channel and
        its policy. Raises NotFound.

        New bounds keep the epoch and the kept messages (trimmed at the next publish);
        None drops them, and history turned on again starts a new epoch.
        """
        if not isinstance(history, Unchanged):
            await self.store.set_history_policy(project.id, channel_id, history)
            await self._history_changed(project.id, channel_id)
        return await self.channel_and_history(project, channel_id)

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
        self,
        project: Project,
        channel_id: str,
        event: str,
        data: msgspec.Raw,
        *,
        access_generation: int | None = None,
    ) -> None:
        """Publish to a channel. ``access_generation``: the caller's project-token lookup
        was a cached one (``authenticate(deferred=True)``), checked here by the store;
        raises StaleAccess (nothing published, this node's cache of the project dropped)
        if a revocation made it stale."""
        self._check_event(event)
        self._check_size(data, "message data")
        message = ev.ChannelMessage(project.id, channel_id, event, data)
        # On Redis the store's one script checks, appends and publishes (one round trip).
        route = self.broker.store_route(message)
        # The channel's existence check and, with history, the append and its offset.
        try:
            position = await self._append(
                project.id,
                channel_id,
                event,
                data,
                trusted=False,
                access_generation=access_generation,
                route=route,
            )
        except StaleAccess:
            self.forget_access(project.id)
            raise
        if route is None:
            if position is not None:
                message = msgspec.structs.replace(
                    message, offset=position.offset, epoch=position.epoch
                )
            await self.broker.publish(message)
        self.rest_messages += 1
        if self.webhooks is not None:
            self.webhooks.message_published(
                project.id,
                channel_id,
                event,
                data,
                source="rest",
                offset=position.offset if position else None,
            )

    async def subscribe_token(self, project: Project, channel_id: str, token_id: str) -> None:
        channel = await self._channel(project, channel_id)
        await self._token(project, token_id)
        if await self.store.add_subscription(project.id, channel_id, token_id):
            # Returns once the token's live sockets are on the channel, on every node: a
            # message the backend publishes next reaches them (docs/scaling.md).
            await self.broker.publish_grant(
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
