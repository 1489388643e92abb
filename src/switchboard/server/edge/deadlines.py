"""`DeadlineWheel`: the gateway's live sockets, filed by the second each is next due.

The gateway's sweep wakes once a second; it used to tick every live session, a cost
that grew with idle sockets, not with traffic. Each socket is now filed in the slot of
the whole second at which its session next has something to do, and a sweep takes out
only the slots that have come up.

A deadline that moves later (the client sent a frame) is not re-filed at once: frames
do not pay for the wheel. When the old slot comes up, the tick finds nothing to do and
the gateway files the socket again at its new deadline (a lazy re-check). A deadline
can move earlier only through something the client sends, which happens after the
socket was filed: the gateway files no later than one heartbeat interval ahead, the
soonest any such change can fall due (see ``Gateway._file``).

A socket that closes leaves at once: :meth:`DeadlineWheel.discard` looks for it in
each slot, at most one per second of a heartbeat interval ahead (31 by default), rather
than each socket keeping a pointer to its slot: an idle socket's memory is at its target
(bench/memory.py), and a slot is a dict, whose compact table costs what the gateway's
old dict of live sockets did, where a set's sparse table cost ~30 bytes more per socket.
The wheel holds every live socket: shutdown closes them from here.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


class DeadlineWheel(Generic[T]):
    """Sockets in per-second slots; see the module docstring."""

    __slots__ = ("_count", "_next", "_slots")

    def __init__(self, now: float) -> None:
        self._slots: dict[int, dict[T, None]] = {}
        self._next = math.floor(now)
        """The first second no sweep has taken out yet."""
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[T]:
        """Every filed socket (a snapshot: the caller may close them meanwhile)."""
        return iter([item for slot in self._slots.values() for item in slot])

    def file(self, item: T, due: float) -> None:
        """File ``item`` (not in the wheel) to be taken out by the first sweep at or
        after ``due``.

        A slot holds the deadlines in ``[k, k + 1)``: the sweep that takes slot ``k``
        out may come before a deadline in it, and then the gateway files it again
        (into the next slot, since ``k`` is gone), as the old full sweep would have
        ticked it again a second later.
        """
        key = max(math.floor(due), self._next)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = {}
        slot[item] = None
        self._count += 1

    def discard(self, item: T) -> None:
        """Take ``item`` out of the wheel, wherever it is (nothing if it is not in)."""
        for slot in self._slots.values():
            if item in slot:
                del slot[item]
                self._count -= 1
                return

    def take_due(self, now: float) -> list[T]:
        """Take out every socket filed in a second up to ``now``'s (they leave the wheel)."""
        last = math.floor(now)
        due: list[T] = []
        slots = self._slots
        # The sweep is never more than a few seconds late, but a stalled loop may skip
        # many seconds: walk the keys present then, not every second in between.
        keys = range(self._next, last + 1) if last - self._next < 64 else sorted(slots)
        for key in keys:
            if key > last:
                break
            slot = slots.pop(key, None)
            if slot:
                due.extend(slot)
        self._next = max(self._next, last + 1)
        self._count -= len(due)
        return due
