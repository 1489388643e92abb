"""The async client's tokens: :class:`AsyncTokensAPI`, ``sb.channels.tokens``.

Source of :mod:`switchboard._rest._tokens_sync` (``python -m switchboard._rest._unasync``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from switchboard._rest import _token_calls as calls
from switchboard._rest._calls import State, TokenRef
from switchboard._rest._models import History, Token
from switchboard._rest._transport_async import AsyncTransport

__all__ = ["AsyncTokensAPI"]


class AsyncTokensAPI:
    """Tokens of the project: ``sb.channels.tokens``."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def create(
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
        return await self._transport.send(calls.create_token(state, expires_at))

    async def get(self, token: TokenRef) -> Token:
        """Read a token. Raises :class:`~switchboard.NotFound` if there is none."""
        return await self._transport.send(calls.get_token(token))

    async def get_all(self) -> list[Token]:
        """Every token of the project."""
        return await self._transport.send(calls.list_tokens())

    async def set_state(self, token: TokenRef, state: State) -> Token:
        """Replace a token's state; its live connections get ``TOKEN_STATE_UPDATE``."""
        return await self._transport.send(calls.set_token_state(token, state))

    async def delete(self, token: TokenRef) -> None:
        """Delete a token. Its live connections are closed with 4001."""
        await self._transport.send(calls.delete_token(token))

    async def is_online(self, token: TokenRef) -> bool:
        """True while at least one connection identified with the token is live.

        Always asks the server, even when given a :class:`Token` read earlier.
        """
        found = await self._transport.send(calls.get_token(token))
        return found.is_online

    async def publish_direct_message(
        self,
        token: TokenRef,
        event: str,
        data: Any = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        """Send ``DIRECT_MESSAGE`` ``{e: event, d: data}`` to every connection of a token.

        ``idempotency_key``: as for ``channels.publish_message``."""
        await self._transport.send(calls.direct_message(token, event, data, idempotency_key))

    async def get_messages(self, token: TokenRef, since: int = 0, limit: int = 100) -> History:
        """The token's kept direct messages with an offset above ``since``, oldest first,
        up to ``limit`` (1 to 1000), and where its inbox stands (epoch, top offset).
        Switchboard's own: the project's token inboxes must be on
        (``sb.settings.set_inbox``).

        Raises:
            InvalidRequest: the project keeps no token inboxes.
            NotFound: no such token in the project.
        """
        return await self._transport.send(calls.token_inbox(token, since, limit))
