"""Token inboxes in the embedded store: a token's last direct messages, by offset.

``token_inboxes`` holds a token's epoch and top offset, ``inbox_messages`` its kept
messages; both cascade from ``tokens``, so deleting a token deletes its inbox. The
project's setting (``InboxSetting``, the project setting ``inbox``) is read inside each
append's transaction, so an append follows the setting of that moment: off, nothing is
kept; an inbox written under another epoch (the setting was turned off and on) starts
again at offset 1. Appends are group committed like a channel's (``sqlite_history``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import msgspec

from switchboard.exceptions import NotFound
from switchboard.server import ids
from switchboard.server.history import (
    INBOX,
    HistoryMessage,
    HistoryPage,
    InboxSetting,
    StreamPosition,
    inbox_setting_decoder,
    kept_from,
)
from switchboard.server.store.sqlite_history import _Append, _AppendBatches

T = TypeVar("T")

INBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS token_inboxes (
    token_id    TEXT PRIMARY KEY REFERENCES tokens(id) ON DELETE CASCADE,
    project_id  TEXT NOT NULL,
    epoch       TEXT NOT NULL,
    top         INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS inbox_messages (
    token_id    TEXT NOT NULL REFERENCES token_inboxes(token_id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    event       TEXT NOT NULL,
    data        BLOB NOT NULL,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (token_id, seq)
) STRICT, WITHOUT ROWID;
"""
"""Added in schema 5; ``CREATE … IF NOT EXISTS`` is the whole migration from 4."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _setting(db: sqlite3.Connection, project_id: str) -> InboxSetting | None:
    row = db.execute(
        "SELECT value FROM project_settings WHERE project_id = ? AND key = ?",
        (project_id, INBOX),
    ).fetchone()
    return None if row is None else inbox_setting_decoder.decode(row[0])


def _require_token(db: sqlite3.Connection, project_id: str, token_id: str) -> None:
    found = db.execute(
        "SELECT 1 FROM tokens WHERE id = ? AND project_id = ?", (token_id, project_id)
    ).fetchone()
    if found is None:
        raise NotFound(f"no token {ids.redact(token_id)!r} in this project")


def _top(db: sqlite3.Connection, project_id: str, token_id: str, epoch: str) -> int | None:
    """The token's top offset in ``epoch``; None if it has no inbox in that epoch."""
    row = db.execute(
        "SELECT epoch, top FROM token_inboxes WHERE token_id = ? AND project_id = ?",
        (token_id, project_id),
    ).fetchone()
    return row[1] if row is not None and row[0] == epoch else None


def _reset(db: sqlite3.Connection, project_id: str, token_id: str, epoch: str, top: int) -> None:
    """Start the token's inbox again in ``epoch`` at ``top``, with no messages."""
    db.execute("DELETE FROM token_inboxes WHERE token_id = ?", (token_id,))
    db.execute(
        "INSERT INTO token_inboxes (token_id, project_id, epoch, top) VALUES (?, ?, ?, ?)",
        (token_id, project_id, epoch, top),
    )


def _append_one(db: sqlite3.Connection, item: _Append) -> StreamPosition | None:
    """One append inside the batch's transaction (``item.channel_id`` is the token's ID)."""
    project_id, token_id = item.project_id, item.channel_id
    setting = _setting(db, project_id)
    if setting is None:
        return None
    top = _top(db, project_id, token_id, setting.epoch)
    if top is None:
        _require_token(db, project_id, token_id)
        _reset(db, project_id, token_id, setting.epoch, 0)
        top = 0
    offset, now = top + 1, _now_ms()
    db.execute("UPDATE token_inboxes SET top = ? WHERE token_id = ?", (offset, token_id))
    db.execute(
        "INSERT INTO inbox_messages (token_id, seq, event, data, created_ms) "
        "VALUES (?, ?, ?, ?, ?)",
        (token_id, offset, item.event, item.data, now),
    )
    # The same key-range trim as a channel's (sqlite_history._append_one).
    lowest, oldest_ms = kept_from(setting.policy, offset, now)
    (first_young,) = db.execute(
        "SELECT seq FROM inbox_messages WHERE token_id = ? AND created_ms >= ? "
        "ORDER BY seq LIMIT 1",
        (token_id, oldest_ms),
    ).fetchone()
    db.execute(
        "DELETE FROM inbox_messages WHERE token_id = ? AND seq < ?",
        (token_id, max(lowest, first_young)),
    )
    return StreamPosition(offset, setting.epoch)


def _read(
    db: sqlite3.Connection, project_id: str, token_id: str, since: int, limit: int
) -> HistoryPage | None:
    setting = _setting(db, project_id)
    if setting is None:
        return None
    top = _top(db, project_id, token_id, setting.epoch)
    if top is None:
        _require_token(db, project_id, token_id)
        return HistoryPage([], setting.epoch, 0, 1)
    lowest, oldest_ms = kept_from(setting.policy, top, _now_ms())
    (first,) = db.execute(
        "SELECT MIN(seq) FROM inbox_messages WHERE token_id = ? AND seq >= ? AND created_ms >= ?",
        (token_id, lowest, oldest_ms),
    ).fetchone()
    first = top + 1 if first is None else first
    rows = db.execute(
        "SELECT seq, event, data, created_ms FROM inbox_messages WHERE token_id = ? "
        "AND seq > ? AND seq >= ? ORDER BY seq LIMIT ?",
        (token_id, since, first, limit),
    ).fetchall()
    messages = [HistoryMessage(r[0], r[1], msgspec.Raw(r[2]), r[3]) for r in rows]
    return HistoryPage(messages, setting.epoch, top, first)


class SqliteInbox:
    """The inbox methods of :class:`~switchboard.server.store.SqliteStore` (a mixin)."""

    if TYPE_CHECKING:

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def append_inbox(
        self, project_id: str, token_id: str, event: str, data: msgspec.Raw
    ) -> StreamPosition | None:
        # The common case, inboxes off, is answered by a read: no trip to the writer.
        if self._read(lambda db: _setting(db, project_id)) is None:
            return None
        batches = self.__dict__.get("_inbox_batches")
        if batches is None:
            batches = self.__dict__["_inbox_batches"] = _AppendBatches(self._write, _append_one)
        return await batches.append(_Append(project_id, token_id, event, bytes(data)))

    async def append_inbox_and_publish(
        self,
        project_id: str,
        token_id: str,
        event: str,
        data: msgspec.Raw,
        *,
        generation: int | None,
        route: tuple[str, str, bytes],
    ) -> StreamPosition | None:
        raise NotImplementedError("the embedded store has no pub/sub: its broker is in-process")

    async def read_inbox(
        self, project_id: str, token_id: str, since: int, limit: int
    ) -> HistoryPage | None:
        return self._read(lambda db: _read(db, project_id, token_id, since, limit))

    async def put_inbox(
        self,
        project_id: str,
        token_id: str,
        epoch: str,
        top: int,
        messages: list[HistoryMessage],
    ) -> None:
        def run(db: sqlite3.Connection) -> None:
            _require_token(db, project_id, token_id)
            _reset(db, project_id, token_id, epoch, top)
            db.executemany(
                "INSERT INTO inbox_messages (token_id, seq, event, data, created_ms) "
                "VALUES (?, ?, ?, ?, ?)",
                [(token_id, m.offset, m.event, bytes(m.data), m.created_ms) for m in messages],
            )

        await self._write(run)

    async def drop_inbox(self, project_id: str, token_id: str) -> None:
        # Deleting the token deleted its inbox (ON DELETE CASCADE): nothing is left.
        return None
