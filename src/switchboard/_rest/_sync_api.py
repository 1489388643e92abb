# Generated from _async_api.py by `python -m switchboard._rest._unasync`. Do not edit:
# edit _async_api.py and run that command again (a test fails while they differ).
"""The sync server SDK: :class:`Switchboard`.

Generated from :mod:`switchboard._rest._async_api`; see there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from switchboard._rest import _channel_calls as channel_calls
from switchboard._rest import _io_sync as io
from switchboard._rest import _project as project
from switchboard._rest import _token_calls as token_calls
from switchboard._rest import _webhooks as webhooks
from switchboard._rest._calls import Call, ChannelRef, State, TokenRef
from switchboard._rest._models import Channel, ChannelType, History, Stats, Token
from switchboard._rest._presence import ChannelPresence, channel_presence
from switchboard._rest._project import ProjectSettings
from switchboard._rest._settings import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_RETRIES,
    DEFAULT_RETRY_BACKOFF,
    DEFAULT_TIMEOUT,
    Settings,
    TimeoutTypes,
    unreachable,
)
from switchboard._rest._webhooks import WebhookConfig, WebhookDelivery

__all__ = [
    "ChannelsAPI",
    "SettingsAPI",
    "Switchboard",
    "TokensAPI",
    "WebhooksAPI",
]

T = TypeVar("T")

StateAction = State | Callable[[dict[str, Any]], State]
"""A new state, or a function from the current state to the new one."""


class _Transport:
    """Sends :class:`~switchboard._rest._calls.Call` objects, retrying as the settings say."""

    def __init__(self, settings: Settings, http_client: httpx.Client | None) -> None:
        self.settings = settings
        self._owns_client = http_client is None
        self._http = http_client or httpx.Client(timeout=settings.timeout)
        self._http.headers.update(settings.headers())

    def send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            request = self._http.build_request(**self.settings.request_args(call))
            try:
                response = self._http.send(request)
            except httpx.TransportError as exc:
                delay = self.settings.retry_delay(call, attempt, error=exc)
                if delay is None:
                    raise unreachable(self.settings, call, exc) from exc
            else:
                delay = self.settings.retry_delay(call, attempt, response=response)
                if delay is None:
                    return call.result(response.status_code, response.content)
            attempt += 1
            io.sleep(delay)

    def send_all(self, many: list[Call[Any]]) -> None:
        io.settle(self.send, many)

    def close(self) -> None:
        if self._owns_client:
            self._http.close()


class TokensAPI:
    """Tokens of the project: ``sb.channels.tokens``."""

    def __init__(self, transport: _Transport) -> None:
        self._transport = transport

    def create(
        self,
        state: State | None = None,
        expires_at: datetime | str | None = None,
    ) -> Token:
        """Create a token for one end user.

        Args:
            state: metadata of the token (a JSON object), e.g. ``{"user_id": "42"}``.
                Its connections receive it as ``metadata``.
            expires_at: when the token stops working (a timezone-aware datetime or an
                ISO 8601 string); its live connections are closed then.

        Returns:
            The new token. Hand ``token.id`` to the user's client.
        """
        return self._transport.send(token_calls.create_token(state, expires_at))

    def get(self, token: TokenRef) -> Token:
        """Read a token. Raises :class:`~switchboard.NotFound` if there is none."""
        return self._transport.send(token_calls.get_token(token))

    def get_all(self) -> list[Token]:
        """Every token of the project."""
        return self._transport.send(token_calls.list_tokens())

    def set_state(self, token: TokenRef, state: State) -> Token:
        """Replace a token's state; its live connections get ``TOKEN_STATE_UPDATE``."""
        return self._transport.send(token_calls.set_token_state(token, state))

    def delete(self, token: TokenRef) -> None:
        """Delete a token. Its live connections are closed with 4001."""
        self._transport.send(token_calls.delete_token(token))

    def is_online(self, token: TokenRef) -> bool:
        """True while at least one connection identified with the token is live.

        Always asks the server, even when given a :class:`Token` read earlier.
        """
        found = self._transport.send(token_calls.get_token(token))
        return found.is_online

    def publish_direct_message(self, token: TokenRef, event: str, data: Any = None) -> None:
        """Send ``DIRECT_MESSAGE`` ``{e: event, d: data}`` to every connection of a token."""
        self._transport.send(token_calls.direct_message(token, event, data))


class ChannelsAPI:
    """Channels of the project: ``sb.channels``."""

    def __init__(self, transport: _Transport) -> None:
        self._transport = transport
        self.tokens = TokensAPI(transport)
        """Tokens of the project."""

    def create(
        self,
        type: ChannelType | str,
        id: str | None = None,
        state: State | None = None,
        *,
        history_size: int | None = None,
        history_ttl: int | None = None,
    ) -> Channel:
        """Create a channel.

        Args:
            type: who may subscribe (:class:`~switchboard.ChannelType` or its value).
            id: the channel's ID; ``None`` lets the server generate one.
            state: the initial state (a JSON object), ``{}`` if not given.
            history_size: messages the channel keeps (Switchboard's own, not Hop's):
                ``None`` takes the server's default (off unless set), 0 keeps none.
            history_ttl: seconds a kept message stays (the server's default: 300).

        Raises:
            Conflict: a channel with this ID exists already.
        """
        return self._transport.send(
            channel_calls.create_channel(type, id, state, history_size, history_ttl)
        )

    def get(self, channel: ChannelRef) -> Channel:
        """Read a channel. Raises :class:`~switchboard.NotFound` if there is none."""
        return self._transport.send(channel_calls.get_channel(channel))

    def get_all(self) -> list[Channel]:
        """Every channel of the project, oldest first (reads page after page)."""
        found: list[Channel] = []
        seen: set[str] = set()
        page = 1
        while True:
            batch = self._transport.send(channel_calls.list_channels(page))
            fresh = [c for c in batch.channels if c.id not in seen]
            found += fresh
            seen.update(c.id for c in fresh)
            # Stop on an empty page, at the total, or when a server that does not page
            # sends the same channels again.
            done = not fresh or (batch.total_count is not None and len(found) >= batch.total_count)
            if done:
                return found
            page += 1

    def delete(self, channel: ChannelRef) -> None:
        """Delete a channel; its subscribers get ``UNAVAILABLE {graceful: true}``."""
        self._transport.send(channel_calls.delete_channel(channel))

    def get_state(self, channel: ChannelRef) -> dict[str, Any]:
        """The channel's current state."""
        return self._transport.send(channel_calls.get_channel_state(channel))

    def set_state(self, channel: ChannelRef, state: StateAction) -> None:
        """Replace the channel's state; every subscriber gets ``STATE_UPDATE``.

        ``state`` may be a function of the current state, as in Hop's SDK: it is read
        first, then replaced (not atomically).
        """
        if callable(state):
            state = state(self.get_state(channel))
        self._transport.send(channel_calls.set_channel_state(channel, state))

    def patch_state(self, channel: ChannelRef, partial: StateAction) -> None:
        """Merge ``partial``'s top-level keys into the channel's state.

        ``partial`` may be a function of the current state, as in :meth:`set_state`.
        """
        if callable(partial):
            partial = partial(self.get_state(channel))
        self._transport.send(channel_calls.patch_channel_state(channel, partial))

    def publish_message(self, channel: ChannelRef, event: str, data: Any = None) -> None:
        """Send ``MESSAGE`` ``{e: event, d: data}`` to every subscriber of the channel."""
        self._transport.send(channel_calls.publish_message(channel, event, data))

    def subscribe_token(self, channel: ChannelRef, token: TokenRef) -> None:
        """Grant a token a durable subscription; its live connections get ``AVAILABLE``."""
        self._transport.send(channel_calls.subscribe_token(channel, token))

    def subscribe_tokens(self, channel: ChannelRef, tokens: Iterable[TokenRef]) -> None:
        """:meth:`subscribe_token` for each token. Every one is tried; then the first
        failure, if any, is raised."""
        self._transport.send_all(channel_calls.subscribe_tokens(channel, tokens))

    def remove_token(self, channel: ChannelRef, token: TokenRef) -> None:
        """Remove a token's subscription; its live connections get ``UNAVAILABLE``."""
        self._transport.send(channel_calls.remove_token(channel, token))

    def remove_tokens(self, channel: ChannelRef, tokens: Iterable[TokenRef]) -> None:
        """:meth:`remove_token` for each token. Every one is tried; then the first
        failure, if any, is raised."""
        self._transport.send_all(channel_calls.remove_tokens(channel, tokens))

    def get_all_tokens(self, channel: ChannelRef) -> list[Token]:
        """The tokens subscribed to the channel."""
        return self._transport.send(channel_calls.channel_tokens(channel))

    def get_messages(self, channel: ChannelRef, since: int = 0, limit: int = 100) -> History:
        """The channel's kept messages with an offset above ``since``, oldest first, up
        to ``limit`` (1 to 1000), and where its history stands (epoch, top offset).

        Raises:
            InvalidRequest: the channel keeps no history.
        """
        return self._transport.send(channel_calls.channel_history(channel, since, limit))

    def set_history(self, channel: ChannelRef, size: int, ttl: int | None = None) -> Channel:
        """Change what history the channel keeps (Switchboard's own, not Hop's); return
        the channel, with its new ``history``.

        Args:
            size: messages kept (1 to 10 000); 0 keeps none and drops those kept.
            ttl: seconds a kept message stays (the server's default: 300).

        New bounds keep the history's epoch and its messages; turning history off and
        on again starts a new epoch.
        """
        return self._transport.send(channel_calls.set_channel_history(channel, size, ttl))

    def get_stats(self, channel: ChannelRef) -> Stats:
        """Live numbers of the channel: ``stats.online_count``."""
        return self._transport.send(channel_calls.channel_stats(channel))

    def presence(self, channel: ChannelRef) -> ChannelPresence:
        """Who is subscribed to the channel, cluster-wide: each token present with its
        state and connection count, and how many connections have no token.

        Switchboard's own (Hop has no presence). Needs ``read_leap_tokens``: it lists
        token IDs.
        """
        return self._transport.send(channel_presence(channel))


class SettingsAPI:
    """The project's settings (Switchboard's own): ``sb.settings``."""

    def __init__(self, transport: _Transport) -> None:
        self._transport = transport

    def get(self) -> ProjectSettings:
        return self._transport.send(project.get_settings())

    def set_history(self, size: int, *, ttl: int | None = None) -> ProjectSettings:
        """The history channels created without their own keep: the last ``size``
        messages (0: none, even if the server has a default), at most ``ttl`` seconds
        old (300 if not given). Existing channels are not changed."""
        return self._transport.send(project.set_history_default(size, ttl))

    def clear_history(self) -> ProjectSettings:
        """Remove the project's default: new channels take the server's again."""
        return self._transport.send(project.clear_history_default())


class WebhooksAPI:
    """The project's webhooks (Switchboard's own): ``sb.webhooks``. Every call needs a
    project token with every permission; docs/webhooks.md."""

    def __init__(self, transport: _Transport) -> None:
        self._transport = transport

    def get(self) -> WebhookConfig | None:
        """The configuration (its secret only by hint), or None if there is none."""
        return self._transport.send(webhooks.get_webhooks())

    def set(
        self,
        url: str | None = None,
        *,
        events: Iterable[str] | None = None,
        authorize_url: str | None = None,
    ) -> WebhookConfig:
        """Replace the configuration. The first one's answer carries ``secret``, the
        signing secret, once; later ones keep it. ``events`` absent: the four lifecycle
        events (``token.online``/``offline``, ``channel.occupied``/``vacated``)."""
        return self._transport.send(webhooks.set_webhooks(url, events, authorize_url))

    def delete(self) -> None:
        self._transport.send(webhooks.delete_webhooks())

    def rotate_secret(self) -> str:
        """A new signing secret; the old one stops signing at once."""
        return self._transport.send(webhooks.rotate_webhook_secret())

    def deliveries(self, limit: int = 50) -> list[WebhookDelivery]:
        """The last delivery attempts, newest first."""
        return self._transport.send(webhooks.webhook_deliveries(limit))


class Switchboard:
    """The server SDK: everything a backend does with the server API.

    Use it as a context manager, or call :meth:`close` when done::

        with Switchboard("ptk_…", base_url="http://localhost:4000") as sb:
            token = sb.channels.tokens.create({"user_id": "42"})

    Args:
        project_token: the project's secret (``ptk_…``).
        base_url: the server's root URL (a trailing ``/v1`` is accepted too).
        project: a project ID to send as ``?project=``; only needed with a Hop
            personal access token.
        timeout: seconds per request (or an ``httpx.Timeout``; ``None`` waits forever).
        max_retries: how many times a failed call is sent again. Idempotent calls are
            retried after a network failure or a 502/503/504; every call after a 429 or a
            failure to connect. ``0`` never retries.
        retry_backoff: the first wait between tries, in seconds; it doubles each time,
            with jitter (a ``Retry-After`` header wins).
        http_client: an ``httpx.Client`` to use (proxies, TLS, transports); it
            is not closed by :meth:`close`.

    Every method raises :class:`TypeError` or :class:`ValueError` for bad arguments
    before sending anything, a :class:`~switchboard.APIError` subclass with the
    server's ``code`` and ``message`` when the server refuses, and
    :class:`~switchboard.Unavailable` (code ``unreachable``) when it cannot be reached.
    """

    def __init__(
        self,
        project_token: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        project: str | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_backoff: float = DEFAULT_RETRY_BACKOFF,
        http_client: httpx.Client | None = None,
    ) -> None:
        if http_client is not None and not isinstance(http_client, httpx.Client):
            raise TypeError("http_client must be an httpx.Client")
        settings = Settings.create(
            project_token,
            base_url,
            project=project,
            timeout=timeout,
            max_retries=max_retries,
            retry_backoff=retry_backoff,
        )
        self._transport = _Transport(settings, http_client)
        self.channels = ChannelsAPI(self._transport)
        """Channels, and their tokens under ``channels.tokens``."""
        self.settings = SettingsAPI(self._transport)
        """The project's settings: the default history of new channels."""
        self.webhooks = WebhooksAPI(self._transport)
        """The project's webhook configuration and delivery log."""

    @property
    def base_url(self) -> str:
        """The server's root URL."""
        return self._transport.settings.base_url

    def close(self) -> None:
        """Close the HTTP connections (unless ``http_client`` was given)."""
        self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"
