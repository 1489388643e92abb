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
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from switchboard.exceptions import Conflict, NotFound, PayloadTooLarge, Unavailable
from switchboard.server import ids
from switchboard.server.clock import now_iso
from switchboard.server.models import (
    Access,
    Channel,
    ChannelType,
    Page,
    Project,
    ProjectTokenInfo,
    Token,
)
from switchboard.server.permissions import ALL, Permission, from_bits
from switchboard.server.store.base import UNCHANGED, Unchanged
from switchboard.server.store.sqlite_history import HISTORY_SCHEMA, SqliteHistory
from switchboard.server.store.sqlite_settings import SETTINGS_SCHEMA, SqliteSettings

T = TypeVar("T")

SCHEMA_VERSION = 4
"""1: the first schema. 2: ``project_tokens.permissions`` (older tokens get every flag).
3: channel history (``sqlite_history.HISTORY_SCHEMA``, new tables only).
4: project settings and the webhook delivery log (``sqlite_settings.SETTINGS_SCHEMA``,
new tables only)."""

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS projects (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS project_tokens (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL UNIQUE,
    hint        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT,
    permissions INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS channels (
    project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    id          TEXT NOT NULL,
    type        TEXT NOT NULL,
    state       BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (project_id, id)
) STRICT;
CREATE INDEX IF NOT EXISTS channels_by_created ON channels(project_id, created_at);
CREATE TABLE IF NOT EXISTS tokens (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    state       BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS tokens_by_project ON tokens(project_id, created_at);
CREATE TABLE IF NOT EXISTS subscriptions (
    project_id  TEXT NOT NULL,
    channel_id  TEXT NOT NULL,
    token_id    TEXT NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (project_id, channel_id, token_id),
    FOREIGN KEY (project_id, channel_id) REFERENCES channels(project_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX IF NOT EXISTS subscriptions_by_token ON subscriptions(token_id);
"""
    + HISTORY_SCHEMA
    + SETTINGS_SCHEMA
)

_CHANNEL_COLUMNS = "project_id, id, type, state, created_at"
_TOKEN_COLUMNS = "project_id, id, state, created_at, expires_at"
_PROJECT_TOKEN_COLUMNS = "id, project_id, hint, created_at, revoked_at, permissions"
_SORTABLE = {"created_at": "created_at", "id": "id"}


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def _channel(row: tuple[Any, ...]) -> Channel:
    return Channel(row[0], row[1], ChannelType(row[2]), msgspec.Raw(row[3]), row[4])


def _token(row: tuple[Any, ...]) -> Token:
    return Token(row[0], row[1], msgspec.Raw(row[2]), row[3], row[4])


def _project_token(row: tuple[Any, ...]) -> ProjectTokenInfo:
    return ProjectTokenInfo(row[0], row[1], row[2], row[3], row[4], from_bits(row[5]))


class SqliteStore(SqliteHistory, SqliteSettings):
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

    # Projects and project tokens.

    async def create_project(self, name: str) -> Project:
        return await self.put_project(Project(ids.new_project_id(), name, now_iso()))

    async def put_project(self, project: Project) -> Project:
        def run(db: sqlite3.Connection) -> Project:
            try:
                db.execute(
                    "INSERT INTO projects (id, name, created_at) VALUES (?, ?, ?)",
                    (project.id, project.name, project.created_at),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(
                    f"a project named {project.name!r} or with ID {project.id!r} exists already"
                ) from exc
            return project

        return await self._write(run)

    async def get_project(self, project_id: str) -> Project | None:
        row = self._read(
            lambda db: db.execute(
                "SELECT id, name, created_at FROM projects WHERE id = ?", (project_id,)
            ).fetchone()
        )
        return Project(*row) if row else None

    async def list_projects(self) -> list[Project]:
        rows = self._read(
            lambda db: db.execute(
                "SELECT id, name, created_at FROM projects ORDER BY created_at, id"
            ).fetchall()
        )
        return [Project(*row) for row in rows]

    async def add_project_token(
        self, project_id: str, secret_hash: str, hint: str, permissions: Permission = ALL
    ) -> ProjectTokenInfo:
        info = ProjectTokenInfo(
            ids.new_project_token_id(), project_id, hint, now_iso(), permissions=permissions
        )
        return await self.put_project_token(info, secret_hash)

    async def put_project_token(self, info: ProjectTokenInfo, secret_hash: str) -> ProjectTokenInfo:
        def run(db: sqlite3.Connection) -> ProjectTokenInfo:
            project_id = info.project_id
            if db.execute("SELECT 1 FROM projects WHERE id = ?", (project_id,)).fetchone() is None:
                raise NotFound(f"no project {project_id!r}")
            try:
                db.execute(
                    f"INSERT INTO project_tokens ({_PROJECT_TOKEN_COLUMNS}, secret_hash) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        info.id,
                        project_id,
                        info.hint,
                        info.created_at,
                        info.revoked_at,
                        int(info.permissions),
                        secret_hash,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"project token {info.id!r} exists already") from exc
            return info

        return await self._write(run)

    async def project_token_hashes(self, project_id: str) -> list[tuple[ProjectTokenInfo, str]]:
        rows = self._read(
            lambda db: db.execute(
                f"SELECT {_PROJECT_TOKEN_COLUMNS}, secret_hash "
                "FROM project_tokens WHERE project_id = ? ORDER BY created_at, id",
                (project_id,),
            ).fetchall()
        )
        return [(_project_token(row), row[6]) for row in rows]

    async def find_project_token(self, secret_hash: str) -> ProjectTokenInfo | None:
        row = self._read(
            lambda db: db.execute(
                f"SELECT {_PROJECT_TOKEN_COLUMNS} "
                "FROM project_tokens WHERE secret_hash = ? AND revoked_at IS NULL",
                (secret_hash,),
            ).fetchone()
        )
        return _project_token(row) if row else None

    async def find_project_by_token(self, secret_hash: str) -> Access | None:
        row = self._read(
            lambda db: db.execute(
                "SELECT p.id, p.name, p.created_at, t.permissions FROM project_tokens t "
                "JOIN projects p ON p.id = t.project_id "
                "WHERE t.secret_hash = ? AND t.revoked_at IS NULL",
                (secret_hash,),
            ).fetchone()
        )
        return Access(Project(*row[:3]), from_bits(row[3])) if row else None

    async def list_project_tokens(self, project_id: str) -> list[ProjectTokenInfo]:
        return [info for info, _ in await self.project_token_hashes(project_id)]

    async def revoke_project_token(self, token_id: str) -> bool:
        def run(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE project_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now_iso(), token_id),
            )
            return cursor.rowcount == 1

        return await self._write(run)

    # Channels.

    async def create_channel(self, channel: Channel) -> Channel:
        def run(db: sqlite3.Connection) -> Channel:
            try:
                db.execute(
                    f"INSERT INTO channels ({_CHANNEL_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                    (
                        channel.project_id,
                        channel.id,
                        channel.type.value,
                        bytes(channel.state),
                        channel.created_at,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"channel {channel.id!r} exists already") from exc
            return channel

        return await self._write(run)

    async def get_channel(self, project_id: str, channel_id: str) -> Channel | None:
        row = self._read(
            lambda db: db.execute(
                f"SELECT {_CHANNEL_COLUMNS} FROM channels WHERE project_id = ? AND id = ?",
                (project_id, channel_id),
            ).fetchone()
        )
        return _channel(row) if row else None

    async def channel_exists(self, project_id: str, channel_id: str) -> bool:
        row = self._read(
            lambda db: db.execute(
                "SELECT 1 FROM channels WHERE project_id = ? AND id = ?", (project_id, channel_id)
            ).fetchone()
        )
        return row is not None

    async def list_channels(
        self, project_id: str, *, offset: int, limit: int, sort_by: str, descending: bool
    ) -> Page:
        column = _SORTABLE[sort_by]
        direction = "DESC" if descending else "ASC"

        def run(db: sqlite3.Connection) -> Page:
            (total,) = db.execute(
                "SELECT COUNT(*) FROM channels WHERE project_id = ?", (project_id,)
            ).fetchone()
            rows = db.execute(
                f"SELECT {_CHANNEL_COLUMNS} FROM channels WHERE project_id = ? "
                f"ORDER BY {column} {direction}, id {direction} LIMIT ? OFFSET ?",
                (project_id, limit, offset),
            ).fetchall()
            return Page([_channel(row) for row in rows], total)

        return self._read(run)

    async def delete_channel(self, project_id: str, channel_id: str) -> list[str]:
        def run(db: sqlite3.Connection) -> list[str]:
            tokens = [
                row[0]
                for row in db.execute(
                    "SELECT token_id FROM subscriptions WHERE project_id = ? AND channel_id = ?",
                    (project_id, channel_id),
                )
            ]
            cursor = db.execute(
                "DELETE FROM channels WHERE project_id = ? AND id = ?", (project_id, channel_id)
            )
            if cursor.rowcount == 0:
                raise NotFound(f"no channel {channel_id!r} in this project")
            return tokens

        return await self._write(run)

    async def set_channel_state(self, project_id: str, channel_id: str, state: msgspec.Raw) -> None:
        def run(db: sqlite3.Connection) -> None:
            cursor = db.execute(
                "UPDATE channels SET state = ? WHERE project_id = ? AND id = ?",
                (bytes(state), project_id, channel_id),
            )
            if cursor.rowcount == 0:
                raise NotFound(f"no channel {channel_id!r} in this project")

        await self._write(run)

    async def patch_channel_state(
        self, project_id: str, channel_id: str, partial: dict[str, Any], max_bytes: int
    ) -> msgspec.Raw:
        def run(db: sqlite3.Connection) -> msgspec.Raw:
            row = db.execute(
                "SELECT state FROM channels WHERE project_id = ? AND id = ?",
                (project_id, channel_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"no channel {channel_id!r} in this project")
            state = msgspec.json.decode(row[0])
            state.update(partial)
            encoded = msgspec.json.encode(state)
            if len(encoded) > max_bytes:
                raise PayloadTooLarge(
                    f"the patched state would be {len(encoded)} bytes; the limit is {max_bytes}"
                )
            db.execute(
                "UPDATE channels SET state = ? WHERE project_id = ? AND id = ?",
                (encoded, project_id, channel_id),
            )
            return msgspec.Raw(encoded)

        return await self._write(run)

    # Tokens.

    async def create_token(self, token: Token) -> Token:
        def run(db: sqlite3.Connection) -> Token:
            db.execute(
                f"INSERT INTO tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                (
                    token.project_id,
                    token.id,
                    bytes(token.state),
                    token.created_at,
                    token.expires_at,
                ),
            )
            return token

        return await self._write(run)

    async def get_token(self, project_id: str, token_id: str) -> Token | None:
        token = await self.get_token_any_project(token_id)
        return token if token is not None and token.project_id == project_id else None

    async def get_token_any_project(self, token_id: str) -> Token | None:
        row = self._read(
            lambda db: db.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE id = ?", (token_id,)
            ).fetchone()
        )
        return _token(row) if row else None

    async def list_tokens(self, project_id: str) -> list[Token]:
        rows = self._read(
            lambda db: db.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE project_id = ? ORDER BY created_at, id",
                (project_id,),
            ).fetchall()
        )
        return [_token(row) for row in rows]

    async def update_token(
        self,
        project_id: str,
        token_id: str,
        *,
        state: msgspec.Raw | Unchanged = UNCHANGED,
        expires_at: str | Unchanged | None = UNCHANGED,
    ) -> Token:
        def run(db: sqlite3.Connection) -> Token:
            if not isinstance(state, Unchanged):
                db.execute(
                    "UPDATE tokens SET state = ? WHERE project_id = ? AND id = ?",
                    (bytes(state), project_id, token_id),
                )
            if not isinstance(expires_at, Unchanged):
                db.execute(
                    "UPDATE tokens SET expires_at = ? WHERE project_id = ? AND id = ?",
                    (expires_at, project_id, token_id),
                )
            row = db.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE project_id = ? AND id = ?",
                (project_id, token_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"no token {ids.redact(token_id)!r} in this project")
            return _token(row)

        return await self._write(run)

    async def delete_token(self, project_id: str, token_id: str) -> None:
        def run(db: sqlite3.Connection) -> None:
            cursor = db.execute(
                "DELETE FROM tokens WHERE project_id = ? AND id = ?", (project_id, token_id)
            )
            if cursor.rowcount == 0:
                raise NotFound(f"no token {ids.redact(token_id)!r} in this project")

        await self._write(run)

    # Subscriptions.

    async def add_subscription(self, project_id: str, channel_id: str, token_id: str) -> bool:
        def run(db: sqlite3.Connection) -> bool:
            if (
                db.execute(
                    "SELECT 1 FROM channels WHERE project_id = ? AND id = ?",
                    (project_id, channel_id),
                ).fetchone()
                is None
            ):
                raise NotFound(f"no channel {channel_id!r} in this project")
            if (
                db.execute(
                    "SELECT 1 FROM tokens WHERE project_id = ? AND id = ?", (project_id, token_id)
                ).fetchone()
                is None
            ):
                raise NotFound(f"no token {ids.redact(token_id)!r} in this project")
            cursor = db.execute(
                "INSERT OR IGNORE INTO subscriptions (project_id, channel_id, token_id, created_at) "
                "VALUES (?, ?, ?, ?)",
                (project_id, channel_id, token_id, now_iso()),
            )
            return cursor.rowcount == 1

        return await self._write(run)

    async def remove_subscription(self, project_id: str, channel_id: str, token_id: str) -> bool:
        def run(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "DELETE FROM subscriptions WHERE project_id = ? AND channel_id = ? AND token_id = ?",
                (project_id, channel_id, token_id),
            )
            return cursor.rowcount == 1

        return await self._write(run)

    async def is_subscribed(self, project_id: str, channel_id: str, token_id: str) -> bool:
        row = self._read(
            lambda db: db.execute(
                "SELECT 1 FROM subscriptions WHERE project_id = ? AND channel_id = ? AND token_id = ?",
                (project_id, channel_id, token_id),
            ).fetchone()
        )
        return row is not None

    async def channel_tokens(self, project_id: str, channel_id: str) -> list[Token]:
        rows = self._read(
            lambda db: db.execute(
                "SELECT t.project_id, t.id, t.state, t.created_at, t.expires_at "
                "FROM subscriptions s JOIN tokens t ON t.id = s.token_id "
                "WHERE s.project_id = ? AND s.channel_id = ? ORDER BY s.created_at, s.rowid",
                (project_id, channel_id),
            ).fetchall()
        )
        return [_token(row) for row in rows]

    async def token_channels(self, project_id: str, token_id: str) -> list[Channel]:
        rows = self._read(
            lambda db: db.execute(
                "SELECT c.project_id, c.id, c.type, c.state, c.created_at "
                "FROM subscriptions s JOIN channels c "
                "ON c.project_id = s.project_id AND c.id = s.channel_id "
                "WHERE s.project_id = ? AND s.token_id = ? ORDER BY s.created_at, s.rowid",
                (project_id, token_id),
            ).fetchall()
        )
        return [_channel(row) for row in rows]
