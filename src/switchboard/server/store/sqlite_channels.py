"""Channels, leap tokens and subscriptions in the embedded store.

``channels`` holds each channel's type and state (the JSON bytes as they came in, never
re-encoded); ``tokens`` each leap token's state and expiry; ``subscriptions`` which
token is subscribed to which channel, in the order they were made. A channel and a
token cascade to their subscriptions (and the channel to its history,
``sqlite_history``); a project to all three.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from switchboard.exceptions import Conflict, NotFound, PayloadTooLarge
from switchboard.server import ids
from switchboard.server.clock import now_iso
from switchboard.server.models import UNCHANGED, Channel, ChannelType, Page, Token, Unchanged

T = TypeVar("T")

CHANNELS_SCHEMA = """
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
"""Schema 1, unchanged since."""

_CHANNEL_COLUMNS = "project_id, id, type, state, created_at"
_TOKEN_COLUMNS = "project_id, id, state, created_at, expires_at"
_SORTABLE = {"created_at": "created_at", "id": "id"}


def _channel(row: tuple[Any, ...]) -> Channel:
    return Channel(row[0], row[1], ChannelType(row[2]), msgspec.Raw(row[3]), row[4])


def _token(row: tuple[Any, ...]) -> Token:
    return Token(row[0], row[1], msgspec.Raw(row[2]), row[3], row[4])


class SqliteChannels:
    """The channel, token and subscription methods of
    :class:`~switchboard.server.store.SqliteStore` (a mixin)."""

    if TYPE_CHECKING:

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

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
