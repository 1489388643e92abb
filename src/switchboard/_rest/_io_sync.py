"""The sync half of the two things the clients do differently: waiting, and fan-out.

:mod:`switchboard._rest._io_async` has the same names for the async client.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from switchboard._rest._calls import Call

__all__ = ["settle", "sleep"]

sleep = time.sleep


def settle(send: Callable[[Call[Any]], Any], calls: Sequence[Call[Any]]) -> None:
    """Send every call, one after another; then raise the first failure, if any."""
    failures: list[Exception] = []
    for call in calls:
        try:
            send(call)
        except Exception as exc:
            failures.append(exc)
    if failures:
        first = failures[0]
        if len(failures) > 1:
            first.add_note(f"{len(failures)} of {len(calls)} calls failed; this is the first")
        raise first
