"""Projects and project tokens in the embedded store.

``projects`` holds one row per project (its name unique); ``project_tokens`` the
project's secrets as SHA-256 hashes (never the secret), each with its hint, its
permission bit field and, once revoked, the time it was. Deleting a project deletes its
tokens.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from switchboard.exceptions import Conflict, NotFound
from switchboard.server.clock import now_iso
from switchboard.server.models import Access, Project, ProjectTokenInfo
from switchboard.server.permissions import from_bits

T = TypeVar("T")

PROJECTS_SCHEMA = """
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
"""
"""Schema 1 (``permissions`` came in 2: ``SqliteStore`` adds it to an older table)."""

GENERATIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS project_generations (
    project_id  TEXT PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
    generation  INTEGER NOT NULL
) STRICT;
"""
"""Schema 5: a project's credential generation (absent: 0), bumped by every revocation
of one of its project tokens, so that a node's cached lookups know they are stale."""

GENERATION_OF = "COALESCE((SELECT generation FROM project_generations WHERE project_id = {}), 0)"
"""A SQL expression: the generation of the project ID ``{}`` (a column or ``?``)."""

_PROJECT_TOKEN_COLUMNS = "id, project_id, hint, created_at, revoked_at, permissions"


def _project_token(row: tuple[Any, ...]) -> ProjectTokenInfo:
    return ProjectTokenInfo(row[0], row[1], row[2], row[3], row[4], from_bits(row[5]))


class SqliteProjects:
    """The project methods of :class:`~switchboard.server.store.SqliteStore` (a mixin)."""

    if TYPE_CHECKING:

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

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
                "SELECT p.id, p.name, p.created_at, t.permissions, "
                f"{GENERATION_OF.format('p.id')} FROM project_tokens t "
                "JOIN projects p ON p.id = t.project_id "
                "WHERE t.secret_hash = ? AND t.revoked_at IS NULL",
                (secret_hash,),
            ).fetchone()
        )
        return Access(Project(*row[:3]), from_bits(row[3]), row[4]) if row else None

    async def project_generation(self, project_id: str) -> int:
        row = self._read(
            lambda db: db.execute(f"SELECT {GENERATION_OF.format('?')}", (project_id,)).fetchone()
        )
        return int(row[0])

    async def revoke_project_token(self, token_id: str) -> bool:
        def run(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE project_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now_iso(), token_id),
            )
            if cursor.rowcount != 1:
                return False
            # In the same transaction: every node's cached lookup of the project's
            # tokens is stale from this commit on (service/projects.py).
            db.execute(
                "INSERT INTO project_generations (project_id, generation) "
                "SELECT project_id, 1 FROM project_tokens WHERE id = ? "
                "ON CONFLICT (project_id) DO UPDATE SET generation = generation + 1",
                (token_id,),
            )
            return True

        return await self._write(run)
