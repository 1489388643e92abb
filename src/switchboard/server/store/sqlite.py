"""`SqliteStore`: the embedded store, one SQLite file in WAL mode.

Writes run on one writer thread, each operation one transaction, so the event loop
never waits on a disk flush and operations never interleave. Reads run on the event
loop thread on their own connection: a point lookup costs microseconds, less than a
hop to a thread, and WAL readers never wait for the writer.

Durability: WAL with ``synchronous=NORMAL``. A commit is in the WAL file before the
call returns, so everything the API acknowledged survives ``kill -9`` of the server; a
power cut may lose the last commits (SQLite's documented trade-off for this mode).

Other processes (``switchboard projects create`` beside a running server) may write to
the same file; SQLite's locking and ``busy_timeout`` order them.

The methods live with their tables, one module per concept: ``sqlite_projects``
(projects, project tokens), ``sqlite_channels`` (channels, leap tokens, subscriptions),
``sqlite_history``, ``sqlite_settings``, ``sqlite_inbox`` and ``sqlite_batch``; this
module opens the file, migrates the schema and runs their operations on the writer
thread or the reader connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from switchboard.exceptions import Unavailable
from switchboard.server.permissions import ALL
from switchboard.server.store.base import CommonMethods
from switchboard.server.store.sqlite_batch import BATCH_SCHEMA, SqliteBatch
from switchboard.server.store.sqlite_channels import CHANNELS_SCHEMA, SqliteChannels
from switchboard.server.store.sqlite_history import HISTORY_SCHEMA, SqliteHistory
from switchboard.server.store.sqlite_inbox import INBOX_SCHEMA, SqliteInbox
from switchboard.server.store.sqlite_projects import (
    GENERATIONS_SCHEMA,
    PROJECTS_SCHEMA,
    SqliteProjects,
)
from switchboard.server.store.sqlite_settings import SETTINGS_SCHEMA, SqliteSettings

T = TypeVar("T")

SCHEMA_VERSION = 7
"""1: the first schema. 2: ``project_tokens.permissions`` (older tokens get every flag).
3: channel history (``sqlite_history.HISTORY_SCHEMA``, new tables only).
4: project settings and the webhook delivery log (``sqlite_settings.SETTINGS_SCHEMA``,
new tables only).
5: token inboxes (``sqlite_inbox.INBOX_SCHEMA``, new tables only).
6: idempotency keys of batches (``sqlite_batch.BATCH_SCHEMA``, a new table).
7: project credential generations (``sqlite_projects.GENERATIONS_SCHEMA``, a new table
only)."""

_SCHEMA = (
    PROJECTS_SCHEMA
    + CHANNELS_SCHEMA
    + HISTORY_SCHEMA
    + SETTINGS_SCHEMA
    + INBOX_SCHEMA
    + BATCH_SCHEMA
    + GENERATIONS_SCHEMA
)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


class SqliteStore(
    SqliteProjects,
    SqliteChannels,
    SqliteHistory,
    SqliteSettings,
    SqliteInbox,
    SqliteBatch,
    CommonMethods,
):
    """The embedded :class:`~switchboard.server.store.Store` (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "switchboard.sqlite3"
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        writer = await self._in_writer_thread(lambda: _connect(self.path))
        self._writer = writer
        # executescript() commits as it goes, so the migration runs outside _write().
        await self._in_writer_thread(lambda: self._migrate(writer))
        self._reader = _connect(self.path)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._writer is not None:
            writer = self._writer
            self._writer = None
            await self._in_writer_thread(writer.close)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def ping(self) -> None:
        self._read(lambda db: db.execute("SELECT 1").fetchone())

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise Unavailable(
                f"the store was written by a newer Switchboard (schema {version} > {SCHEMA_VERSION})"
            )
        db.executescript(_SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(project_tokens)")}
        if "permissions" not in columns:
            # A schema-1 store: its tokens predate permissions and keep full access.
            # One statement, so it is applied whole or not at all.
            try:
                db.execute(
                    "ALTER TABLE project_tokens "
                    f"ADD COLUMN permissions INTEGER NOT NULL DEFAULT {int(ALL)}"
                )
            except sqlite3.OperationalError as exc:
                # Another process opening the same file migrated it first.
                if "duplicate column" not in str(exc):
                    raise
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # Plumbing.

    async def _in_writer_thread(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise Unavailable("the store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one transaction on the writer thread."""

        def run() -> T:
            db = self._writer
            if db is None:
                raise Unavailable("the store is closed")
            db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        return await self._in_writer_thread(run)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader is None:
            raise Unavailable("the store is closed")
        return fn(self._reader)
