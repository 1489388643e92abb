"""The async client's project resources: its settings and its webhooks (Switchboard's own).

:class:`AsyncSettingsAPI` is ``sb.settings``, :class:`AsyncWebhooksAPI` ``sb.webhooks``.
Source of :mod:`switchboard._rest._project_sync` (``python -m switchboard._rest._unasync``).
"""

from __future__ import annotations

from collections.abc import Iterable

from switchboard._rest import _project as project
from switchboard._rest import _webhooks as webhooks
from switchboard._rest._project import ProjectSettings
from switchboard._rest._transport_async import AsyncTransport
from switchboard._rest._webhooks import WebhookConfig, WebhookDelivery

__all__ = ["AsyncSettingsAPI", "AsyncWebhooksAPI"]


class AsyncSettingsAPI:
    """The project's settings (Switchboard's own): ``sb.settings``."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def get(self) -> ProjectSettings:
        return await self._transport.send(project.get_settings())

    async def set_history(self, size: int, *, ttl: int | None = None) -> ProjectSettings:
        """The history channels created without their own keep: the last ``size``
        messages (0: none, even if the server has a default), at most ``ttl`` seconds
        old (300 if not given). Existing channels are not changed."""
        return await self._transport.send(project.set_history_default(size, ttl))

    async def clear_history(self) -> ProjectSettings:
        """Remove the project's default: new channels take the server's again."""
        return await self._transport.send(project.clear_history_default())

    async def set_inbox(self, size: int, *, ttl: int | None = None) -> ProjectSettings:
        """Token inboxes (docs/inbox.md): each token keeps its last ``size`` direct
        messages (0: off), at most ``ttl`` seconds old (300 if not given), and
        ``DIRECT_MESSAGE`` carries their offsets. Turning them on starts a new epoch;
        new bounds keep it."""
        return await self._transport.send(project.set_inbox(size, ttl))

    async def clear_inbox(self) -> ProjectSettings:
        """Turn token inboxes off (the default): the kept direct messages are dropped."""
        return await self._transport.send(project.set_inbox(None, None))


class AsyncWebhooksAPI:
    """The project's webhooks (Switchboard's own): ``sb.webhooks``. Every call needs a
    project token with every permission; docs/webhooks.md."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def get(self) -> WebhookConfig | None:
        """The configuration (its secret only by hint), or None if there is none."""
        return await self._transport.send(webhooks.get_webhooks())

    async def set(
        self,
        url: str | None = None,
        *,
        events: Iterable[str] | None = None,
        authorize_url: str | None = None,
    ) -> WebhookConfig:
        """Replace the configuration. The first one's answer carries ``secret``, the
        signing secret, once; later ones keep it. ``events`` absent: the four lifecycle
        events (``token.online``/``offline``, ``channel.occupied``/``vacated``)."""
        return await self._transport.send(webhooks.set_webhooks(url, events, authorize_url))

    async def delete(self) -> None:
        await self._transport.send(webhooks.delete_webhooks())

    async def rotate_secret(self) -> str:
        """A new signing secret; the old one stops signing at once."""
        return await self._transport.send(webhooks.rotate_webhook_secret())

    async def deliveries(self, limit: int = 50) -> list[WebhookDelivery]:
        """The last delivery attempts, newest first."""
        return await self._transport.send(webhooks.webhook_deliveries(limit))
