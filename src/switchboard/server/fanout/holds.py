"""History recovery's holds: a connection's live frames of a channel, held while its
history is replayed, so that each message reaches the client once, in offset order.

:meth:`Holds.hold` takes the connection out of the channel's fan-out set, so the
broadcast path does no per-recipient work for it; what the channel broadcasts
meanwhile is kept on the :class:`Hold`, with each message's offset (once per publish,
never per recipient). :meth:`Holds.release` writes the replay first, then the held
frames, without the ones the replay carries.

A release does not always end the hold. A message is written to the history before its
broadcast reaches the hub (SQLite's group commit, a Redis round trip, another node's
pub/sub), so the replay may carry a message whose live copy is still on its way. Until
a live message past the replay's last offset arrives (or :data:`CATCH_UP_S` passes),
the hold stays in *catch-up*: each live frame is sent on at once, unless the replay had
it; then the connection goes back into the fan-out set. See ``docs/protocol.md``,
"History recovery".

A token's inbox is held the same way (:meth:`Holds.hold_inbox`), under the key
:func:`inbox_key`: the connection stays among its token's connections, and the dispatch
of a direct message leaves out those held (``fanout/dispatch.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from switchboard.server.fanout.connection import Connection
from switchboard.server.history import INBOX_KEY

Key = tuple[str, str]
"""(project ID, channel ID), or a token's inbox (:func:`inbox_key`)."""

INBOX = INBOX_KEY
"""The ``channel_id`` of an inbox hold: not a channel ID (``$`` is not allowed in one)."""


def inbox_key(project_id: str, token_id: str) -> Key:
    """The key of a token's inbox holds, which no channel's can be."""
    return (project_id, f"{INBOX}:{token_id}")


CATCH_UP_S = 5.0
"""How long a released :class:`Hold` waits at most for the live copy of the replay's
last message. Longer than any broadcast takes to follow its history write; the
connection gets every live frame meanwhile, so the wait costs only a per-hold check."""


class Hold:
    """One connection's live frames of one channel, held (see the module docstring)."""

    __slots__ = ("buffer", "channel_id", "conn", "ended", "epoch", "key", "through", "timer")

    def __init__(self, conn: Connection, channel_id: str, key: Key) -> None:
        self.conn = conn
        self.channel_id = channel_id
        """The channel held, or :data:`INBOX` for the connection's token's inbox."""
        self.key = key
        self.buffer: list[tuple[int | None, str | None, bytes]] = []
        """(offset, epoch, payload) of each frame the channel broadcast meanwhile."""
        self.ended = False
        """The subscription ended meanwhile (channel deleted, grant removed, closed)."""
        self.through: int | None = None
        self.epoch: str | None = None
        """Set at the release: the replay's last offset and its epoch (see catch-up)."""
        self.timer: asyncio.TimerHandle | None = None
        """Set in catch-up: ends it after :data:`CATCH_UP_S` whatever arrived."""

    @property
    def catching_up(self) -> bool:
        return self.timer is not None

    @property
    def inbox(self) -> bool:
        return self.channel_id == INBOX

    @property
    def live(self) -> bool:
        """The subscription goes on: not ended, the connection open, and on the channel
        (an inbox lasts as long as the connection)."""
        conn = self.conn
        return (
            not self.ended
            and not conn.closing
            and (self.channel_id == INBOX or self.channel_id in conn.channels)
        )

    def had(self, offset: int | None, epoch: str | None) -> bool:
        """The client has this message already (the replay carried it, or its position)."""
        through = self.through
        return (
            through is not None and offset is not None and offset <= through and epoch == self.epoch
        )

    def passed(self, offset: int | None, epoch: str | None) -> bool:
        """A live message at or past the replay's last one, or of another epoch: what is
        live from here on was never in the replay, so the catch-up can end."""
        through = self.through
        return (
            offset is not None
            and through is not None
            and (epoch != self.epoch or offset >= through)
        )


class Holds:
    """Every hold of this node, by channel. ``rejoin(conn, key)`` puts a connection
    whose hold ended back into the channel's fan-out set (the hub's)."""

    __slots__ = ("_held", "_rejoin")

    def __init__(self, rejoin: Callable[[Connection, Key], None]) -> None:
        self._held: dict[Key, list[Hold]] = {}
        self._rejoin = rejoin

    def __bool__(self) -> bool:
        """Any hold at all: the broadcast path asks this once per publish."""
        return bool(self._held)

    def holding(self, key: Key, conn: Connection) -> bool:
        return any(h.conn is conn for h in self._held.get(key, ()))

    def of(self, key: Key) -> list[Hold]:
        """The holds of one channel, as a copy (ending one changes the list)."""
        return list(self._held.get(key, ()))

    def hold(self, conn: Connection, channel_id: str) -> Hold:
        """Start holding ``conn``'s live frames of ``channel_id``; the caller takes it
        out of the fan-out set."""
        key = (conn.project_id, channel_id)
        hold = Hold(conn, channel_id, key)
        self._held.setdefault(key, []).append(hold)
        return hold

    def hold_inbox(self, conn: Connection) -> Hold:
        """Start holding the direct messages of ``conn``'s token (it has one) for it."""
        assert conn.token_id is not None
        key = inbox_key(conn.project_id, conn.token_id)
        hold = Hold(conn, INBOX, key)
        self._held.setdefault(key, []).append(hold)
        return hold

    def held(self, key: Key) -> set[Connection]:
        """The connections whose frames under ``key`` are held or caught up here."""
        return {h.conn for h in self._held.get(key, ())}

    def release(
        self, hold: Hold, replay: list[bytes], through: int | None, epoch: str | None
    ) -> None:
        """Queue ``replay``, then the held frames, with no await in between; then end the
        hold, at once or after a catch-up. Idempotent.

        A message of ``epoch`` at or below offset ``through`` is in the replay (or the
        client had it) and is left out, held or live. Nothing is queued if the
        subscription ended meanwhile.
        """
        conn, key = hold.conn, hold.key
        holds = self._held.get(key)
        if holds is None or hold not in holds or hold.catching_up:
            return  # released already
        if not hold.live:
            self._end(key, hold)
            return
        for payload in replay:
            conn.send_payload(payload)
        hold.through, hold.epoch = through, epoch
        caught_up = through is None
        for offset, message_epoch, payload in hold.buffer:
            if not hold.had(offset, message_epoch):
                conn.send_payload(payload)
            caught_up = caught_up or hold.passed(offset, message_epoch)
        hold.buffer = []
        if caught_up:
            self._end(key, hold)
        else:
            loop = asyncio.get_running_loop()
            hold.timer = loop.call_later(CATCH_UP_S, self._end, key, hold)

    def broadcast(
        self,
        key: Key,
        payload: bytes,
        offset: int | None = None,
        epoch: str | None = None,
        exclude_cid: str | None = None,
    ) -> None:
        """A frame the channel broadcast: held, or sent on by a hold in catch-up."""
        for hold in self.of(key):
            if hold.conn.cid == exclude_cid or hold.ended:
                continue
            if not hold.catching_up:
                hold.buffer.append((offset, epoch, payload))
                continue
            if not hold.had(offset, epoch):
                hold.conn.send_payload(payload)
            if hold.passed(offset, epoch):
                self._end(key, hold)

    def left(self, conn: Connection, channel_id: str) -> None:
        """``conn`` left ``channel_id``: its holds there end (a pending release sends nothing)."""
        self.left_key(conn, (conn.project_id, channel_id))

    def left_key(self, conn: Connection, key: Key) -> None:
        for hold in self.of(key):
            if hold.conn is conn:
                hold.ended = True
                if hold.catching_up:
                    self._end(key, hold)

    def _end(self, key: Key, hold: Hold) -> None:
        """Forget ``hold`` and, if the subscription lives on, rejoin the fan-out set."""
        if hold.timer is not None:
            hold.timer.cancel()
            hold.timer = None
        holds = self._held.get(key)
        if holds is None or hold not in holds:
            return
        holds.remove(hold)
        if not holds:
            del self._held[key]
        # An inbox has no fan-out set to rejoin: its direct messages reach the connection
        # again as soon as no hold of it is left.
        if hold.live and not hold.inbox and not self.holding(key, hold.conn):
            self._rejoin(hold.conn, key)
