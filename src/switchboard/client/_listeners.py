"""Listener registries and event streams: how the client hands things to user code.

Callbacks may be plain functions or coroutine functions. A callback that raises is
logged (logger ``switchboard.client``) and the others still run: user code can never
break the connection.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import weakref
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

log = logging.getLogger("switchboard.client")

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

Remove = Callable[[], None]
"""Call it to remove the listener; calling it again does nothing."""

_tasks: set[asyncio.Task[Any]] = set()


def _finished(task: asyncio.Task[Any]) -> None:
    _tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("a listener failed", exc_info=task.exception())


def call_listener(callback: Callable[..., Any], *args: Any) -> None:
    """Call ``callback(*args)``; run it as a task if it returns an awaitable."""
    try:
        result = callback(*args)
    except Exception:
        log.exception("a listener failed")
        return
    if inspect.isawaitable(result):
        task = asyncio.ensure_future(result)
        # Keep a reference: the event loop holds tasks only weakly.
        _tasks.add(task)
        task.add_done_callback(_finished)


class Listeners(Generic[K]):
    """Callbacks grouped by a key, e.g. ``(channel, event)``."""

    def __init__(self) -> None:
        self._by_key: dict[K, list[Callable[..., Any]]] = {}

    def add(self, key: K, callback: Callable[..., Any]) -> Remove:
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        entries = self._by_key.setdefault(key, [])
        entries.append(callback)
        removed = False

        def remove() -> None:
            nonlocal removed
            if removed:
                return
            removed = True
            entries.remove(callback)
            if not entries and self._by_key.get(key) is entries:
                del self._by_key[key]

        return remove

    def emit(self, key: K, *args: Any) -> None:
        # A copy: a listener may remove itself (or add others) while being called.
        for callback in list(self._by_key.get(key, ())):
            call_listener(callback, *args)


class _End:
    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class Reader(Generic[T]):
    """One async iterator over a :class:`Broadcast`; it sees items from its creation on."""

    def __init__(self, maxsize: int, what: str) -> None:
        self._buffer: deque[T | _End] = deque()
        self._wakeup = asyncio.Event()
        self._maxsize = maxsize
        self._what = what

    def _put(self, item: T | _End) -> None:
        if not isinstance(item, _End) and len(self._buffer) >= self._maxsize:
            self._buffer.popleft()
            log.warning("a reader of %s is too slow; dropped its oldest item", self._what)
        self._buffer.append(item)
        self._wakeup.set()

    def __aiter__(self) -> Reader[T]:
        return self

    async def __anext__(self) -> T:
        while not self._buffer:
            self._wakeup.clear()
            await self._wakeup.wait()
        item = self._buffer[0]
        if isinstance(item, _End):
            # Left in place: every later call ends the same way.
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        self._buffer.popleft()
        return item


class Broadcast(Generic[T]):
    """Fan items out to any number of :class:`Reader` iterators.

    Each reader buffers at most ``maxsize`` items; when one falls that far behind, its
    oldest items are dropped (and a warning logged) rather than letting memory grow
    without bound. A reader that is no longer referenced stops receiving items.
    """

    def __init__(self, what: str, maxsize: int = 10_000) -> None:
        self._what = what
        self._maxsize = maxsize
        self._readers: weakref.WeakSet[Reader[T]] = weakref.WeakSet()
        self._end: _End | None = None

    def publish(self, item: T) -> None:
        for reader in list(self._readers):
            reader._put(item)

    def close(self, error: BaseException | None = None) -> None:
        """End every reader: normally, or by raising ``error``."""
        if self._end is not None:
            return
        self._end = _End(error)
        for reader in list(self._readers):
            reader._put(self._end)

    def reader(self) -> Reader[T]:
        reader: Reader[T] = Reader(self._maxsize, self._what)
        if self._end is not None:
            reader._put(self._end)
        else:
            self._readers.add(reader)
        return reader
