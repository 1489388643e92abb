"""Channel history: the records both stores hand out, and the rules of a policy.

A channel with history keeps its last messages, bounded by count (``size``) and age
(``ttl_s``), like a Centrifugo namespace's ``history_size`` and ``history_ttl``. Every
message published to such a channel gets an *offset*: 1, 2, 3 … within the channel's
*epoch*, a random string that changes whenever the history is lost (the channel is
deleted and made again, history is turned off and on, Redis comes back empty). A
client that remembers ``(offset, epoch)`` can ask for what came after it; a different
epoch means the gap cannot be filled and the application must reload its state.

History is off unless a channel asks for it, or the server has a default
(``--history-size`` / ``--history-ttl``) applied to channels created without one.
"""

from __future__ import annotations

import secrets

import msgspec

from switchboard.exceptions import InvalidRequest

MAX_SIZE = 10_000
"""The most messages a channel may keep (a read scans at most this many)."""

MAX_TTL_S = 30 * 24 * 3600
"""The longest a message may be kept: 30 days."""

MAX_PAGE = 1000
"""The most messages one read returns."""


class HistoryPolicy(msgspec.Struct, frozen=True):
    """How much of a channel's history is kept: the last ``size`` messages that are at
    most ``ttl_s`` seconds old."""

    size: int
    ttl_s: int


class StreamPosition(msgspec.Struct, frozen=True):
    """Where a message sits in its channel's history (Centrifugo's StreamPosition)."""

    offset: int
    epoch: str


class HistoryMessage(msgspec.Struct, frozen=True):
    """One stored message; ``created_ms`` is milliseconds since the Unix epoch."""

    offset: int
    event: str
    data: msgspec.Raw
    created_ms: int


class HistoryPage(msgspec.Struct, frozen=True):
    """The messages after a given offset, and where the history stands.

    ``top`` is the offset of the latest message published (0 before the first);
    ``first`` the oldest offset still kept (``top + 1`` when nothing is kept). A reader
    whose last offset is below ``first - 1`` has missed messages that are gone.
    """

    messages: list[HistoryMessage]
    epoch: str
    top: int
    first: int


class InboxSetting(msgspec.Struct, frozen=True):
    """A project's token inboxes (``PATCH /v1/settings {"inbox": …}``; docs/inbox.md):
    each token keeps its last ``size`` direct messages that are at most ``ttl_s``
    seconds old, with offsets in ``epoch``.

    Stored as the project setting :data:`INBOX` (absent: off), and read by both stores
    inside their append, so the offsets follow the setting of the moment. The epoch is
    the project's, made when the inbox is turned on and kept while its bounds change; a
    token's inbox written under another epoch (the inbox was turned off and on) is
    empty and starts again at offset 1.
    """

    size: int
    ttl_s: int
    epoch: str

    @property
    def policy(self) -> HistoryPolicy:
        return HistoryPolicy(self.size, self.ttl_s)


INBOX = "inbox"
"""The project setting of :class:`InboxSetting`; also the reserved name under which the
node's :class:`NoHistoryCache` remembers a project whose inbox is off, as
``(project ID, INBOX_KEY)``."""

INBOX_KEY = "$inbox"
"""Not a channel ID (``$`` is not allowed in one): the inbox's entry in a
:class:`NoHistoryCache`, and IDENTIFY's ``recover`` key for the token's inbox."""

inbox_setting_decoder = msgspec.json.Decoder(InboxSetting)


def new_epoch() -> str:
    """A fresh epoch: 8 hex characters, different from any earlier one of the channel
    with near certainty."""
    return secrets.token_hex(4)


def check_policy(size: int, ttl_s: int) -> HistoryPolicy | None:
    """A policy from user input; ``size`` 0 means off. Raises InvalidRequest."""
    if size == 0:
        return None
    if not 1 <= size <= MAX_SIZE:
        raise InvalidRequest(f"history size must be 0 (off) to {MAX_SIZE}")
    if not 1 <= ttl_s <= MAX_TTL_S:
        raise InvalidRequest(f"history ttl_s must be 1 to {MAX_TTL_S} seconds")
    return HistoryPolicy(size, ttl_s)


def kept_from(policy: HistoryPolicy, top: int, now_ms: int) -> tuple[int, int]:
    """The bounds a stored message must meet to be served: (lowest offset, oldest ms)."""
    return top - policy.size + 1, now_ms - policy.ttl_s * 1000


class NoHistoryCache:
    """The channels this node knows keep no history, so that a client ``MESSAGE`` to
    one needs no store read (on Redis, a round trip) before it is fanned out.

    An entry is added only from a store read that found history off, and only if no
    policy changed anywhere while that read was out (:attr:`generation`). Entries go
    when a policy changes (:meth:`forget`, on the ``HistoryChanged`` broker event every
    node gets, and at once on the node that made the change) or the channel is deleted,
    and all of them when the broker loses its connection (events may have been missed).
    """

    __slots__ = ("_known", "generation", "max_entries")

    def __init__(self, max_entries: int = 100_000) -> None:
        self._known: set[tuple[str, str]] = set()
        self.generation = 0
        """Bumped by every forget and clear; a read begun before a bump is not kept."""
        self.max_entries = max_entries

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._known

    def __len__(self) -> int:
        return len(self._known)

    def add(self, key: tuple[str, str], generation: int) -> None:
        """Remember ``key`` as keeping no history, from a read begun at ``generation``."""
        if generation != self.generation:
            return
        if len(self._known) >= self.max_entries:
            self._known.clear()
        self._known.add(key)

    def forget(self, key: tuple[str, str]) -> None:
        self._known.discard(key)
        self.generation += 1

    def clear(self) -> None:
        self._known.clear()
        self.generation += 1
