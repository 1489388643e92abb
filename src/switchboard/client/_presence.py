"""Presence on the realtime client: who is on a channel, and listeners for joins and leaves.

Switchboard's own extension (Hop has no presence). ``client.subscribe(channel,
presence=True)`` asks the server for it; the server answers with who is there
(``PRESENCE``) and then sends ``PRESENCE_JOIN`` / ``PRESENCE_LEAVE`` as tokens come and
go, cluster-wide. :class:`PresenceTracker` keeps the members per channel from those
dispatches and calls the listeners; :class:`~switchboard.client.Client` owns one.
After a reconnect the client asks again (see ``_subscriptions.py``) and the new
``PRESENCE`` replaces what it held, so joins and leaves missed while away are not lost
from the view (the listeners are not called for them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from switchboard.client._events import Member, PresenceJoin, PresenceLeave, PresenceSnapshot
from switchboard.client._listeners import Listeners, Remove

__all__ = ["PresenceEvent", "PresenceTracker"]

PresenceEvent = PresenceJoin | PresenceLeave
"""What a presence listener is called with."""


class PresenceTracker:
    """The members of the channels this client watches, and the presence listeners."""

    def __init__(self) -> None:
        self._listeners: Listeners[str] = Listeners()
        self._members: dict[str, dict[str, Member]] = {}

    def members(self, channel: str) -> list[Member]:
        return [m for _, m in sorted(self._members.get(channel, {}).items())]

    def on_presence(self, channel: str, callback: Callable[[PresenceEvent], Any]) -> Remove:
        if not isinstance(channel, str) or not channel:
            raise TypeError("channel must be a non-empty str")
        return self._listeners.add(channel, callback)

    def handle(self, event: PresenceSnapshot | PresenceJoin | PresenceLeave) -> None:
        if isinstance(event, PresenceSnapshot):
            self._members[event.channel] = {m.member_id: m for m in event.members}
            return
        members = self._members.setdefault(event.channel, {})
        if isinstance(event, PresenceJoin):
            members[event.member.member_id] = event.member
        else:
            members.pop(event.member.member_id, None)
        self._listeners.emit(event.channel, event)

    def forget(self, channel: str) -> None:
        """The channel ended (UNAVAILABLE): nobody is known on it any more."""
        self._members.pop(channel, None)
