"""The async half of the two things the clients do differently: waiting, and fan-out.

:mod:`switchboard._rest._io_sync` has the same names for the sync client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from switchboard._rest._calls import Call

__all__ = ["settle", "sleep"]

CONCURRENCY = 8
"""Calls of one ``subscribe_tokens``/``remove_tokens`` in flight at once."""

sleep = asyncio.sleep


async def settle(send: Callable[[Call[Any]], Awaitable[Any]], calls: Sequence[Call[Any]]) -> None:
    """Send every call, some at once; then raise the first failure, if any."""
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(call: Call[Any]) -> None:
        async with limit:
            await send(call)

    results = await asyncio.gather(*(one(call) for call in calls), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        first = failures[0]
        if len(failures) > 1:
            first.add_note(f"{len(failures)} of {len(calls)} calls failed; this is the first")
        raise first
