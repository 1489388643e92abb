"""Sharded topics (issue 19): partitions spread evenly over any number of masters."""

from __future__ import annotations

import collections

from redis.crc import key_slot

from switchboard.server.broker.partitions import (
    PARTITIONS,
    TAGS,
    balanced_tag,
    partition_of,
    shard_channel,
    topic_of_channel,
)

SLOTS = 16384


def per_master(slots: list[int], masters: int) -> list[int]:
    """How many of ``slots`` each of ``masters`` gets, with the slots split into
    contiguous ranges as ``redis-cli --cluster create`` splits them."""
    counts = collections.Counter(min(slot * masters // SLOTS, masters - 1) for slot in slots)
    return [counts[m] for m in range(masters)]


def test_each_partition_has_its_own_slot_and_they_spread_evenly() -> None:
    slots = [key_slot(tag.encode()) for tag in TAGS]
    assert slots == [i * 128 + 64 for i in range(PARTITIONS)]
    assert TAGS[:3] == [balanced_tag(i, PARTITIONS) for i in range(3)]
    for masters in (2, 3, 4, 5, 8, 16, 32):
        counts = per_master(slots, masters)
        assert max(counts) - min(counts) <= 1, (masters, counts)


def test_naive_tags_would_not_spread_evenly() -> None:
    """What the precomputed tags avoid (Centrifugo's finding): ``{0}``…``{127}``."""
    naive = [key_slot(str(i).encode()) for i in range(PARTITIONS)]
    counts = per_master(naive, 16)
    assert max(counts) - min(counts) > 4, counts


def test_a_topic_keeps_its_partition_and_is_read_back() -> None:
    topic = "c:project_1:room:a}b"
    channel = shard_channel("sb:", topic)
    assert channel.startswith(f"sb:{{{TAGS[partition_of(topic)]}}}")
    assert key_slot(channel.encode()) == key_slot(TAGS[partition_of(topic)].encode())
    assert topic_of_channel("sb:", channel) == topic
    spread = collections.Counter(partition_of(f"c:p:{i}") for i in range(12_800))
    assert len(spread) == PARTITIONS and max(spread.values()) < 2 * 100
