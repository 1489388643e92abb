"""The async server SDK: :class:`AsyncSwitchboard`.

This file is the source of :mod:`switchboard._rest._sync_api`, which
``python -m switchboard._rest._unasync`` writes from it; edit this one, then run that.
So are its parts, each the source of its ``_sync`` twin: ``_channels_async``
(``sb.channels``), ``_tokens_async`` (``sb.channels.tokens``), ``_project_async``
(``sb.settings``, ``sb.webhooks``) and ``_transport_async`` (HTTP, with retries).
Requests are built and answers read in the call modules (:mod:`switchboard._rest._calls`
and the resources' modules beside it); these modules only carry them over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from switchboard._rest import _batch
from switchboard._rest._batch import Batch, BatchResult
from switchboard._rest._calls import ChannelRef, TokenRef
from switchboard._rest._channels_async import AsyncChannelsAPI
from switchboard._rest._project_async import AsyncSettingsAPI, AsyncWebhooksAPI
from switchboard._rest._settings import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_RETRIES,
    DEFAULT_RETRY_BACKOFF,
    DEFAULT_TIMEOUT,
    Settings,
    TimeoutTypes,
)
from switchboard._rest._transport_async import AsyncTransport

__all__ = ["AsyncSwitchboard"]


class AsyncSwitchboard:
    """The server SDK: everything a backend does with the server API.

    Use it as a context manager, or call :meth:`aclose` when done::

        async with AsyncSwitchboard("ptk_…", base_url="http://localhost:4000") as sb:
            token = await sb.channels.tokens.create({"user_id": "42"})

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
        http_client: an ``httpx.AsyncClient`` to use (proxies, TLS, transports); it
            is not closed by :meth:`aclose`.

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
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise TypeError("http_client must be an httpx.AsyncClient")
        settings = Settings.create(
            project_token,
            base_url,
            project=project,
            timeout=timeout,
            max_retries=max_retries,
            retry_backoff=retry_backoff,
        )
        self._transport = AsyncTransport(settings, http_client)
        self.channels = AsyncChannelsAPI(self._transport)
        """Channels, and their tokens under ``channels.tokens``."""
        self.settings = AsyncSettingsAPI(self._transport)
        """The project's settings: the default history of new channels."""
        self.webhooks = AsyncWebhooksAPI(self._transport)
        """The project's webhook configuration and delivery log."""

    async def broadcast(
        self,
        event: str,
        data: Any = None,
        *,
        channels: Iterable[ChannelRef] = (),
        tokens: Iterable[TokenRef] = (),
        idempotency_key: str | None = None,
    ) -> BatchResult:
        """Send one message to up to 1,000 channels and 1,000 tokens (direct messages) in
        one request (Switchboard's own; docs/batch.md).

        The result has one item per target, channels first: a target that failed (no
        such channel, say) carries its error and does not raise. With
        ``idempotency_key``, a retry within 5 minutes is answered as the first time
        (``duplicate``) and sends nothing; the client may then retry it by itself.
        """
        return await self._transport.send(
            _batch.broadcast(event, data, channels, tokens, idempotency_key)
        )

    async def batch(
        self, operations: Batch | Iterable[Mapping[str, Any]], *, parallel: bool = False
    ) -> BatchResult:
        """Carry out up to 1,000 operations in one request (Switchboard's own;
        docs/batch.md): a :class:`~switchboard.Batch`, or a list of dicts in the wire
        form (``{"op": "publish", "channel": …, "e": …, "d": …}``).

        In order unless ``parallel``; one result per operation, and a failing one does
        not stop the others (nor raise: see :meth:`BatchResult.raise_for_errors`).
        """
        return await self._transport.send(_batch.batch(operations, parallel))

    @property
    def base_url(self) -> str:
        """The server's root URL."""
        return self._transport.settings.base_url

    async def aclose(self) -> None:
        """Close the HTTP connections (unless ``http_client`` was given)."""
        await self._transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"
