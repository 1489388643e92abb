"""Presence on the realtime client: who is on a channel, and listeners for joins and leaves.

Switchboard's own extension (Hop has no presence). ``client.subscribe(channel,
presence=True)`` asks the server for it; the server answers with who is there
(``PRESENCE``) and then sends ``PRESENCE_JOIN`` / ``PRESENCE_LEAVE`` as tokens come and
go, cluster-wide. :class:`PresenceTracking` keeps the members per channel from those
dispatches and calls the listeners; :class:`~switchboard.client.Client` mixes it in.
After a reconnect the client asks again (see ``_subscriptions.py``) and the new
``PRESENCE`` replaces what it held, so joins and leaves missed while away are not lost
from the view (the listeners are not called for them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from switchboard.client._events import Member, PresenceJoin, PresenceLeave, PresenceSnapshot
from switchboard.client._listeners import Listeners, Remove

__all__ = ["PresenceEvent", "PresenceTracking"]

PresenceEvent = PresenceJoin | PresenceLeave
"""What a presence listener is called with."""


class PresenceTracking:
    """The members of the channels this client watches, and the presence listeners."""

    def _init_presence(self) -> None:
        self._presence_listeners: Listeners[str] = Listeners()
        self._members: dict[str, dict[str, Member]] = {}

    def members(self, channel: str) -> list[Member]:
        """Who is on ``channel`` (subscribed with ``presence=True``), by member ID.

        Empty for a channel this client does not watch. Tokenless connections are never
        members.
        """
        return [m for _, m in sorted(self._members.get(channel, {}).items())]

    def on_presence(self, channel: str, callback: Callable[[PresenceEvent], Any]) -> Remove:
        """Call ``callback(event)`` with each :class:`~switchboard.client.PresenceJoin` and
        :class:`~switchboard.client.PresenceLeave` on ``channel``.

        Only for channels subscribed with ``presence=True``.
        """
        if not isinstance(channel, str) or not channel:
            raise TypeError("channel must be a non-empty str")
        return self._presence_listeners.add(channel, callback)

    def _on_presence(self, event: PresenceSnapshot | PresenceJoin | PresenceLeave) -> None:
        if isinstance(event, PresenceSnapshot):
            self._members[event.channel] = {m.member_id: m for m in event.members}
            return
        members = self._members.setdefault(event.channel, {})
        if isinstance(event, PresenceJoin):
            members[event.member.member_id] = event.member
        else:
            members.pop(event.member.member_id, None)
        self._presence_listeners.emit(event.channel, event)

    def _forget_presence(self, channel: str) -> None:
        self._members.pop(channel, None)
