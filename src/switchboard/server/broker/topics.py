"""Topics: which events a node hears, so that each node decodes only what its sockets need.

An event travels on one topic (:func:`topic_of`): a channel's events on the channel's
topic, a token's on the token's, and the rare events every node must hear (a channel
deleted, a history policy changed) on the shared topic. A node hears a channel's topic
while one of its connections is on the channel, and a token's while one of its
connections is identified with the token (or identifying with it).

:class:`TopicInterest` is the bookkeeping, with no I/O: the hub says which topics it
wants (:meth:`~TopicInterest.want` for each membership that starts,
:meth:`~TopicInterest.release` for each that ends: a count per topic), the edge waits
until a topic is heard (:meth:`~TopicInterest.ready`) before it answers ``AVAILABLE`` or
``INIT``, and the Redis broker takes the changes to make, once per loop turn for all
topics together (:meth:`~TopicInterest.take`), and reports Redis's confirmations
(:meth:`~TopicInterest.confirmed`). The in-process broker hears everything at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable

from switchboard.exceptions import Unavailable
from switchboard.server.broker import events as ev

SHARED = "events"
"""The topic every node hears: events about no one channel's or token's sockets."""


def channel_topic(project_id: str, channel_id: str) -> str:
    # Project IDs hold no ":", so the first one after "c:" ends the project's.
    return f"c:{project_id}:{channel_id}"


def token_topic(token_id: str) -> str:
    return f"t:{token_id}"


def node_topic(node_id: str) -> str:
    """A node's own topic: the answers meant for it alone (``GrantJoined``)."""
    return f"n:{node_id}"


def topic_of(event: ev.BrokerEvent) -> str:
    """The topic ``event`` travels on."""
    if isinstance(
        event, ev.ChannelMessage | ev.ChannelStateChanged | ev.MemberJoined | ev.MemberLeft
    ):
        return channel_topic(event.project_id, event.channel_id)
    if isinstance(
        event,
        ev.DirectMessage
        | ev.TokenSubscribed
        | ev.TokenUnsubscribed
        | ev.TokenUpdated
        | ev.TokenDeleted,
    ):
        return token_topic(event.token_id)
    if isinstance(event, ev.GrantJoined):
        return node_topic(event.request.partition(":")[0])
    if isinstance(event, ev.Heartbeat):
        return node_topic(event.node_id)
    # ChannelDeleted also forgets the channel in every node's no-history cache, and
    # HistoryChanged is about that cache alone: both are for every node (and rare).
    # DirectMessages names many tokens, held by any nodes: every node hears it, on the
    # connection that reads the tokens' own topics, so a publisher's order holds
    # (docs/batch.md, "How a broadcast travels").
    return SHARED


class TopicInterest:
    """The topics this node wants, heard or on their way (see the module docstring).

    ``hears_everything``: the in-process broker's, for which every topic is heard at once.
    """

    __slots__ = (
        "_heard",
        "_pending",
        "_refs",
        "_to_drop",
        "_to_hear",
        "changed",
        "hears_everything",
    )

    def __init__(self, *, hears_everything: bool = False) -> None:
        self.hears_everything = hears_everything
        self._refs: dict[str, int] = {}
        self._heard: set[str] = set()
        """Topics Redis confirmed this node's subscription to."""
        self._pending: dict[str, asyncio.Future[None]] = {}
        """Topics asked for and not yet confirmed, with a future for those who wait."""
        self._to_hear: set[str] = set()
        self._to_drop: set[str] = set()
        self.changed = asyncio.Event()
        """Set when there are subscriptions to make or drop (the broker's command task)."""

    def __len__(self) -> int:
        """Topics wanted now (the ``switchboard_broker_topics`` gauge)."""
        return len(self._refs)

    def wanted(self) -> list[str]:
        return list(self._refs)

    # The hub's side: counted, never awaiting.

    def want(self, topic: str) -> None:
        if self.hears_everything:
            return  # nothing to count: the in-process broker hears every topic
        refs = self._refs.get(topic, 0)
        self._refs[topic] = refs + 1
        if refs == 0:
            self._to_drop.discard(topic)
            if topic not in self._heard and topic not in self._pending:
                self._to_hear.add(topic)
                self.changed.set()

    def release(self, topic: str) -> None:
        if self.hears_everything:
            return
        refs = self._refs.get(topic, 0) - 1
        if refs > 0:
            self._refs[topic] = refs
            return
        self._refs.pop(topic, None)
        self._to_hear.discard(topic)
        if topic in self._heard or topic in self._pending:
            self._to_drop.add(topic)
            self.changed.set()

    def is_heard(self, topic: str) -> bool:
        return self.hears_everything or topic in self._heard

    @contextlib.asynccontextmanager
    async def listening(self, topics: Iterable[str], within_s: float) -> AsyncIterator[None]:
        """Want ``topics`` for the block and wait until they are heard; whatever the
        block joins keeps its own count, so nothing heard now is dropped in between.

        Raises :class:`~switchboard.exceptions.Unavailable` after ``within_s`` seconds.
        """
        held = list(topics)
        for topic in held:
            self.want(topic)
        try:
            await self.ready(held, within_s)
            yield
        finally:
            for topic in held:
                self.release(topic)

    async def ready(self, topics: list[str], within_s: float) -> None:
        """Wait until each of ``topics`` (wanted by the caller) is heard."""
        if self.hears_everything:
            return
        loop = asyncio.get_running_loop()
        waits = []
        for topic in topics:
            if topic not in self._heard:
                future = self._pending.get(topic)
                if future is None:
                    future = self._pending[topic] = loop.create_future()
                waits.append(future)
        if not waits:
            return
        # asyncio.wait, not wait_for: it neither cancels the shared futures nor can
        # swallow a cancellation of the caller (switchboard.server.aio).
        _, not_done = await asyncio.wait(waits, timeout=within_s)
        if not_done:
            raise Unavailable(f"the broker did not confirm a subscription within {within_s:g} s")

    # The broker's side.

    def take(self) -> tuple[list[str], list[str]]:
        """(topics to subscribe to, topics to unsubscribe from) since the last take."""
        self.changed.clear()
        to_hear, self._to_hear = sorted(self._to_hear), set()
        to_drop, self._to_drop = sorted(self._to_drop), set()
        for topic in to_hear:
            if topic not in self._pending:
                self._pending[topic] = asyncio.get_running_loop().create_future()
        for topic in to_drop:
            self._heard.discard(topic)
            future = self._pending.pop(topic, None)
            if future is not None and not future.done():
                future.cancel()
        return to_hear, to_drop

    def confirmed(self, topic: str) -> None:
        """Redis confirmed a SUBSCRIBE to ``topic``."""
        future = self._pending.pop(topic, None)
        if topic in self._refs:
            self._heard.add(topic)
        if future is not None and not future.done():
            future.set_result(None)

    def resubscribing(self, only: Callable[[str], bool] | None = None) -> list[str]:
        """The link to Redis is new: every wanted topic must be subscribed again (one
        batch); nothing is heard until Redis confirms it anew.

        ``only``: just the topics it accepts (a Redis Cluster's reader that starts
        over, or partitions that moved to another master: ``broker/shards.py``)."""
        loop = asyncio.get_running_loop()
        if only is None:
            self._to_hear.clear()
            self._to_drop.clear()
            self.changed.clear()
            lost = set(self._heard)
            self._heard.clear()
        else:
            self._to_hear = {t for t in self._to_hear if not only(t)}
            lost = {t for t in self._heard if only(t)}
            self._heard -= lost
        for topic in lost:
            self._pending.setdefault(topic, loop.create_future())
        topics = sorted(t for t in self._refs if only is None or only(t))
        for topic in topics:
            self._pending.setdefault(topic, loop.create_future())
        return topics
