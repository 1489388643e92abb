"""History reads for a live connection: what a reconnecting client missed on a channel,
or in its token's inbox.

The gateway asks this only for a channel the connection is subscribed to at that moment
(SUBSCRIBE's own access rule already admitted it: a token's grant or durable
subscription, a public or unprotected channel), so no project token is involved: a
client holds a leap token or nothing. See ``docs/protocol.md``, "History recovery".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from switchboard.server.history import INBOX_KEY, MAX_PAGE, HistoryMessage, HistoryPage
from switchboard.server.protocol.frames import Since
from switchboard.server.service._base import ServiceBase

_BEYOND_ANY_OFFSET = 2**53
"""A ``since`` past every offset: a read that only says where the history stands."""


@dataclass(frozen=True, slots=True)
class Recovery:
    """The answer to a recovery: the missed messages, or why they cannot be had."""

    recovered: bool
    epoch: str | None
    """The channel's epoch now (None: the channel keeps no history)."""
    top: int | None
    """The latest offset given when the read began (None without history)."""
    messages: list[HistoryMessage] = field(default_factory=list)
    """In offset order; empty unless ``recovered``."""
    reason: str | None = None
    """When not recovered: ``no_history``, ``epoch_changed``, ``too_old`` or ``offset_ahead``."""

    @property
    def through(self) -> int | None:
        """The offset the client holds once the replay is sent: a live message at or
        below it is one it has (a duplicate); None when nothing can be deduplicated."""
        if not self.recovered or self.top is None:
            return None
        return max(self.top, self.messages[-1].offset) if self.messages else self.top


class HistoryReads(ServiceBase):
    """Reading a channel's history for a connection that recovers (see the module docstring)."""

    async def recover_history(
        self, project_id: str, channel_id: str, since: Since | None
    ) -> Recovery:
        """The messages after ``since`` in its epoch, every page of them, or why not.

        ``since`` None or without an epoch: the client has no position yet; the answer
        is where the history stands, with no messages. Raises NotFound if the channel
        is gone.
        """

        async def read(after: int, limit: int) -> HistoryPage | None:
            return await self.store.read_history(project_id, channel_id, after, limit)

        return await _recover(read, since)

    async def recover_inbox(self, project_id: str, token_id: str, since: Since | None) -> Recovery:
        """As :meth:`recover_history`, for the token's inbox (docs/inbox.md); reason
        ``no_history`` when the project keeps no inboxes, with no store read when the
        node knows it (every Python client's reconnect asks)."""
        key = (project_id, INBOX_KEY)
        if key in self.no_history:
            return Recovery(False, None, None, reason="no_history")
        generation = self.no_history.generation

        async def read(after: int, limit: int) -> HistoryPage | None:
            page = await self.store.read_inbox(project_id, token_id, after, limit)
            if page is None:
                self.no_history.add(key, generation)
            return page

        return await _recover(read, since)


async def _recover(
    read: Callable[[int, int], Awaitable[HistoryPage | None]], since: Since | None
) -> Recovery:
    """A recovery over ``read(since, limit)``, a channel's history or a token's inbox."""
    known = since is not None and since.epoch is not None
    first_since = since.offset if known and since is not None else _BEYOND_ANY_OFFSET
    page = await read(first_since, MAX_PAGE if known else 1)
    if page is None:
        return Recovery(False, None, None, reason="no_history")
    if not known or since is None:
        return Recovery(True, page.epoch, page.top)
    if since.epoch != page.epoch:
        return Recovery(False, page.epoch, page.top, reason="epoch_changed")
    if since.offset > page.top:
        return Recovery(False, page.epoch, page.top, reason="offset_ahead")
    if since.offset < page.first - 1:
        return Recovery(False, page.epoch, page.top, reason="too_old")
    messages = list(page.messages)
    target = page.top
    # Page on up to the top the first read saw; what comes after it is live (held
    # by the hub for this connection meanwhile, see Hub.hold).
    while messages and messages[-1].offset < target and len(page.messages) == MAX_PAGE:
        page_after = await read(messages[-1].offset, MAX_PAGE)
        if page_after is None or page_after.epoch != page.epoch:
            return Recovery(
                False,
                None if page_after is None else page_after.epoch,
                target,
                reason="epoch_changed",
            )
        page = page_after
        messages.extend(page.messages)
    if messages and messages[0].offset != since.offset + 1:
        # Trimmed between the bounds check and the read: the start is gone.
        return Recovery(False, page.epoch, target, reason="too_old")
    return Recovery(True, page.epoch, target, messages)
