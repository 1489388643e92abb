"""The stop helpers the broker and webhooks rely on (server/aio.py)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from switchboard.server.aio import cancel_and_wait, wait_event

pytestmark = pytest.mark.timeout(10)


async def test_a_task_that_swallows_a_cancellation_is_cancelled_again() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed < 3:
                    continue  # what a library may do by mistake
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert await cancel_and_wait([task], within=2.0) == 0
    assert task.cancelled() and swallowed == 3


async def test_a_task_that_never_ends_is_given_up_on_in_time() -> None:
    giving_up = asyncio.Event()

    async def immortal() -> None:
        while not giving_up.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(10)

    task = asyncio.create_task(immortal())
    await asyncio.sleep(0)
    started = asyncio.get_running_loop().time()
    assert await cancel_and_wait([task], within=0.3) == 1
    assert asyncio.get_running_loop().time() - started < 1.0
    giving_up.set()
    task.cancel()
    await task  # it ends once it stops swallowing


async def test_wait_event_times_out_sets_and_propagates_cancellation() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.05) is False
    asyncio.get_running_loop().call_later(0.05, event.set)
    assert await wait_event(event, 5) is True
    waiter = asyncio.create_task(wait_event(asyncio.Event(), 5))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
