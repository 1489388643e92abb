"""Batches in the embedded store: many appends at once, token lookups, idempotency keys.

``idempotency_keys`` holds, per project, the keys of ``/v1/batch`` items and
``/v1/broadcast`` requests (docs/batch.md): in flight (``answer`` NULL) until the
request's answer is kept, each row until its ``expires_ms``. A claim is one write
transaction for all of a request's keys, and purges the rows that expired.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import msgspec

from switchboard.exceptions import NotFound
from switchboard.server.history import StreamPosition
from switchboard.server.store.base import IN_FLIGHT
from switchboard.server.store.sqlite_history import _Append, _AppendBatches, _policy_row
from switchboard.server.store.sqlite_inbox import _setting
from switchboard.server.store.sqlite_token_reads import TokenReads

T = TypeVar("T")

BATCH_SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    answer      BLOB,
    expires_ms  INTEGER NOT NULL,
    PRIMARY KEY (project_id, key)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_keys_by_expiry ON idempotency_keys(expires_ms);
"""
"""Added in schema 6; ``CREATE … IF NOT EXISTS`` is the whole migration from 5."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class SqliteBatch:
    """The batch methods of :class:`~switchboard.server.store.SqliteStore` (a mixin)."""

    if TYPE_CHECKING:

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        def _batches(self) -> _AppendBatches: ...
        async def append_inbox(
            self, project_id: str, token_id: str, event: str, data: msgspec.Raw
        ) -> StreamPosition | None: ...

    async def append_messages(
        self, project_id: str, messages: list[tuple[str, str, msgspec.Raw]]
    ) -> list[StreamPosition | NotFound | None]:
        # Reads answer the channels without history; the others join one group commit,
        # queued in order (the writer gives offsets in queue order).
        results: list[StreamPosition | NotFound | None] = []
        pending: list[tuple[int, asyncio.Future[StreamPosition | None]]] = []
        batches = self._batches()
        for channel_id, event, data in messages:
            try:
                policy = self._read(
                    partial(_policy_row, project_id=project_id, channel_id=channel_id)
                )
            except NotFound as exc:
                results.append(exc)
                continue
            if policy is not None:
                item = _Append(project_id, channel_id, event, bytes(data))
                pending.append((len(results), batches.queue(item)))
            results.append(None)
        for index, future in pending:
            try:
                results[index] = await future
            except NotFound as exc:  # the channel went meanwhile
                results[index] = exc
        return results

    async def append_inboxes(
        self, project_id: str, messages: list[tuple[str, str, msgspec.Raw]]
    ) -> list[StreamPosition | None]:
        # Inboxes off (the default): one read answers for all of them.
        if not messages or self._read(partial(_setting, project_id=project_id)) is None:
            return [None] * len(messages)
        # Each append queues itself before its first await, in this order: one group
        # commit takes them all, in order.
        return list(
            await asyncio.gather(*(self.append_inbox(project_id, t, e, d) for t, e, d in messages))
        )

    _token_reads: TokenReads | None = None

    async def project_token_ids(self, project_id: str, token_ids: list[str]) -> set[str]:
        if not token_ids:
            return set()
        reads = self._token_reads
        if reads is None:
            reads = self._token_reads = TokenReads()
        return self._read(
            partial(reads.project_token_ids, project_id=project_id, token_ids=token_ids)
        )

    async def claim_idempotency_keys(
        self, project_id: str, keys: list[str], pending_ttl_s: float
    ) -> list[bytes | None]:
        def run(db: sqlite3.Connection) -> list[bytes | None]:
            now = _now_ms()
            db.execute("DELETE FROM idempotency_keys WHERE expires_ms <= ?", (now,))
            answers: list[bytes | None] = []
            for key in keys:
                row = db.execute(
                    "SELECT answer FROM idempotency_keys WHERE project_id = ? AND key = ?",
                    (project_id, key),
                ).fetchone()
                if row is not None:
                    answers.append(IN_FLIGHT if row[0] is None else bytes(row[0]))
                    continue
                db.execute(
                    "INSERT INTO idempotency_keys (project_id, key, answer, expires_ms) "
                    "VALUES (?, ?, NULL, ?)",
                    (project_id, key, now + int(pending_ttl_s * 1000)),
                )
                answers.append(None)
            return answers

        return await self._write(run) if keys else []

    async def finish_idempotency_keys(
        self, project_id: str, answers: dict[str, bytes | None], ttl_s: float
    ) -> None:
        def run(db: sqlite3.Connection) -> None:
            expires = _now_ms() + int(ttl_s * 1000)
            for key, answer in answers.items():
                if answer is None:
                    db.execute(
                        "DELETE FROM idempotency_keys WHERE project_id = ? AND key = ?",
                        (project_id, key),
                    )
                else:
                    db.execute(
                        "UPDATE idempotency_keys SET answer = ?, expires_ms = ? "
                        "WHERE project_id = ? AND key = ?",
                        (answer, expires, project_id, key),
                    )

        if answers:
            await self._write(run)
