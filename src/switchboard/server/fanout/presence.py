"""Presence: who is subscribed to each channel, and the opt-in join/leave dispatches.

:class:`Presence` is owned by the hub, which tells it every subscription that starts or
ends on this node (:meth:`Presence.joined`, :meth:`Presence.left`). It keeps, per
channel, how many of this node's connections each token has there and how many
tokenless connections there are (project-scope connections never count, as with
``online_count``). The broker reads that to answer presence queries and, on Redis, to
write this node's share (``:m`` hash, see ``broker/redis.py``).

Join/leave dispatches are cluster-wide and opt-in. When a token's *first* connection
on this node subscribes to a channel, or its *last* one here leaves, the hub emits a
:class:`~switchboard.server.broker.events.MemberJoined` /
:class:`~switchboard.server.broker.events.MemberLeft` event through the broker (one
event per such change; fan-out never pays). A node where some connection asked for
presence on the channel (a *watch*) keeps, per present token, the set of nodes it is
on: ``PRESENCE_JOIN`` goes to the watchers when that set stops being empty,
``PRESENCE_LEAVE`` when it becomes empty, so a token on two nodes joins once and leaves
once. A watch starts from a snapshot of the cluster (:meth:`Presence.seed`); events
that arrive while the snapshot is read are applied on top (they are set additions
and removals, so applying one the snapshot already holds changes nothing). A node that
dies leaves the sets when the broker sees its key expire (:meth:`Presence.node_gone`).

Dispatches name a member by :func:`member_id`, never by token ID: a token ID is the
credential its user connects with, and other subscribers must not learn it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from switchboard.server.broker import events as ev
from switchboard.server.broker.events import NodePresence
from switchboard.server.fanout.connection import Connection
from switchboard.server.ids import member_id
from switchboard.server.protocol import frames

Key = tuple[str, str]
"""(project ID, channel ID)."""

NULL = msgspec.Raw(b"null")

Occupancy = Callable[[str, str, str, int], None]
"""Called with (project, ``t`` or ``c``, token or channel ID, +1 or -1) when a token or
a channel gets its first connection on this node or loses its last (the webhooks')."""


def announcements(conns: Iterable[Connection], node_id: str) -> list[ev.MemberJoined]:
    """A ``MemberJoined`` for every (channel, token) present among ``conns``.

    Sent again after this node's link to Redis came back: watchers elsewhere may have
    taken the node for dead meanwhile, and a join they already know changes nothing.
    """
    seen: set[tuple[str, str, str]] = set()
    out = []
    for conn in conns:
        if conn.token_id is None or conn.scope == "project":
            continue
        for channel_id in conn.channels:
            key = (conn.project_id, channel_id, conn.token_id)
            if key not in seen:
                seen.add(key)
                out.append(ev.MemberJoined(*key, state=conn.metadata or NULL, node_id=node_id))
    return out


@dataclass(slots=True)
class _Member:
    nodes: set[str]
    state: msgspec.Raw


@dataclass(slots=True)
class Watch:
    """A channel some connection of this node asked presence dispatches for."""

    watchers: set[Connection] = field(default_factory=set)
    members: dict[str, _Member] = field(default_factory=dict)
    pending: list[ev.MemberJoined | ev.MemberLeft] | None = field(default_factory=list)
    """Events received while the snapshot is read; ``None`` once seeded."""
    ready: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def _member_view(token_id: str, state: msgspec.Raw) -> dict[str, Any]:
    return {"member_id": member_id(token_id), "state": state}


class Presence:
    """See the module docstring."""

    def __init__(
        self,
        node_id: str,
        emit: Callable[[ev.MemberJoined | ev.MemberLeft], None],
        send: Callable[[list[Connection], bytes], None],
        occupancy: Occupancy | None = None,
    ) -> None:
        self._node_id = node_id
        self._emit = emit
        """Takes the member events, for the broker to carry to every node."""
        self._send = send
        self._occupancy = occupancy
        """Told when a channel gets its first subscriber here or loses its last
        (project-scope ones do not count)."""
        self._tokens: dict[Key, Counter[str]] = {}
        self._tokenless: Counter[Key] = Counter()
        self.watches: dict[Key, Watch] = {}

    # This node's subscriptions.

    def joined(self, conn: Connection, channel_id: str) -> None:
        """``conn`` now holds ``channel_id`` (it did not before)."""
        if conn.scope == "project":
            return
        key = (conn.project_id, channel_id)
        if self._occupancy is not None and key not in self._tokens and key not in self._tokenless:
            self._occupancy(conn.project_id, "c", channel_id, 1)
        token_id = conn.token_id
        if token_id is None:
            self._tokenless[key] += 1
            return
        counts = self._tokens.setdefault(key, Counter())
        counts[token_id] += 1
        if counts[token_id] == 1:
            self._emit(
                ev.MemberJoined(
                    conn.project_id, channel_id, token_id, conn.metadata or NULL, self._node_id
                )
            )

    def left(self, conn: Connection, channel_id: str) -> None:
        """``conn`` no longer holds ``channel_id``."""
        key = (conn.project_id, channel_id)
        self._unwatch(conn, key)
        if conn.scope == "project":
            return
        token_id = conn.token_id
        if token_id is None:
            self._tokenless[key] -= 1
            if self._tokenless[key] <= 0:
                del self._tokenless[key]
                self._vacated(key)
            return
        counts = self._tokens.get(key)
        if counts is None or not counts[token_id]:
            return
        counts[token_id] -= 1
        if counts[token_id] == 0:
            del counts[token_id]
            if not counts:
                del self._tokens[key]
                self._vacated(key)
            self._emit(
                ev.MemberLeft(
                    conn.project_id, channel_id, token_id, conn.metadata or NULL, self._node_id
                )
            )

    def _vacated(self, key: Key) -> None:
        if self._occupancy is not None and key not in self._tokens and key not in self._tokenless:
            self._occupancy(key[0], "c", key[1], -1)

    def local(self, project_id: str, channel_id: str) -> NodePresence:
        """This node's share of one channel's presence."""
        key = (project_id, channel_id)
        return NodePresence(dict(self._tokens.get(key, ())), self._tokenless.get(key, 0))

    def all_local(self) -> dict[Key, NodePresence]:
        """This node's share of every channel it has subscribers of (what Redis holds)."""
        keys = self._tokens.keys() | self._tokenless.keys()
        return {k: NodePresence(dict(self._tokens.get(k, ())), self._tokenless[k]) for k in keys}

    # Watches.

    def watch(self, key: Key) -> tuple[Watch, bool]:
        """The watch of ``key`` and whether the caller must seed it (it is new)."""
        found = self.watches.get(key)
        if found is not None:
            return found, False
        self.watches[key] = watch = Watch()
        return watch, True

    def seed(
        self, key: Key, nodes: dict[str, NodePresence], states: dict[str, msgspec.Raw]
    ) -> None:
        """Start a new watch from the cluster's ``nodes``, then apply what arrived meanwhile."""
        watch = self.watches.get(key)
        if watch is None or watch.pending is None:
            return
        for node, share in nodes.items():
            for token_id in share.tokens:
                member = watch.members.get(token_id)
                if member is None:
                    state = states.get(token_id, NULL)
                    watch.members[token_id] = member = _Member(set(), state)
                member.nodes.add(node)
        pending, watch.pending = watch.pending, None
        for event in pending:
            self._apply(watch, event, notify=False)
        watch.ready.set_result(None)

    def abandon(self, key: Key) -> None:
        """The snapshot for a new watch could not be read: forget it."""
        watch = self.watches.pop(key, None)
        if watch is not None and not watch.ready.done():
            watch.ready.set_result(None)

    def add_watcher(self, conn: Connection, key: Key) -> list[dict[str, Any]]:
        """``conn`` (which holds the channel now) gets the dispatches; returns the members."""
        watch = self.watches.get(key)
        if watch is None:
            return []
        watch.watchers.add(conn)
        return [_member_view(t, m.state) for t, m in sorted(watch.members.items())]

    def _unwatch(self, conn: Connection, key: Key) -> None:
        watch = self.watches.get(key)
        if watch is not None:
            watch.watchers.discard(conn)
            self.release(key)

    def release(self, key: Key) -> None:
        """Forget the watch of ``key`` if it is seeded and nobody watches it any more."""
        watch = self.watches.get(key)
        if watch is not None and not watch.watchers and watch.pending is None:
            del self.watches[key]

    def drop_channel(self, key: Key) -> None:
        """The channel was deleted: its watch ends with its subscriptions."""
        watch = self.watches.get(key)
        if watch is not None and watch.pending is None:
            del self.watches[key]

    # Events from every node.

    def handle(self, event: ev.MemberJoined | ev.MemberLeft) -> None:
        watch = self.watches.get((event.project_id, event.channel_id))
        if watch is None:
            return
        if watch.pending is not None:
            watch.pending.append(event)
            return
        self._apply(watch, event, notify=True)

    def _apply(self, watch: Watch, event: ev.MemberJoined | ev.MemberLeft, *, notify: bool) -> None:
        member = watch.members.get(event.token_id)
        if isinstance(event, ev.MemberJoined):
            if member is None:
                watch.members[event.token_id] = _Member({event.node_id}, event.state)
                if notify:
                    self._notify(
                        watch, event.channel_id, "PRESENCE_JOIN", event.token_id, event.state
                    )
            else:
                member.nodes.add(event.node_id)
                member.state = event.state
        elif member is not None:
            member.nodes.discard(event.node_id)
            if not member.nodes:
                del watch.members[event.token_id]
                if notify:
                    self._notify(
                        watch, event.channel_id, "PRESENCE_LEAVE", event.token_id, event.state
                    )

    def token_state(self, token_id: str, state: msgspec.Raw) -> None:
        """A token's state changed: later dispatches carry the new one."""
        for watch in self.watches.values():
            member = watch.members.get(token_id)
            if member is not None:
                member.state = state

    def remote_nodes(self) -> set[str]:
        """Other nodes that some watch counts members on (the broker checks they live)."""
        me = self._node_id
        return {n for w in self.watches.values() for m in w.members.values() for n in m.nodes} - {
            me
        }

    def node_gone(self, node: str) -> None:
        """``node`` died: its members leave every watch (those on no other node, for good)."""
        for key, watch in list(self.watches.items()):
            if watch.pending is not None:
                continue  # the next check, after the seed, sees the node dead again
            for token_id, member in list(watch.members.items()):
                if node in member.nodes:
                    self._apply(
                        watch,
                        ev.MemberLeft(key[0], key[1], token_id, member.state, node),
                        notify=True,
                    )

    def _notify(
        self, watch: Watch, channel_id: str, event: str, token_id: str, state: msgspec.Raw
    ) -> None:
        if watch.watchers:
            payload = frames.presence_change(channel_id, event, _member_view(token_id, state))
            self._send(list(watch.watchers), payload)
