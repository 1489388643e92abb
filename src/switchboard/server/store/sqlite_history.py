"""Channel history in the embedded store: two tables beside the channel's.

``channel_history`` holds a channel's policy, epoch and top offset; ``history_messages``
its kept messages by offset. Both cascade from ``channels``, so deleting a channel
deletes its history and a channel made again with the same ID starts a new epoch.

An append reads the top offset, bumps it and inserts the message under SQLite's write
lock, so offsets follow the order of commits. Appends are *group committed*: those that
queue up while the writer thread is busy go into the next transaction together, in the
order they were made (one WAL commit for many publishes; a lone append still commits by
itself at once). Each is answered after its transaction commits. A publish to a channel
without history costs one read on the event loop's connection and no write.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from switchboard.exceptions import NotFound
from switchboard.server.history import (
    HistoryMessage,
    HistoryPage,
    HistoryPolicy,
    StreamPosition,
    kept_from,
    new_epoch,
)
from switchboard.server.store.sqlite_policy_reads import PolicyReads
from switchboard.server.store.sqlite_policy_reads import _policy_row as _policy_row

T = TypeVar("T")

HISTORY_SCHEMA = """
CREATE TABLE IF NOT EXISTS channel_history (
    project_id  TEXT NOT NULL,
    channel_id  TEXT NOT NULL,
    size        INTEGER NOT NULL,
    ttl_s       INTEGER NOT NULL,
    epoch       TEXT NOT NULL,
    top         INTEGER NOT NULL,
    PRIMARY KEY (project_id, channel_id),
    FOREIGN KEY (project_id, channel_id) REFERENCES channels(project_id, id) ON DELETE CASCADE
) STRICT;
CREATE TABLE IF NOT EXISTS history_messages (
    project_id  TEXT NOT NULL,
    channel_id  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    event       TEXT NOT NULL,
    data        BLOB NOT NULL,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (project_id, channel_id, seq),
    FOREIGN KEY (project_id, channel_id)
        REFERENCES channel_history(project_id, channel_id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
"""
"""Added in schema 3; ``CREATE … IF NOT EXISTS`` is the whole migration from 2."""

_WHERE = "WHERE project_id = ? AND channel_id = ?"
_IN_CHUNK = 500
"""Channel IDs per ``IN (…)`` of one statement (SQLite bounds a statement's parameters)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class _Append:
    project_id: str
    channel_id: str
    event: str
    data: bytes
    future: asyncio.Future[StreamPosition | None] | None = None


def _append_one(db: sqlite3.Connection, item: _Append) -> StreamPosition | None:
    """One append inside the batch's transaction; NotFound changes nothing."""
    project_id, channel_id = item.project_id, item.channel_id
    # Read again under the write lock: the policy may have changed meanwhile.
    row = _policy_row(db, project_id, channel_id)
    if row is None:
        return None
    size, ttl_s, epoch, top = row
    offset, now = top + 1, _now_ms()
    db.execute(f"UPDATE channel_history SET top = ? {_WHERE}", (offset, project_id, channel_id))
    db.execute(
        "INSERT INTO history_messages "
        "(project_id, channel_id, seq, event, data, created_ms) VALUES (?, ?, ?, ?, ?, ?)",
        (project_id, channel_id, offset, item.event, item.data, now),
    )
    # Trim: everything below the size bound, and the aged-out messages before the first
    # young one. Both are a range of the primary key: the walk stops at the first young
    # message (this one at the latest), not at the end of the channel's rows.
    lowest, oldest_ms = kept_from(HistoryPolicy(size, ttl_s), offset, now)
    (first_young,) = db.execute(
        f"SELECT seq FROM history_messages {_WHERE} AND created_ms >= ? ORDER BY seq LIMIT 1",
        (project_id, channel_id, oldest_ms),
    ).fetchone()
    db.execute(
        f"DELETE FROM history_messages {_WHERE} AND seq < ?",
        (project_id, channel_id, max(lowest, first_young)),
    )
    return StreamPosition(offset, epoch)


class _AppendBatches:
    """Group commit: appends made while a batch waits for (or holds) the writer thread
    go into the next transaction together, in the order they were made.

    The queue is a deque the writer thread drains when the batch's transaction starts
    (``popleft`` and ``append`` are atomic): an append that arrives after the drain
    began finds no batch waiting and schedules the next one.
    """

    def __init__(
        self,
        write: Callable[[Callable[[sqlite3.Connection], Any]], Any],
        apply: Callable[[sqlite3.Connection, _Append], StreamPosition | None] = _append_one,
    ) -> None:
        self._write = write
        self._apply = apply
        """One append inside the batch's transaction (a channel's; a token inbox's)."""
        self._queue: deque[_Append] = deque()
        self._waiting = False
        """A batch is scheduled and has not started draining the queue."""
        self._tasks: set[asyncio.Future[None]] = set()
        self.batches = 0
        self.appends = 0
        """Transactions committed, and the appends they held (their ratio: batch size)."""

    async def append(self, item: _Append) -> StreamPosition | None:
        return await self.queue(item)

    def queue(self, item: _Append) -> asyncio.Future[StreamPosition | None]:
        """Queue ``item`` for the next batch (items queued together keep their order)."""
        item.future = future = asyncio.get_running_loop().create_future()
        self._queue.append(item)
        if not self._waiting:
            self._waiting = True
            task = asyncio.ensure_future(self._commit_batch())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return future

    async def _commit_batch(self) -> None:
        taken: list[_Append] = []

        def run(db: sqlite3.Connection) -> list[StreamPosition | NotFound | None]:
            self._waiting = False
            while self._queue:
                taken.append(self._queue.popleft())
            results: list[StreamPosition | NotFound | None] = []
            for item in taken:
                try:
                    results.append(self._apply(db, item))
                except NotFound as exc:  # the channel went meanwhile: only this one fails
                    results.append(exc)
            return results

        try:
            results = await self._write(run)
        except BaseException as exc:  # the transaction failed whole: so did each append
            if not taken:  # the store closed before the batch began: nothing was drained
                self._waiting = False
                taken += self._queue
                self._queue.clear()
            for item in taken:
                if item.future is not None and not item.future.done():
                    item.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self.batches += 1
        self.appends += len(taken)
        for item, result in zip(taken, results, strict=True):
            if item.future is None or item.future.done():
                continue
            if isinstance(result, NotFound):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)


class SqliteHistory:
    """The history methods of :class:`~switchboard.server.store.SqliteStore` (a mixin)."""

    if TYPE_CHECKING:

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def set_history_policy(
        self, project_id: str, channel_id: str, policy: HistoryPolicy | None
    ) -> str | None:
        def run(db: sqlite3.Connection) -> str | None:
            current = _policy_row(db, project_id, channel_id)
            if policy is None:
                db.execute(f"DELETE FROM channel_history {_WHERE}", (project_id, channel_id))
                return None
            if current is not None:
                db.execute(
                    f"UPDATE channel_history SET size = ?, ttl_s = ? {_WHERE}",
                    (policy.size, policy.ttl_s, project_id, channel_id),
                )
                return current[2]
            epoch = new_epoch()
            db.execute(
                "INSERT INTO channel_history (project_id, channel_id, size, ttl_s, epoch, top) "
                "VALUES (?, ?, ?, ?, ?, 0)",
                (project_id, channel_id, policy.size, policy.ttl_s, epoch),
            )
            return epoch

        return await self._write(run)

    async def history_policy(self, project_id: str, channel_id: str) -> HistoryPolicy | None:
        row = self._read(lambda db: _policy_row(db, project_id, channel_id))
        return None if row is None else HistoryPolicy(row[0], row[1])

    async def history_policies(
        self, project_id: str, channel_ids: list[str]
    ) -> dict[str, HistoryPolicy]:
        def run(db: sqlite3.Connection) -> dict[str, HistoryPolicy]:
            found: dict[str, HistoryPolicy] = {}
            for start in range(0, len(channel_ids), _IN_CHUNK):
                chunk = channel_ids[start : start + _IN_CHUNK]
                rows = db.execute(
                    "SELECT channel_id, size, ttl_s FROM channel_history WHERE project_id = ? "
                    f"AND channel_id IN ({', '.join('?' * len(chunk))})",
                    (project_id, *chunk),
                )
                found.update((row[0], HistoryPolicy(row[1], row[2])) for row in rows)
            return found

        return self._read(run)

    async def append_message(
        self,
        project_id: str,
        channel_id: str,
        event: str,
        data: msgspec.Raw,
        *,
        generation: int | None = None,
    ) -> StreamPosition | None:
        # The common case, no history, is answered by a read: no trip to the writer,
        # and none of SQLite's pages while nobody commits (sqlite_policy_reads.py).
        reads = self.__dict__.get("_policy_reads")
        if reads is None:
            reads = self.__dict__["_policy_reads"] = PolicyReads()
        policy = self._read(lambda db: reads.read(db, project_id, channel_id, generation))
        if policy is None:
            return None
        return await self._batches().append(_Append(project_id, channel_id, event, bytes(data)))

    def _batches(self) -> _AppendBatches:
        batches = self.__dict__.get("_append_batches")
        if batches is None:
            batches = self.__dict__["_append_batches"] = _AppendBatches(self._write)
        return batches

    async def append_and_publish(
        self,
        project_id: str,
        channel_id: str,
        event: str,
        data: msgspec.Raw,
        *,
        generation: int | None,
        route: tuple[str, str, bytes],
    ) -> StreamPosition | None:
        raise NotImplementedError("the embedded store has no pub/sub: its broker is in-process")

    async def read_history(
        self, project_id: str, channel_id: str, since: int, limit: int
    ) -> HistoryPage | None:
        def run(db: sqlite3.Connection) -> HistoryPage | None:
            row = _policy_row(db, project_id, channel_id)
            if row is None:
                return None
            size, ttl_s, epoch, top = row
            # Trimming happens at appends; bounds are applied again here because an
            # idle channel's messages age without a write.
            lowest, oldest_ms = kept_from(HistoryPolicy(size, ttl_s), top, _now_ms())
            (first,) = db.execute(
                f"SELECT MIN(seq) FROM history_messages {_WHERE} AND seq >= ? AND created_ms >= ?",
                (project_id, channel_id, lowest, oldest_ms),
            ).fetchone()
            first = top + 1 if first is None else first
            rows = db.execute(
                f"SELECT seq, event, data, created_ms FROM history_messages {_WHERE} "
                "AND seq > ? AND seq >= ? ORDER BY seq LIMIT ?",
                (project_id, channel_id, since, first, limit),
            ).fetchall()
            messages = [HistoryMessage(r[0], r[1], msgspec.Raw(r[2]), r[3]) for r in rows]
            return HistoryPage(messages, epoch, top, first)

        return self._read(run)

    async def put_history(
        self,
        project_id: str,
        channel_id: str,
        policy: HistoryPolicy,
        epoch: str,
        top: int,
        messages: list[HistoryMessage],
    ) -> None:
        lowest = top - policy.size + 1
        rows = [
            (project_id, channel_id, m.offset, m.event, bytes(m.data), m.created_ms)
            for m in messages
            if m.offset >= lowest
        ]

        def run(db: sqlite3.Connection) -> None:
            _policy_row(db, project_id, channel_id)  # NotFound
            # The old history's messages go with its row (ON DELETE CASCADE).
            db.execute(f"DELETE FROM channel_history {_WHERE}", (project_id, channel_id))
            db.execute(
                "INSERT INTO channel_history (project_id, channel_id, size, ttl_s, epoch, top) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (project_id, channel_id, policy.size, policy.ttl_s, epoch, top),
            )
            db.executemany(
                "INSERT INTO history_messages "
                "(project_id, channel_id, seq, event, data, created_ms) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

        await self._write(run)
