"""Topics: which events a node hears (broker/topics.py), the bookkeeping alone and then
on a real Redis: batched changes, confirmations, and a resubscription of 100,000 topics."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest
import redis.asyncio as aioredis

from switchboard.exceptions import Unavailable
from switchboard.server.broker import events as ev
from switchboard.server.broker.redis import RedisBroker
from switchboard.server.broker.topics import (
    SHARED,
    TopicInterest,
    channel_topic,
    token_topic,
    topic_of,
)
from switchboard.server.fanout import Dispatch, Hub
from switchboard.server.history import NoHistoryCache

RAW = msgspec.Raw(b"1")


def test_each_event_travels_on_its_channel_its_token_or_the_shared_topic() -> None:
    assert topic_of(ev.ChannelMessage("p", "c:1", "e", RAW)) == "c:p:c:1"
    assert topic_of(ev.ChannelStateChanged("p", "c", RAW)) == channel_topic("p", "c")
    assert topic_of(ev.MemberJoined("p", "c", "t", RAW, "n")) == channel_topic("p", "c")
    assert topic_of(ev.DirectMessage("p", "leap_token_a", "e", RAW)) == "t:leap_token_a"
    assert topic_of(ev.TokenDeleted("p", "leap_token_a")) == token_topic("leap_token_a")
    assert topic_of(ev.TokenSubscribed("p", "leap_token_a", "c", "private", RAW)) == (
        token_topic("leap_token_a")
    )
    # Every node keeps a no-history cache that these two keep right.
    assert topic_of(ev.ChannelDeleted("p", "c")) == SHARED
    assert topic_of(ev.HistoryChanged("p", "c")) == SHARED
    # A broadcast's tokens sit on any nodes: every node hears them (docs/batch.md).
    assert topic_of(ev.DirectMessages("p", ["leap_token_a"], "e", RAW)) == SHARED


async def test_a_topic_is_asked_for_once_and_dropped_with_its_last_want() -> None:
    topics = TopicInterest()
    topics.want("a")
    topics.want("a")
    topics.want("b")
    assert topics.changed.is_set()
    assert topics.take() == (["a", "b"], [])
    topics.confirmed("a")
    topics.confirmed("b")
    assert topics.is_heard("a") and len(topics) == 2
    topics.release("a")
    assert topics.take() == ([], [])  # still wanted once
    topics.release("a")
    assert topics.take() == ([], ["a"])
    assert not topics.is_heard("a") and topics.wanted() == ["b"]


async def test_a_topic_released_and_wanted_again_in_one_turn_changes_nothing() -> None:
    topics = TopicInterest()
    topics.want("a")
    topics.take()
    topics.confirmed("a")
    topics.release("a")
    topics.want("a")
    assert topics.take() == ([], [])
    assert topics.is_heard("a")


async def test_ready_waits_for_the_confirmation_and_gives_up_in_time() -> None:
    topics = TopicInterest()
    topics.want("a")
    waiter = asyncio.create_task(topics.ready(["a"], 5.0))
    await asyncio.sleep(0)
    assert not waiter.done()
    topics.take()
    topics.confirmed("a")
    await waiter
    topics.want("never")
    with pytest.raises(Unavailable):
        await topics.ready(["never"], 0.05)


async def test_a_confirmation_of_a_topic_dropped_meanwhile_hears_nothing() -> None:
    topics = TopicInterest()
    topics.want("a")
    topics.take()
    topics.release("a")
    assert topics.take() == ([], ["a"])
    topics.confirmed("a")  # the SUBSCRIBE's answer, after the UNSUBSCRIBE was sent
    assert not topics.is_heard("a")


async def test_a_new_link_asks_for_every_wanted_topic_again() -> None:
    topics = TopicInterest()
    for name in ("a", "b"):
        topics.want(name)
    topics.take()
    topics.confirmed("a")
    assert topics.resubscribing() == ["a", "b"]
    assert not topics.is_heard("a")  # until Redis confirms it anew
    topics.confirmed("a")
    topics.confirmed("b")
    await topics.ready(["a", "b"], 1.0)


async def test_the_in_process_broker_hears_everything_and_counts_nothing() -> None:
    topics = TopicInterest(hears_everything=True)
    topics.want("a")
    assert topics.is_heard("a") and len(topics) == 0 and not topics.changed.is_set()
    async with topics.listening(["b"], 0.01):
        pass


async def test_100_000_topics_are_subscribed_again_in_seconds_after_the_link_drops(
    redis_url: str,
) -> None:
    """Issue 20: a node with 100,000 topics resubscribes in seconds (one command)."""
    hub = Hub(max_buffered_bytes=1 << 20, node_id="big", topics=TopicInterest())
    broker = RedisBroker(
        redis_url,
        Dispatch(hub, NoHistoryCache()),
        hub,
        hub.changes,
        hub.topics,
        prefix="tt:",
        node_id="big",
    )
    await broker.start()
    try:
        names = [channel_topic("project_x", f"user-{i}") for i in range(100_000)]
        started = time.monotonic()
        async with hub.topics.listening(names, 60.0):
            first_s = time.monotonic() - started
            admin = aioredis.from_url(redis_url)
            try:
                await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            finally:
                await admin.aclose()
            dropped = time.monotonic()
            while hub.topics.is_heard(names[-1]) and time.monotonic() - dropped < 5:
                await asyncio.sleep(0.01)
            await hub.topics.ready(names, 30.0)
            again_s = time.monotonic() - dropped
            print(f"100,000 topics: subscribed in {first_s:.2f} s, again in {again_s:.2f} s")
            assert broker.reconnects >= 1
            # "Seconds, not minutes": 4-9 s on this 2-core machine, up to 13 s while other
            # suites load it; one SUBSCRIBE per topic would take minutes.
            assert again_s < 30
    finally:
        await broker.stop()
