# Generated from _channels_async.py by `python -m switchboard._rest._unasync`. Do not edit:
# edit _channels_async.py and run that command again (a test fails while they differ).
"""The sync client's channels: :class:`ChannelsAPI`, ``sb.channels``.

Generated from :mod:`switchboard._rest._channels_async`; see there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from switchboard._rest import _channel_calls as calls
from switchboard._rest._calls import ChannelRef, State, TokenRef
from switchboard._rest._models import Channel, ChannelType, History, Stats, Token
from switchboard._rest._presence import ChannelPresence, channel_presence
from switchboard._rest._tokens_sync import TokensAPI
from switchboard._rest._transport_sync import Transport

__all__ = ["ChannelsAPI"]

StateAction = State | Callable[[dict[str, Any]], State]
"""A new state, or a function from the current state to the new one."""


class ChannelsAPI:
    """Channels of the project: ``sb.channels``."""

    def __init__(self, transport: Transport) -> None:
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
            calls.create_channel(type, id, state, history_size, history_ttl)
        )

    def get(self, channel: ChannelRef) -> Channel:
        """Read a channel. Raises :class:`~switchboard.NotFound` if there is none."""
        return self._transport.send(calls.get_channel(channel))

    def get_all(self) -> list[Channel]:
        """Every channel of the project, oldest first (reads page after page)."""
        found: list[Channel] = []
        seen: set[str] = set()
        page = 1
        while True:
            batch = self._transport.send(calls.list_channels(page))
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
        self._transport.send(calls.delete_channel(channel))

    def get_state(self, channel: ChannelRef) -> dict[str, Any]:
        """The channel's current state."""
        return self._transport.send(calls.get_channel_state(channel))

    def set_state(self, channel: ChannelRef, state: StateAction) -> None:
        """Replace the channel's state; every subscriber gets ``STATE_UPDATE``.

        ``state`` may be a function of the current state, as in Hop's SDK: it is read
        first, then replaced (not atomically).
        """
        if callable(state):
            state = state(self.get_state(channel))
        self._transport.send(calls.set_channel_state(channel, state))

    def patch_state(self, channel: ChannelRef, partial: StateAction) -> None:
        """Merge ``partial``'s top-level keys into the channel's state.

        ``partial`` may be a function of the current state, as in :meth:`set_state`.
        """
        if callable(partial):
            partial = partial(self.get_state(channel))
        self._transport.send(calls.patch_channel_state(channel, partial))

    def publish_message(
        self,
        channel: ChannelRef,
        event: str,
        data: Any = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        """Send ``MESSAGE`` ``{e: event, d: data}`` to every subscriber of the channel.

        ``idempotency_key`` (Switchboard's own): a retry with the same key within 5
        minutes is not published again (docs/batch.md); with one, the call is retried
        after a timeout like an idempotent one."""
        self._transport.send(calls.publish_message(channel, event, data, idempotency_key))

    def subscribe_token(self, channel: ChannelRef, token: TokenRef) -> None:
        """Grant a token a durable subscription; its live connections get ``AVAILABLE``."""
        self._transport.send(calls.subscribe_token(channel, token))

    def subscribe_tokens(self, channel: ChannelRef, tokens: Iterable[TokenRef]) -> None:
        """:meth:`subscribe_token` for each token. Every one is tried; then the first
        failure, if any, is raised."""
        self._transport.send_all(calls.subscribe_tokens(channel, tokens))

    def remove_token(self, channel: ChannelRef, token: TokenRef) -> None:
        """Remove a token's subscription; its live connections get ``UNAVAILABLE``."""
        self._transport.send(calls.remove_token(channel, token))

    def remove_tokens(self, channel: ChannelRef, tokens: Iterable[TokenRef]) -> None:
        """:meth:`remove_token` for each token. Every one is tried; then the first
        failure, if any, is raised."""
        self._transport.send_all(calls.remove_tokens(channel, tokens))

    def get_all_tokens(self, channel: ChannelRef) -> list[Token]:
        """The tokens subscribed to the channel."""
        return self._transport.send(calls.channel_tokens(channel))

    def get_messages(self, channel: ChannelRef, since: int = 0, limit: int = 100) -> History:
        """The channel's kept messages with an offset above ``since``, oldest first, up
        to ``limit`` (1 to 1000), and where its history stands (epoch, top offset).

        Raises:
            InvalidRequest: the channel keeps no history.
        """
        return self._transport.send(calls.channel_history(channel, since, limit))

    def set_history(self, channel: ChannelRef, size: int, ttl: int | None = None) -> Channel:
        """Change what history the channel keeps (Switchboard's own, not Hop's); return
        the channel, with its new ``history``.

        Args:
            size: messages kept (1 to 10 000); 0 keeps none and drops those kept.
            ttl: seconds a kept message stays (the server's default: 300).

        New bounds keep the history's epoch and its messages; turning history off and
        on again starts a new epoch.
        """
        return self._transport.send(calls.set_channel_history(channel, size, ttl))

    def get_stats(self, channel: ChannelRef) -> Stats:
        """Live numbers of the channel: ``stats.online_count``."""
        return self._transport.send(calls.channel_stats(channel))

    def presence(self, channel: ChannelRef) -> ChannelPresence:
        """Who is subscribed to the channel, cluster-wide: each token present with its
        state and connection count, and how many connections have no token.

        Switchboard's own (Hop has no presence). Needs ``read_leap_tokens``: it lists
        token IDs.
        """
        return self._transport.send(channel_presence(channel))
