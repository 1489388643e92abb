"""A TCP proxy that delays every byte by a fixed time, both ways, keeping order: a slow
network between one node and Redis, so that a race with Redis is wide enough to lose."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def forward() -> None:
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not data:
                break
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(forward())
    try:
        while True:
            data = await reader.read(65536)
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                break
        await sender
    finally:
        sender.cancel()
        writer.close()


_LINKS: dict[int, set[asyncio.Task[None]]] = {}
"""The piping tasks of each open link, by its local port (for :func:`cut`)."""


def cut(local_port: int) -> None:
    """Drop every connection of the link and what it still holds (a network cut: the
    bytes in flight never arrive). Call it on the link's own event loop."""
    for task in list(_LINKS.get(local_port, ())):
        task.cancel()


@contextlib.asynccontextmanager
async def slow_link(port: int, delay: float) -> AsyncIterator[int]:
    """Listen on a free port; forward to ``127.0.0.1:port`` with ``delay`` each way."""
    tasks: set[asyncio.Task[None]] = set()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        for task in (
            asyncio.create_task(_pipe(reader, up_writer, delay)),
            asyncio.create_task(_pipe(up_reader, writer, delay)),
        ):
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    local = server.sockets[0].getsockname()[1]
    _LINKS[local] = tasks
    try:
        yield local
    finally:
        _LINKS.pop(local, None)
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class ThreadedLink:
    """A :func:`slow_link` on an event loop of its own (``port``), for synchronous code."""

    def __init__(self, loop: asyncio.AbstractEventLoop, port: int) -> None:
        self._loop = loop
        self.port = port

    def cut(self) -> None:
        self._loop.call_soon_threadsafe(cut, self.port)


@contextlib.contextmanager
def slow_link_in_a_thread(port: int, delay: float) -> Iterator[ThreadedLink]:
    """:func:`slow_link` on an event loop of its own, for synchronous fixtures."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    listening: list[int] = []

    async def serve(done: asyncio.Event) -> None:
        async with slow_link(port, delay) as local:
            listening.append(local)
            started.set()
            await done.wait()

    done = asyncio.Event()
    thread = threading.Thread(target=lambda: loop.run_until_complete(serve(done)), daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield ThreadedLink(loop, listening[0])
    finally:
        loop.call_soon_threadsafe(done.set)
        thread.join(10)
        loop.close()
