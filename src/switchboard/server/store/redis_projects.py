"""Projects and project tokens in Redis (keys in ``store/redis.py``'s docstring).

A project's name is unique through the ``project-names`` hash, claimed in the same
script that writes the project. A project token is found by the hash of its secret
(``ptk:{hash}``), the one lookup every REST call makes; ``ptkid:{id}`` leads from its ID
to that hash for a revocation, and ``ptks:{project}`` lists a project's tokens.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import TYPE_CHECKING, Any

from switchboard.exceptions import Conflict, NotFound
from switchboard.server.clock import now_iso
from switchboard.server.models import Access, Project, ProjectTokenInfo
from switchboard.server.permissions import ALL, Permission, from_bits
from switchboard.server.store.redis_fields import ms, text

_CREATE_PROJECT = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'name', ARGV[2], 'created_at', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
return 1
"""

_ADD_PROJECT_TOKEN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'project_id', ARGV[2], 'hint', ARGV[3],
           'created_at', ARGV[4], 'permissions', ARGV[8])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[2], 'revoked_at', ARGV[7]) end
redis.call('SET', KEYS[3], ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[1])
return 1
"""

# ARGV: the ptk: prefix, the time, the gen: prefix. The project's generation is bumped
# in the same script: every node's cached lookup of its tokens is stale from here on.
_REVOKE_PROJECT_TOKEN = """
local secret_hash = redis.call('GET', KEYS[1])
if not secret_hash then return 0 end
local key = ARGV[1] .. secret_hash
if redis.call('HEXISTS', key, 'revoked_at') == 1 then return 0 end
redis.call('HSET', key, 'revoked_at', ARGV[2])
redis.call('INCR', ARGV[3] .. redis.call('HGET', key, 'project_id'))
return 1
"""

# A token written before permissions existed has no field: '' reads as all. ARGV: the
# project: prefix, the gen: prefix, a random generation to start from. Answers id, name,
# created_at, permissions, generation. A project without a generation key gets one with
# a random start, so that a Redis that lost its keys never hands out again a generation
# some node cached before (a missing key matches no cached generation).
_FIND_PROJECT_BY_TOKEN = """
local token = redis.call('HMGET', KEYS[1], 'project_id', 'revoked_at', 'permissions')
if not token[1] or token[2] then return false end
local project = redis.call('HMGET', ARGV[1] .. token[1], 'id', 'name', 'created_at')
if not project[1] then return false end
table.insert(project, token[3] or '')
local gen = redis.call('GET', ARGV[2] .. token[1])
if not gen then
  gen = ARGV[3]
  redis.call('SET', ARGV[2] .. token[1], gen)
end
table.insert(project, gen)
return project
"""

PROJECT_SCRIPTS = [
    ("create_project", _CREATE_PROJECT),
    ("add_project_token", _ADD_PROJECT_TOKEN),
    ("revoke_project_token", _REVOKE_PROJECT_TOKEN),
    ("find_project_by_token", _FIND_PROJECT_BY_TOKEN),
]
"""Registered by ``RedisStore.open`` with its own scripts."""


def _permissions(value: bytes | None) -> Permission:
    """A stored bit field; absent or empty (a token older than permissions) is all."""
    return from_bits(int(value)) if value else ALL


def _project_token(row: dict[bytes, bytes]) -> ProjectTokenInfo:
    return ProjectTokenInfo(
        row[b"id"].decode(),
        row[b"project_id"].decode(),
        row[b"hint"].decode(),
        row[b"created_at"].decode(),
        text(row.get(b"revoked_at")),
        _permissions(row.get(b"permissions")),
    )


class RedisProjects:
    """The project methods of :class:`~switchboard.server.store.redis.RedisStore`
    (a mixin)."""

    if TYPE_CHECKING:

        async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any: ...
        def _k(self, *parts: str) -> str: ...
        def _translate(self) -> contextlib.AbstractAsyncContextManager[None]: ...
        @property
        def redis(self) -> Any: ...

    async def put_project(self, project: Project) -> Project:
        created = await self._run(
            "create_project",
            [self._k("project-names"), self._k("project", project.id), self._k("projects")],
            [project.id, project.name, project.created_at, ms(project.created_at)],
        )
        if not created:
            raise Conflict(
                f"a project named {project.name!r} or with ID {project.id!r} exists already"
            )
        return project

    async def get_project(self, project_id: str) -> Project | None:
        async with self._translate():
            row = await self.redis.hgetall(self._k("project", project_id))
        if not row:
            return None
        return Project(row[b"id"].decode(), row[b"name"].decode(), row[b"created_at"].decode())

    async def list_projects(self) -> list[Project]:
        async with self._translate():
            project_ids = await self.redis.zrange(self._k("projects"), 0, -1)
        found = [await self.get_project(pid.decode()) for pid in project_ids]
        return [p for p in found if p is not None]

    async def put_project_token(self, info: ProjectTokenInfo, secret_hash: str) -> ProjectTokenInfo:
        added = await self._run(
            "add_project_token",
            [
                self._k("project", info.project_id),
                self._k("ptk", secret_hash),
                self._k("ptkid", info.id),
                self._k("ptks", info.project_id),
            ],
            [
                info.id,
                info.project_id,
                info.hint,
                info.created_at,
                secret_hash,
                ms(info.created_at),
                info.revoked_at or "",
                int(info.permissions),
            ],
        )
        if added == 0:
            raise NotFound(f"no project {info.project_id!r}")
        if added == -1:
            raise Conflict(f"project token {info.id!r} exists already")
        return info

    async def project_token_hashes(self, project_id: str) -> list[tuple[ProjectTokenInfo, str]]:
        async with self._translate():
            token_ids = await self.redis.zrange(self._k("ptks", project_id), 0, -1)
            found = []
            for token_id in token_ids:
                secret_hash = await self.redis.get(self._k("ptkid", token_id.decode()))
                if secret_hash is not None:
                    row = await self.redis.hgetall(self._k("ptk", secret_hash.decode()))
                    if row:
                        found.append((_project_token(row), secret_hash.decode()))
        return found

    async def find_project_token(self, secret_hash: str) -> ProjectTokenInfo | None:
        async with self._translate():
            row = await self.redis.hgetall(self._k("ptk", secret_hash))
        if not row or b"revoked_at" in row:
            return None
        return _project_token(row)

    async def find_project_by_token(self, secret_hash: str) -> Access | None:
        row = await self._run(
            "find_project_by_token",
            [self._k("ptk", secret_hash)],
            [self._k("project", ""), self._k("gen", ""), secrets.randbits(48) + 1],
        )
        if not row:
            return None
        project = Project(*(value.decode() for value in row[:3]))
        return Access(project, _permissions(row[3]), int(row[4]))

    async def project_generation(self, project_id: str) -> int:
        async with self._translate():
            value = await self.redis.get(self._k("gen", project_id))
        return -1 if value is None else int(value)  # -1: no cached generation matches

    async def revoke_project_token(self, token_id: str) -> bool:
        return bool(
            await self._run(
                "revoke_project_token",
                [self._k("ptkid", token_id)],
                [self._k("ptk", ""), now_iso(), self._k("gen", "")],
            )
        )
