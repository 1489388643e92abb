"""The `Broker` interface, and what a broker is given to work with on its node.

A broker sits between the service, which publishes events, and this node's sockets,
which get them. It is made with both ends at hand (nothing is wired in afterwards):

- an :class:`EventHandler`, which carries out each event on this node (the fan-out's
  dispatch: ``switchboard.server.fanout.dispatch``);
- a :class:`LocalNode`, what this node's sockets hold, which the broker reads to answer
  presence queries and to write this node's share of presence for the others (the
  hub is one);
- :class:`PresenceChanges`, where the hub tells the broker that its presence changed
  and which members joined or left, for the broker to carry to every node.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import NamedTuple, Protocol

from switchboard.server.broker.events import (
    BrokerEvent,
    ChannelMessage,
    DirectMessage,
    GrantJoined,
    MemberJoined,
    MemberLeft,
    NodePresence,
    TokenSubscribed,
)


class StoreRoute(NamedTuple):
    """A channel or direct message as a store's script publishes it
    (:meth:`Broker.store_route`)."""

    command: str
    """The publish command: ``PUBLISH``."""
    topic: str
    """The pub/sub channel, prefix included: the topic the broker itself would use."""
    head: bytes
    """The event's encoding up to its offset and epoch: the script ends it with
    ``,"offset":…,"epoch":…}`` (both ``null`` without history)."""


class Broker(Protocol):
    """Carries :data:`BrokerEvent` to every node, and counts live connections.

    With one node the broker is a function call into the local node; with Redis it is
    pub/sub plus per-node presence counts. Callers never know which.
    """

    node_id: str

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def ping(self) -> None:
        """Raise :class:`~switchboard.exceptions.Unavailable` if events cannot be carried."""

    async def publish(self, event: BrokerEvent) -> None:
        """Deliver ``event`` to every node, in publish order per channel and per token."""

    async def publish_many(self, events: list[BrokerEvent]) -> None:
        """:meth:`publish` each event, in order, as one write where the broker can (a
        batch's messages: one pipeline to Redis, not a round trip each)."""

    def store_route(self, event: ChannelMessage | DirectMessage) -> StoreRoute | None:
        """How a store on this broker's Redis can publish ``event`` itself, inside the
        script that appends it to the channel's history or the token's inbox (one round
        trip for both, and offsets in the order events are published): None if this
        broker does not publish through Redis (one node: it is a function call)."""

    async def publish_grant(self, event: TokenSubscribed) -> None:
        """Publish a backend's grant and return once every node with the token's sockets
        has joined them to the channel (bounded): a message the backend publishes next
        reaches them."""

    async def token_connections(self, token_id: str) -> int:
        """Live connections identified with this token, on every node."""

    async def channel_connections(self, project_id: str, channel_id: str) -> int:
        """Live connections subscribed to this channel, on every node (its ``online_count``)."""

    async def channel_presence(self, project_id: str, channel_id: str) -> dict[str, NodePresence]:
        """Each live node's share of the channel's presence, by node ID (this one included).

        Nodes with no subscriber of the channel may be left out. A node that died stops
        being listed when its presence key expires, as with the counts.
        """

    @property
    def clustered(self) -> bool:
        """True when other nodes may share the work (the console says so)."""

    def stats(self) -> dict[str, object]:
        """Figures for the metrics and the console (empty for the local broker)."""


class EventHandler(Protocol):
    """What a broker hands the events of every node to."""

    def handle(self, event: BrokerEvent) -> None:
        """Carry out one event on this node (no await: events stay in order)."""

    def events_missed(self) -> None:
        """The link to the other nodes was down: events published meanwhile are lost."""

    def node_gone(self, node_id: str) -> None:
        """``node_id`` died without saying so (its presence key expired)."""


PresenceCounts = tuple[Counter[str], Counter[tuple[str, str]]]
"""This node's connections per token ID, and subscribers per (project, channel)."""


class LocalNode(Protocol):
    """What a broker reads of this node's sockets (the hub answers all of it)."""

    def token_connections(self, token_id: str) -> int: ...
    def channel_connections(self, project_id: str, channel_id: str) -> int: ...
    def presence_counts(self) -> PresenceCounts: ...
    def channel_share(self, project_id: str, channel_id: str) -> NodePresence: ...
    def presence_shares(self) -> dict[tuple[str, str], NodePresence]: ...
    def announcements(self) -> list[MemberJoined]:
        """A join for every token present on a channel here (sent again after a gap)."""

    def watched_nodes(self) -> set[str]:
        """Other nodes whose members this node's presence watches count."""


class PresenceChanges:
    """The hub's news for the broker: its presence changed, members joined or left.

    The hub writes (:meth:`changed`, :meth:`member`), never awaiting; the broker's tasks
    wait on :attr:`dirty` and :attr:`members_queued` and take the events in order.
    """

    __slots__ = ("_channels", "_members", "_tokens", "dirty", "members_queued")

    def __init__(self) -> None:
        self.dirty = asyncio.Event()
        """Set on any change to who is connected or subscribed on this node."""
        self._tokens: set[str] = set()
        self._channels: set[tuple[str, str]] = set()
        self.members_queued = asyncio.Event()
        self._members: list[MemberJoined | MemberLeft | GrantJoined] = []

    def changed(self) -> None:
        self.dirty.set()

    def token_touched(self, token_id: str) -> None:
        """The token's count of connections here changed."""
        self._tokens.add(token_id)
        self.dirty.set()

    def channel_touched(self, key: tuple[str, str]) -> None:
        """Who is subscribed to the channel here changed."""
        self._channels.add(key)
        self.dirty.set()

    def take_touched(self) -> tuple[set[str], set[tuple[str, str]]]:
        """The tokens and channels touched since the last take (the broker writes just
        those: a connect costs the same however many sockets the node holds)."""
        self.dirty.clear()
        tokens, self._tokens = self._tokens, set()
        channels, self._channels = self._channels, set()
        return tokens, channels

    def member(self, event: MemberJoined | MemberLeft) -> None:
        """A token's first connection here joined a channel, or its last left it."""
        self._members.append(event)
        self.members_queued.set()

    def grant_joined(self, ack: str, node_id: str) -> None:
        """This node joined the sockets a grant asked an answer for (``TokenSubscribed.ack``)."""
        self._members.append(GrantJoined(ack, node_id))
        self.members_queued.set()

    def take_members(self) -> list[MemberJoined | MemberLeft | GrantJoined]:
        """The member events queued so far, oldest first; the queue is emptied."""
        self.members_queued.clear()
        events, self._members = self._members, []
        return events
