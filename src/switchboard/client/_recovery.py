"""History recovery on the realtime client (Switchboard's; ``docs/protocol.md``, "History
recovery").

The client remembers, per channel that keeps history, the last position it saw: the
``offset`` and ``epoch`` of the last ``MESSAGE`` (or of the ``RECOVERY`` that reported
where the history stood). After a reconnect it asks for what came after that position:
for a token's durable channels in ``IDENTIFY`` (``recover``), since they come back in
``INIT`` without a SUBSCRIBE; for the others in the SUBSCRIBE that joins them again
(``since``). The server replays the missed messages (``MESSAGE`` with ``u: true``) to
the same listeners as live ones, then says how it went (``RECOVERY``); if the gap
cannot be filled (too old, another epoch) the listeners of :meth:`on_recovery_failed`
are called so that the app reloads its state. A message the client already has (same
epoch, at or below the position held, or one of the few seen past it) is not delivered
twice.

The position held is the last offset up to which the client has *every* message: live
copies may arrive out of offset order (in a cluster two nodes publish to one channel or
token; each message takes its offset in the store before its event goes out), so a
message past a hole is remembered apart and the position moves once the hole fills. A
reconnect then asks from the hole, and the replay brings what had not arrived yet. A
hole that stays open past :data:`MAX_AHEAD` messages (a message that will never come
live) is given up: the position jumps to the oldest message seen past it.

The token's inbox (docs/inbox.md) is held the same way under :data:`INBOX`
(``"$inbox"``), the key IDENTIFY's ``recover`` names it by: the last ``DIRECT_MESSAGE``
with an offset sets it, and a reconnect replays the direct messages after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from switchboard.client._events import DirectMessage, Message, Recovery
from switchboard.client._listeners import Listeners, Remove
from switchboard.client._wire import INBOX

__all__ = ["HistoryRecovery", "Positions", "StreamPosition"]

StreamPosition = tuple[str, int]
"""``(epoch, offset)``: the last message up to which a client has seen every message of a
channel with history (or of its inbox)."""

MAX_AHEAD = 1024
"""Messages remembered past a hole in the offsets before the hole is given up."""


class Positions:
    """The last position seen per channel, with no I/O (see the module docstring)."""

    def __init__(self, enabled: bool, held: dict[str, StreamPosition] | None = None) -> None:
        self.enabled = enabled
        self._at: dict[str, StreamPosition] = dict(held or {})
        """Channel → its position; ``held`` seeds it (an earlier client's positions)."""
        self._without: set[str] = set()
        """Channels the server said keep no history: not asked again."""
        self._ahead: dict[str, set[int]] = {}
        """Channel → offsets seen past a hole after its position (same epoch)."""

    def get(self, channel: str) -> StreamPosition | None:
        return self._at.get(channel)

    def snapshot(self) -> dict[str, StreamPosition]:
        return dict(self._at)

    def forget(self, channel: str) -> None:
        self._at.pop(channel, None)
        self._ahead.pop(channel, None)
        self._without.discard(channel)

    def identify_map(self) -> dict[str, Any] | None:
        """IDENTIFY's ``recover``: every position held (``{}`` still asks for positions)."""
        if not self.enabled:
            return None
        return {c: {"offset": o, "epoch": e} for c, (e, o) in sorted(self._at.items())}

    def since(self, channel: str) -> dict[str, Any] | None:
        """SUBSCRIBE's ``since`` for a channel this connection does not hold yet."""
        if not self.enabled or channel in self._without:
            return None
        at = self._at.get(channel)
        return {"offset": at[1], "epoch": at[0]} if at else {"offset": 0, "epoch": None}

    def accept(self, message: Message | DirectMessage) -> bool:
        """Record a MESSAGE's (or a DIRECT_MESSAGE's, under :data:`INBOX`) position;
        False if it is one already seen (a duplicate)."""
        if message.offset is None or message.epoch is None:
            return True
        key = message.channel if isinstance(message, Message) else INBOX
        self._without.discard(key)
        at = self._at.get(key)
        if at is None or at[0] != message.epoch:
            # The first message seen (or a new epoch): the position starts at it.
            self._at[key] = (message.epoch, message.offset)
            self._ahead.pop(key, None)
            return True
        if message.offset <= at[1]:
            return False
        if message.offset == at[1] + 1:
            self._at[key] = (at[0], self._past(key, message.offset))
            return True
        ahead = self._ahead.setdefault(key, set())
        if message.offset in ahead:
            return False
        ahead.add(message.offset)
        if len(ahead) > MAX_AHEAD:  # the hole will not fill: give it up
            self._at[key] = (at[0], self._past(key, min(ahead)))
        return True

    def _past(self, key: str, offset: int) -> int:
        """The position once every message up to ``offset`` is seen: past the messages
        already seen beyond it, as far as they run without a hole."""
        ahead = self._ahead.get(key)
        if ahead:
            while offset + 1 in ahead:
                offset += 1
            for seen in [o for o in ahead if o <= offset]:
                ahead.discard(seen)
            if not ahead:
                del self._ahead[key]
        return offset

    def on_recovery(self, event: Recovery) -> None:
        if event.reason == "no_history":
            self._without.add(event.channel)
            self._at.pop(event.channel, None)
            return
        if event.epoch is None or event.top_offset is None:
            return  # the server could not read it (unavailable): keep, ask next time
        at = self._at.get(event.channel)
        if not event.recovered or at is None or at[0] != event.epoch or at[1] < event.top_offset:
            # A failed recovery starts again from where the history is now; a successful
            # one holds every message up to the top.
            if at is not None and at[0] != event.epoch:
                self._ahead.pop(event.channel, None)
            self._at[event.channel] = (event.epoch, self._past(event.channel, event.top_offset))


class HistoryRecovery:
    """The recovery side of :class:`~switchboard.client.Client`: the positions held, and
    the listeners told how each recovery went."""

    def __init__(self, positions: Positions) -> None:
        self._positions = positions
        self._failed_listeners: Listeners[None] = Listeners()
        self._listeners: Listeners[str] = Listeners()

    def on_recovery_failed(self, callback: Callable[[str, str], Any]) -> Remove:
        return self._failed_listeners.add(None, callback)

    def on_recovery(self, channel: str, callback: Callable[[Recovery], Any]) -> Remove:
        if not isinstance(channel, str) or not channel:
            raise TypeError("channel must be a non-empty str")
        return self._listeners.add(channel, callback)

    def accept(self, message: Message | DirectMessage) -> bool:
        """Record a MESSAGE's or DIRECT_MESSAGE's position; False if it is one already
        seen (a recovery's replay overlapping the live stream)."""
        return self._positions.accept(message)

    def handle(self, event: Recovery) -> None:
        had_position = self._positions.get(event.channel) is not None
        self._positions.on_recovery(event)
        self._listeners.emit(event.channel, event)
        # No history on a channel never seen with one is no loss; on one that had it
        # (history turned off since), the gap cannot be filled.
        if not event.recovered and (event.reason != "no_history" or had_position):
            self._failed_listeners.emit(None, event.channel, event.reason or "")
