"""The gateway's side: IDENTIFY, the subscriptions in INIT, SUBSCRIBE, UNSUBSCRIBE, MESSAGE."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from switchboard.exceptions import (
    Forbidden,
    MissingPermission,
    RateLimited,
    Unauthorized,
)
from switchboard.server import ids, permissions
from switchboard.server.broker import events as ev
from switchboard.server.models import (
    Channel,
    ChannelType,
    Project,
    Token,
)
from switchboard.server.permissions import NONE, Permission
from switchboard.server.service._base import expired
from switchboard.server.service.projects import ProjectOperations


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


class LeapOperations(ProjectOperations):
    """What a Leap connection asks of the service."""

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
            if await self.store.is_subscribed(project.id, channel_id, token.id):
                return Subscription(channel)
            # Not granted by the backend: the app's subscribe hook may still say yes, for
            # this connection only (it grants nothing durable).
            if self.webhooks is not None and await self.webhooks.authorize(
                project, channel_id, token, origin_cid
            ):
                return Subscription(channel)
            return Subscription(None, "NOT_GRANTED")
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
        project_id = identity.project.id
        message = ev.ChannelMessage(project_id, channel_id, event, data, exclude_cid=origin_cid)
        # A channel known to keep no history costs no store call: the broker's publish
        # alone. Any other, on one Redis: one script appends and publishes (one round trip).
        known_plain = (project_id, channel_id) in self.no_history
        route = None if known_plain else self.broker.store_route(message)
        position = await self._append(
            project_id, channel_id, event, data, trusted=route is None, route=route
        )
        if route is None:
            if position is not None:
                message = msgspec.structs.replace(
                    message, offset=position.offset, epoch=position.epoch
                )
            await self.broker.publish(message)
        self.client_messages += 1
        if self.webhooks is not None:
            self.webhooks.message_published(
                identity.project.id,
                channel_id,
                event,
                data,
                source="client",
                token_id=identity.token_id,
                offset=position.offset if position else None,
            )
