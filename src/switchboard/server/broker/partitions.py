"""How topics map to a Redis Cluster's slots: 128 partitions, each a hash tag on a slot
set in advance (``broker/shards.py`` explains why).

Partition ``i``'s tag hashes to the middle of the ``i``-th of :data:`PARTITIONS` equal
ranges of the 16,384 slots (:func:`balanced_tag`, as Centrifugo does): masters own
contiguous ranges, so the partitions spread evenly over any number of masters. A
topic's partition is the CRC32 of its name; its shard channel is
``{prefix}{{tag}}{topic}``.
"""

from __future__ import annotations

import zlib

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

PARTITIONS = 128
"""Hash tags the topics are spread over: many more than masters, so that each master
gets an even share, few enough that a full resubscription is a short batch."""


def balanced_tag(partition: int, count: int) -> str:
    """A hash tag whose slot is the middle of the ``partition``-th of ``count`` equal
    ranges of the cluster's slots (a search: about 16,384 tries)."""
    middle = partition * REDIS_CLUSTER_HASH_SLOTS // count + REDIS_CLUSTER_HASH_SLOTS // count // 2
    n = 0
    while key_slot(f"{partition}.{n}".encode()) != middle:
        n += 1
    return f"{partition}.{n}"


# fmt: off
TAGS = [
    "0.9449", "1.18167", "2.5478", "3.3024", "4.2503", "5.10504", "6.16269", "7.11047",
    "8.6199", "9.43273", "10.5813", "11.105985", "12.542", "13.7093", "14.22111", "15.7492",
    "16.1447", "17.2769", "18.5099", "19.990", "20.614", "21.1600", "22.13742", "23.8143",
    "24.7619", "25.1245", "26.29808", "27.8506", "28.2969", "29.19057", "30.8306",
    "31.67821", "32.23507", "33.12098", "34.5922", "35.72988", "36.17830", "37.8835",
    "38.5120", "39.20515", "40.6081", "41.40850", "42.5927", "43.69374", "44.12394",
    "45.26179", "46.4688", "47.22348", "48.13430", "49.43572", "50.9516", "51.10411",
    "52.11606", "53.1373", "54.120", "55.1772", "56.944", "57.1736", "58.9951", "59.63962",
    "60.362", "61.11989", "62.8232", "63.48631", "64.20300", "65.43281", "66.123",
    "67.48927", "68.69139", "69.1462", "70.68444", "71.29547", "72.2382", "73.18925",
    "74.2783", "75.44961", "76.30898", "77.5871", "78.8164", "79.41690", "80.46293",
    "81.20460", "82.56791", "83.427", "84.2747", "85.1469", "86.4993", "87.29540",
    "88.12810", "89.42952", "90.3025", "91.5479", "92.29400", "93.17808", "94.14099",
    "95.20274", "96.49647", "97.19705", "98.12374", "99.10628", "100.2477", "101.1759",
    "102.13610", "103.43752", "104.2032", "105.13763", "106.1994", "107.12220", "108.340",
    "109.16892", "110.26870", "111.18478", "112.2833", "113.15583", "114.19485",
    "115.58586", "116.9979", "117.12877", "118.2430", "119.28999", "120.29358", "121.7943",
    "122.58287", "123.1797", "124.24049", "125.23267", "126.20278", "127.14095",
]
# fmt: on
"""``balanced_tag(i, PARTITIONS)`` for each partition, found once (a second's work at
every start otherwise); ``tests/broker/test_shards.py`` checks them."""
SLOTS = [key_slot(tag.encode()) for tag in TAGS]
TAGS_INDEX = {tag: i for i, tag in enumerate(TAGS)}
"""The slot of each partition."""


def partition_of(topic: str) -> int:
    return zlib.crc32(topic.encode()) % PARTITIONS


def shard_channel(prefix: str, topic: str) -> str:
    """The shard channel of ``topic``: ``{prefix}{{tag}}{topic}``."""
    return f"{prefix}{{{TAGS[partition_of(topic)]}}}{topic}"


def topic_of_channel(prefix: str, channel: str) -> str:
    return channel[len(prefix) :].partition("}")[2]


def partition_of_channel(prefix: str, channel: str) -> int:
    """The partition of a shard channel, from its tag."""
    return TAGS_INDEX[channel[len(prefix) + 1 :].partition("}")[0]]


def ping_channel(prefix: str, partition: int, node_id: str) -> str:
    """A node's heartbeat channel on a partition's slot (no topic has a NUL)."""
    return f"{prefix}{{{TAGS[partition]}}}\0ping:{node_id}"
