"""Project settings and the webhook delivery log in the embedded store.

``project_settings`` holds one JSON document per project and key (``webhooks`` …);
``webhook_deliveries`` the last attempts to deliver a project's webhooks, newest last,
trimmed to a bound in the same transaction that adds one. Both cascade from
``projects``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import msgspec

from switchboard.exceptions import NotFound

T = TypeVar("T")

SETTINGS_SCHEMA = """
CREATE TABLE IF NOT EXISTS project_settings (
    project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    value       BLOB NOT NULL,
    PRIMARY KEY (project_id, key)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    entry       BLOB NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_project ON webhook_deliveries(project_id, seq);
"""
"""Added in schema 4; ``CREATE … IF NOT EXISTS`` is the whole migration from 3."""


class SqliteSettings:
    """The settings methods of :class:`~switchboard.server.store.SqliteStore` (a mixin)."""

    if TYPE_CHECKING:

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def get_project_setting(self, project_id: str, key: str) -> msgspec.Raw | None:
        row = self._read(
            lambda db: db.execute(
                "SELECT value FROM project_settings WHERE project_id = ? AND key = ?",
                (project_id, key),
            ).fetchone()
        )
        return None if row is None else msgspec.Raw(row[0])

    async def set_project_setting(
        self, project_id: str, key: str, value: msgspec.Raw | None
    ) -> None:
        def run(db: sqlite3.Connection) -> None:
            if db.execute("SELECT 1 FROM projects WHERE id = ?", (project_id,)).fetchone() is None:
                raise NotFound(f"no project {project_id!r}")
            if value is None:
                db.execute(
                    "DELETE FROM project_settings WHERE project_id = ? AND key = ?",
                    (project_id, key),
                )
            else:
                db.execute(
                    "INSERT INTO project_settings (project_id, key, value) VALUES (?, ?, ?) "
                    "ON CONFLICT (project_id, key) DO UPDATE SET value = excluded.value",
                    (project_id, key, bytes(value)),
                )

        await self._write(run)

    async def project_settings(self, project_id: str) -> dict[str, msgspec.Raw]:
        rows = self._read(
            lambda db: db.execute(
                "SELECT key, value FROM project_settings WHERE project_id = ? ORDER BY key",
                (project_id,),
            ).fetchall()
        )
        return {key: msgspec.Raw(value) for key, value in rows}

    async def add_webhook_delivery(self, project_id: str, entry: bytes, keep: int) -> None:
        def run(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO webhook_deliveries (project_id, entry) VALUES (?, ?)",
                (project_id, entry),
            )
            db.execute(
                "DELETE FROM webhook_deliveries WHERE project_id = ? AND seq <= ("
                "SELECT seq FROM webhook_deliveries WHERE project_id = ? "
                "ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (project_id, project_id, keep),
            )

        await self._write(run)

    async def webhook_deliveries(self, project_id: str, limit: int) -> list[msgspec.Raw]:
        rows = self._read(
            lambda db: db.execute(
                "SELECT entry FROM webhook_deliveries WHERE project_id = ? "
                "ORDER BY seq DESC LIMIT ?",
                (project_id, limit),
            ).fetchall()
        )
        return [msgspec.Raw(entry) for (entry,) in rows]
