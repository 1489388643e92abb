"""Auto-pipelining over a connection of its own: the hot commands of a loop turn, one write.

:class:`~switchboard.server.store.redis_autopipeline.AutoPipeline` groups the calls of a
turn into a redis-py pipeline; building one, taking a connection from the pool and parsing
the answers through redis-py cost more than the rest of a REST publish's Redis work
(``bench/rest.py --profile``). :class:`RawAutoPipeline` keeps the same promise over one
connection it holds itself (``server/redis_pool/wire.py``): the ``EVALSHA`` of every call made in
a loop turn is packed by hiredis and written at the end of it in one write, and each answer,
read with hiredis in ``data_received``, settles its own call's future: no task per batch,
no pool. Batches of consecutive turns may be in flight together; Redis answers a
connection's commands in order, so the answers are matched in order.

The rest as :class:`AutoPipeline`: each call is its own ``EVALSHA``, atomic by itself; a
lone call is not delayed beyond its turn; a call whose script Redis does not know
(``NOSCRIPT``) ran nothing and is made again alone through redis-py, which loads the
script. A lost connection fails each call in flight with redis-py's ``ConnectionError``,
and a Redis that does not answer within the store's timeout fails them with its
``TimeoutError`` and drops the connection (the store turns both into ``Unavailable``); the
next turn connects anew. A call cancelled before its turn is not sent; one cancelled
after gets no answer (its script may have run, as with any command in flight).

The store sends its publish scripts so (:meth:`RawAutoPipeline.run`), and the broker its
``PUBLISH``es (:meth:`RawAutoPipeline.command`: a direct message, a grant, a token's events).
For one Redis at an address (``redis://``, ``rediss://``) without ``--redis-min-replicas``;
the store keeps :class:`AutoPipeline` behind Sentinels and a cluster's client its own path.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from switchboard.server.redis_pool.wire import RespProtocol, open_connection, pack_command

_Call = tuple[asyncio.Future[Any], Any, list[str], Any]
"""A queued call: its future, the registered script (redis-py's), its keys and arguments;
or a plain command: its future, None, no keys, and the command's words."""


class RawAutoPipeline:
    """Script calls queued within a loop turn, written together on a connection of its own
    (see the module docstring). ``client`` is the store's ``redis.asyncio.Redis``: its pool's
    settings say where and how to connect, and it runs a script Redis forgot."""

    __slots__ = (
        "_client",
        "_connecting",
        "_link",
        "_queue",
        "_tasks",
        "_waiting",
        "calls",
        "pipelines",
        "timeout",
    )

    def __init__(self, client: Any, timeout: float) -> None:
        self._client = client
        self.timeout = timeout
        self._queue: list[_Call] = []
        self._link: _Link | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._waiting: list[_Call] = []
        """Calls whose turn came while the connection was being made."""
        self._tasks: set[asyncio.Task[None]] = set()
        self.pipelines = 0
        self.calls = 0
        """Writes made and the calls they held (their ratio: calls per round trip)."""

    def run(self, script: Any, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        """``script(keys=keys, args=args)``, sent with the other calls of this turn."""
        return self._queued(script, keys, args)

    def command(self, *words: Any) -> asyncio.Future[Any]:
        """A plain command (``PUBLISH``, …), sent with the other calls of this turn."""
        return self._queued(None, [], words)

    def _queued(self, script: Any, keys: list[str], args: Any) -> asyncio.Future[Any]:
        """The call queued for this turn's write; its answer settles the future."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)
        self._queue.append((future, script, keys, args))
        return future

    def _flush(self) -> None:
        batch, self._queue = self._queue, []
        link = self._link
        if link is not None and link.open:
            link.send(batch)
            return
        self._waiting += batch
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        try:
            link = await open_connection(self._client, lambda: _Link(self))
        except Exception as exc:
            self._fail(self._waiting, exc)
            return
        except BaseException:
            self._fail(self._waiting, None)
            raise
        finally:
            self._connecting = None
        self._link = link
        waiting, self._waiting = self._waiting, []
        link.send(waiting)

    @staticmethod
    def _fail(calls: list[_Call], error: Exception | None) -> None:
        """Fail ``calls`` with ``error`` (cancel them with None), and empty the list."""
        for future, *_ in calls:
            if future.done():
                continue
            if error is None:
                future.cancel()
            else:
                future.set_exception(error)
        calls.clear()

    def again(self, call: _Call) -> None:
        """Make ``call`` again alone through redis-py (``NOSCRIPT``: it loads the script)."""
        future, script, keys, args = call
        task = asyncio.ensure_future(settle(future, script(keys=keys, args=args)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def lost(self, link: _Link) -> None:
        if self._link is link:
            self._link = None

    async def close(self) -> None:
        """Drop the connection; calls not answered yet are cancelled (the store closes)."""
        if self._connecting is not None:
            self._connecting.cancel()
        for task in list(self._tasks):
            task.cancel()
        self._fail(self._queue, None)
        self._fail(self._waiting, None)
        if self._link is not None:
            self._link.cancel_all()
            self._link.close()
            self._link = None


class _Link(RespProtocol):
    """The pipeline's connection: calls in flight, answered in the order they were sent."""

    def __init__(self, pipeline: RawAutoPipeline) -> None:
        super().__init__()
        self._pipeline = pipeline
        self._loop = asyncio.get_running_loop()
        self._in_flight: collections.deque[tuple[_Call, float]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def send(self, batch: list[_Call]) -> None:
        calls = [call for call in batch if not call[0].done()]  # cancelled before their turn
        if not calls:
            return
        packed = b"".join(
            pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))
            if script is not None
            else pack_command(args)
            for _, script, keys, args in calls
        )
        try:
            self.write(packed)
        except RedisConnectionError as exc:
            RawAutoPipeline._fail(calls, exc)
            return
        self._pipeline.pipelines += 1
        self._pipeline.calls += len(calls)
        now = self._loop.time()
        self._in_flight.extend((call, now) for call in calls)
        if self._timer is None:
            self._timer = self._loop.call_at(now + self._pipeline.timeout, self._check_timeout)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        gets = self.reader.gets
        in_flight = self._in_flight
        while (reply := gets()) is not False:
            if not in_flight:
                self.reply(reply)  # the log-in's answers (server/redis_pool/wire.py)
                continue
            call = in_flight.popleft()[0]
            future = call[0]
            if future.done():
                continue  # cancelled while in flight
            if not isinstance(reply, Exception):
                future.set_result(reply)
            elif isinstance(reply, NoScriptError) and call[1] is not None:
                self._pipeline.again(call)  # it ran nothing
            else:
                future.set_exception(reply)

    def _check_timeout(self) -> None:
        """Fail everything in flight once the oldest call waited the store's timeout."""
        self._timer = None
        if not self._in_flight:
            return
        due = self._in_flight[0][1] + self._pipeline.timeout
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._check_timeout)
            return
        error = RedisTimeoutError(f"Timeout reading from {self.where}")
        RawAutoPipeline._fail([call for call, _ in self._in_flight], error)
        self._in_flight.clear()
        self.close()

    def cancel_all(self) -> None:
        RawAutoPipeline._fail([call for call, _ in self._in_flight], None)
        self._in_flight.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._pipeline.lost(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        error = RedisConnectionError(
            f"connection to {self.where} lost" + (f": {exc}" if exc else "")
        )
        RawAutoPipeline._fail([call for call, _ in self._in_flight], error)
        self._in_flight.clear()


async def settle(future: asyncio.Future[Any], call: Any) -> None:
    """Await ``call`` and hand its result or its error to ``future``."""
    try:
        result = await call
    except Exception as exc:
        if not future.done():
            future.set_exception(exc)
        return
    if not future.done():
        future.set_result(result)
