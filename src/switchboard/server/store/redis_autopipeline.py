"""Auto-pipelining: the script calls of one event-loop turn go to Redis as one pipeline.

Concurrent REST publishes each run one script (``history_append_publish``). Sent one by
one, each costs a connection from the pool, a write and a read on both sides; queued
here, every call made in the same loop turn goes out together at the end of it
(``loop.call_soon``), on one connection, in one write, and the answers come back in one
read. A lone call is not delayed beyond the turn it was made in.

Each call is still its own ``EVALSHA``, atomic by itself; a pipeline is not a
transaction, and calls made concurrently had no order between them anyway. A call
whose script Redis does not know (``NOSCRIPT``: a restarted Redis, a failover) ran
nothing, so it is made again by itself, which loads the script. A failure of the whole
pipeline (a connection error) fails each of its calls, as it would have failed each
alone.

The store uses this one behind Sentinels and with ``--redis-min-replicas`` (redis-py's
connections there follow a failover and ``WAIT`` for replicas); on one Redis at an
address, :class:`~switchboard.server.redis_pool.pipeline.RawAutoPipeline` does the
same over a connection of its own, at a fraction of the cost.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis import exceptions as redis_errors

from switchboard.server.redis_pool.pipeline import settle


class AutoPipeline:
    """Script calls queued within a loop turn and sent as one pipeline (see the module
    docstring). ``redis`` is a ``redis.asyncio.Redis`` client (not a cluster's)."""

    __slots__ = ("_queue", "_redis", "_tasks", "calls", "pipelines")

    def __init__(self, redis: Any) -> None:
        self._redis = redis
        self._queue: list[tuple[Any, list[str], list[Any], asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.pipelines = 0
        self.calls = 0
        """Pipelines sent and the calls they held (their ratio: calls per round trip)."""

    async def run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """``script(keys=keys, args=args)``, sent with the other calls of this turn."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)
        self._queue.append((script, keys, args, future))
        return await future

    def _flush(self) -> None:
        batch, self._queue = self._queue, []
        task = asyncio.ensure_future(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(
        self, batch: list[tuple[Any, list[str], list[Any], asyncio.Future[Any]]]
    ) -> None:
        self.pipelines += 1
        self.calls += len(batch)
        if len(batch) == 1:  # nothing to group: the script's own call (it loads itself)
            script, keys, args, future = batch[0]
            await settle(future, script(keys=keys, args=args))
            return
        pipe = self._redis.pipeline(transaction=False)
        for script, keys, args, _ in batch:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        try:
            results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the pipeline failed whole: so did each call
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # cancelled (the node stops): so is each call
            for *_, future in batch:
                future.cancel()
            raise
        for (script, keys, args, future), result in zip(batch, results, strict=True):
            if isinstance(result, redis_errors.NoScriptError):  # ran nothing: again, alone
                await settle(future, script(keys=keys, args=args))
            elif future.done():
                continue
            elif isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
