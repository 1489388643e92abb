"""Small asyncio helpers that keep a cancellation a cancellation.

On Python 3.11, ``asyncio.wait_for`` and ``asyncio.timeout`` can turn a cancellation
that lands as their timeout fires into a ``TimeoutError``; a loop that suppresses the
timeout then runs on, and whoever cancelled it (a ``stop()``) waits forever. The broker
test suite caught ``RedisBroker.stop`` hanging so in about one run in five.
``asyncio.wait`` never converts anything, so these are built on it.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, within: float) -> bool:
    """Wait up to ``within`` seconds for ``event``; True if it is set. A cancellation
    of the caller propagates as it came."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait([waiter], timeout=within)
    finally:
        waiter.cancel()
    return event.is_set()


async def cancel_and_wait(tasks: list[asyncio.Task[None]], within: float = 5.0) -> int:
    """Cancel ``tasks`` and wait until they end, cancelling again every 0.1 s: a task
    whose cancellation was swallowed on the way (by a library, or the 3.11 race above)
    is cancelled once more rather than waited for forever. Returns how many were still
    running after ``within`` seconds (they are left to the loop)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    pending = [t for t in tasks if not t.done()]
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.1)
        pending = [t for t in pending if not t.done()]
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: an error on the way out is not logged as lost
    return len(pending)
