"""Token lifecycle on the realtime client: refreshing an expiring token without dropping
the socket (Switchboard's; ``docs/protocol.md``, "Token refresh").

With ``get_token`` the client asks the server (IDENTIFY ``expiry_notice``) to say when
the token is about to expire (``TOKEN_EXPIRING``), then calls ``get_token()``, which
asks the app's backend for the token to use: the same token with its expiry moved
(``PATCH /v1/channels/tokens/:id {expires_at}``) is sent on the open socket
(``TOKEN_REFRESH``); another token is a new identity, so the client reconnects with it
(a new IDENTIFY). ``get_token`` is also called when the server refuses the token with
4001 (an expiry missed while the machine slept), once, before giving up.
:meth:`Client.refresh <switchboard.client.Client.refresh>` does the same by hand.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from switchboard.client import _wire as wire
from switchboard.client._events import ErrorEvent, TokenExpiring, TokenRefreshed
from switchboard.exceptions import ConnectionClosed, TokenRefreshFailed

__all__ = ["GetToken", "TokenLifecycle"]

log = logging.getLogger("switchboard.client")

GetToken = Callable[[], Awaitable[str] | str]
"""Returns the token to use now: a plain or ``async`` function of no arguments."""


def _parse_expiry(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class TokenLifecycle:
    """The token a :class:`~switchboard.client.Client` identifies with, and its refresh.

    Given at construction what it needs of the client: ``wait_connected()``, ``send(frame)``
    (on the open socket) and ``switch(token)`` (reconnect as another token).
    """

    def __init__(
        self,
        token: str | None,
        get_token: GetToken | None,
        refresh_ahead: float,
        *,
        wait_connected: Callable[[], Awaitable[None]],
        send: Callable[[str], Awaitable[None]],
        switch: Callable[[str], Awaitable[None]],
    ) -> None:
        if get_token is not None and not callable(get_token):
            raise TypeError("get_token must be a function returning the token (or awaitable)")
        if isinstance(refresh_ahead, bool) or not isinstance(refresh_ahead, int | float):
            raise TypeError("refresh_ahead must be seconds")
        if not 0 < refresh_ahead <= 86_400:
            raise ValueError("refresh_ahead must be over 0 and at most 86400 seconds")
        self.token = token
        self.expires_at: datetime | None = None
        """The token's expiry as the server last said (``TOKEN_EXPIRING``,
        ``TOKEN_REFRESHED``); None if not known or it never expires."""
        self._get_token = get_token
        self._refresh_ahead = float(refresh_ahead)
        self._wait_connected = wait_connected
        self._send = send
        self._switch = switch
        self._refresh_lock = asyncio.Lock()
        self._refresh_waiter: asyncio.Future[str | None] | None = None
        self._refresh_task: asyncio.Task[None] | None = None
        self._retried = False
        """get_token was asked after a 4001, and no INIT came since."""

    # The connection's side.

    async def identify(self) -> tuple[str | None, dict[str, Any]]:
        """IDENTIFY's token (from ``get_token`` if there is none yet) and its additions:
        the expiry notice, when the client can act on it."""
        if self.token is None and self._get_token is not None:
            self.token = await self._fetch_token()
        return self.token, (
            {"expiry_notice": self._refresh_ahead} if self._get_token is not None else {}
        )

    def identified(self) -> None:
        """INIT came: a later 4001 may ask ``get_token`` again."""
        self._retried = False

    async def after_refusal(self) -> bool:
        """After a 4001: ask ``get_token`` once for a token to try again with."""
        if self._get_token is None or self._retried:
            return False
        self._retried = True
        try:
            self.token = await self._fetch_token()
        except Exception:
            log.exception("get_token failed after the server refused the token")
            return False
        return True

    def lost(self) -> None:
        """The connection is gone: a refresh waiting for its answer fails."""
        waiter = self._refresh_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionClosed(None, "connection lost before the refresh"))

    async def _fetch_token(self) -> str:
        assert self._get_token is not None
        result = self._get_token()
        token = await result if inspect.isawaitable(result) else result
        if not isinstance(token, str) or not token:
            raise TypeError(f"get_token must return a non-empty str, got {token!r}")
        return token

    # Refreshing (Client.refresh has the documentation).

    async def refresh(self, token: str | None = None) -> datetime | None:
        if token is not None and (not isinstance(token, str) or not token):
            raise TypeError("token must be a non-empty str or None")
        current = self.token
        if token is not None and token != current:
            await self._switch(token)
            return None
        async with self._refresh_lock:
            await self._wait_connected()
            waiter: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
            self._refresh_waiter = waiter
            try:
                await self._send(wire.dispatch(None, "TOKEN_REFRESH", {"token": token or current}))
                expires_at = await waiter
            finally:
                self._refresh_waiter = None
        self.expires_at = _parse_expiry(expires_at)
        return self.expires_at

    def on_token_refreshed(self, event: TokenRefreshed) -> None:
        waiter = self._refresh_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(event.expires_at)

    def on_refresh_error(self, event: ErrorEvent) -> bool:
        """Fail the pending refresh with ``event``; False if it answers something else."""
        if event.request != "TOKEN_REFRESH":
            return False
        waiter = self._refresh_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TokenRefreshFailed(event.code, event.message))
        return True

    def on_token_expiring(self, event: TokenExpiring) -> None:
        self.expires_at = _parse_expiry(event.expires_at)
        if self._get_token is None:
            return
        if self._refresh_task is not None and not self._refresh_task.done():
            return
        self._refresh_task = asyncio.get_running_loop().create_task(self._refresh_by_callback())

    async def _refresh_by_callback(self) -> None:
        try:
            token = await self._fetch_token()
            await self.refresh(token)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The socket is closed with 4001 at the expiry, and get_token is asked
            # again then: nothing is lost but this attempt.
            log.exception("refreshing the token failed")
