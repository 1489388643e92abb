"""Projects and project tokens in Redis (keys in ``store/redis_layout.py``).

A project's name is unique through the ``{projects}:names`` hash, claimed (with the
project's place in the list) right after the project's own hash is written, and undone
if the name is taken. A project token lives under its project's tag; the hash of its
secret leads to it (``ptkh:{hash}``, the lookup every REST call makes: on a cluster a
second round trip, on one Redis the same script) and so does its ID (``ptkp:{id}``,
for a revocation). A revocation writes the token's own hash, which every lookup reads,
so it cuts the token off at once.
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
from switchboard.server.store.redis_layout import RedisLayout

# KEYS: the project hash. ARGV: id, name, created_at. 0: the ID is taken.
_PUT_PROJECT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'name', ARGV[2], 'created_at', ARGV[3])
return 1
"""

# KEYS: the names hash, the project list. ARGV: id, name, created_at ms. 0: name taken.
_LIST_PROJECT = """
if redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""

# KEYS: project hash, token hash, token list. ARGV: id, project, hint, created_at,
# secret hash, created ms, revoked_at or '', permissions. 0: no project; -1: ID taken.
_ADD_PROJECT_TOKEN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'project_id', ARGV[2], 'hint', ARGV[3],
           'created_at', ARGV[4], 'permissions', ARGV[8], 'secret_hash', ARGV[5])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[2], 'revoked_at', ARGV[7]) end
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
return 1
"""

# KEYS: the token hash, the project's generation. ARGV: revoked_at. 0: no such
# unrevoked token. The project's generation is bumped in the same script: every node's
# cached lookup of its tokens is stale from here on.
_REVOKE_PROJECT_TOKEN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], 'revoked_at') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'revoked_at', ARGV[1])
redis.call('INCR', KEYS[2])
return 1
"""

# What follows a token's lookup: its project, permissions and credential generation.
# A token written before permissions existed has no field: '' reads as all. A project
# without a generation key gets one with a random start (ARGV[gen]), so that a Redis
# that lost its keys never hands out again a generation some node cached before (a
# missing key matches no cached generation). Answers id, name, created_at,
# permissions, generation.
_ACCESS_FUNCTION = """
local function access(token_key, project_key, gen_key, random_gen)
  local token = redis.call('HMGET', token_key, 'project_id', 'revoked_at', 'permissions')
  if not token[1] or token[2] then return false end
  local project = redis.call('HMGET', project_key, 'id', 'name', 'created_at')
  if not project[1] then return false end
  table.insert(project, token[3] or '')
  local gen = redis.call('GET', gen_key)
  if not gen then
    gen = random_gen
    redis.call('SET', gen_key, gen)
  end
  table.insert(project, gen)
  return project
end
"""

# The project's side of a REST call's lookup, on a cluster. KEYS: token hash, project
# hash, generation. ARGV: a random generation.
_PROJECT_ACCESS = _ACCESS_FUNCTION + "return access(KEYS[1], KEYS[2], KEYS[3], ARGV[1])\n"

# On a single Redis, both round trips in one (keys named from the lookup's value: a
# cluster refuses that). KEYS: the lookup. ARGV: prefix, a random generation.
_FIND_PROJECT_BY_TOKEN = (
    _ACCESS_FUNCTION
    + """
local found = redis.call('GET', KEYS[1])
if not found then return false end
local sep = string.find(found, ' ', 1, true)
local tag = ARGV[1] .. '{' .. string.sub(found, 1, sep - 1) .. '}:'
return access(tag .. 'ptk:' .. string.sub(found, sep + 1), tag .. 'project', tag .. 'gen',
              ARGV[2])
"""
)

PROJECT_SCRIPTS = [
    ("put_project", _PUT_PROJECT),
    ("list_project", _LIST_PROJECT),
    ("add_project_token", _ADD_PROJECT_TOKEN),
    ("revoke_project_token", _REVOKE_PROJECT_TOKEN),
    ("project_access", _PROJECT_ACCESS),
    ("find_project_by_token", _FIND_PROJECT_BY_TOKEN),
]
"""Registered by ``RedisStore.open`` with its own scripts."""


def _random_generation() -> int:
    """Where a project's credential generation starts (see ``_ACCESS_FUNCTION``)."""
    return secrets.randbits(48) + 1


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
        keys: RedisLayout
        clustered: bool

        async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any: ...
        def _translate(self) -> contextlib.AbstractAsyncContextManager[None]: ...
        @property
        def redis(self) -> Any: ...

    async def put_project(self, project: Project) -> Project:
        # The project's hash first, then its name and place in the list (another slot):
        # a name already taken undoes the first step.
        conflict = Conflict(
            f"a project named {project.name!r} or with ID {project.id!r} exists already"
        )
        project_key = self.keys.project(project.id)
        if not await self._run(
            "put_project", [project_key], [project.id, project.name, project.created_at]
        ):
            raise conflict
        listed = await self._run(
            "list_project",
            [self.keys.project_names(), self.keys.project_list()],
            [project.id, project.name, ms(project.created_at)],
        )
        if not listed:
            async with self._translate():
                await self.redis.delete(project_key)
            raise conflict
        return project

    async def get_project(self, project_id: str) -> Project | None:
        async with self._translate():
            row = await self.redis.hgetall(self.keys.project(project_id))
        if not row:
            return None
        return Project(row[b"id"].decode(), row[b"name"].decode(), row[b"created_at"].decode())

    async def list_projects(self) -> list[Project]:
        async with self._translate():
            project_ids = await self.redis.zrange(self.keys.project_list(), 0, -1)
        found = [await self.get_project(pid.decode()) for pid in project_ids]
        return [p for p in found if p is not None]

    async def put_project_token(self, info: ProjectTokenInfo, secret_hash: str) -> ProjectTokenInfo:
        # IDs are unique across projects: the ID's lookup is claimed first.
        by_id = self.keys.project_token_project(info.id)
        async with self._translate():
            claimed = await self.redis.set(by_id, info.project_id, nx=True)
        if not claimed:
            raise Conflict(f"project token {info.id!r} exists already")
        added = await self._run(
            "add_project_token",
            [
                self.keys.project(info.project_id),
                self.keys.project_token(info.project_id, info.id),
                self.keys.project_tokens(info.project_id),
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
        async with self._translate():
            if added == 1:
                await self.redis.set(
                    self.keys.project_token_by_hash(secret_hash), f"{info.project_id} {info.id}"
                )
            else:
                await self.redis.delete(by_id)
        if added == 0:
            raise NotFound(f"no project {info.project_id!r}")
        if added == -1:
            raise Conflict(f"project token {info.id!r} exists already")
        return info

    async def project_token_hashes(self, project_id: str) -> list[tuple[ProjectTokenInfo, str]]:
        async with self._translate():
            token_ids = await self.redis.zrange(self.keys.project_tokens(project_id), 0, -1)
            pipe = self.redis.pipeline(transaction=False)
            for token_id in token_ids:
                pipe.hgetall(self.keys.project_token(project_id, token_id.decode()))
            rows = await pipe.execute()
        return [(_project_token(row), row[b"secret_hash"].decode()) for row in rows if row]

    async def _project_token_key(self, secret_hash: str) -> tuple[str, str] | None:
        """(project id, token key) of the project token with this hash: the first round
        trip of a lookup, on the hash's own slot."""
        async with self._translate():
            found = await self.redis.get(self.keys.project_token_by_hash(secret_hash))
        if found is None:
            return None
        project_id, _, token_id = found.decode().partition(" ")
        return project_id, self.keys.project_token(project_id, token_id)

    async def find_project_token(self, secret_hash: str) -> ProjectTokenInfo | None:
        found = await self._project_token_key(secret_hash)
        if found is None:
            return None
        async with self._translate():
            row = await self.redis.hgetall(found[1])
        if not row or b"revoked_at" in row:
            return None
        return _project_token(row)

    async def find_project_by_token(self, secret_hash: str) -> Access | None:
        if self.clustered:
            found = await self._project_token_key(secret_hash)
            if found is None:
                return None
            project_id, token_key = found
            keys = [token_key, self.keys.project(project_id), self.keys.generation(project_id)]
            row = await self._run("project_access", keys, [_random_generation()])
        else:
            row = await self._run(
                "find_project_by_token",
                [self.keys.project_token_by_hash(secret_hash)],
                [self.keys.prefix, _random_generation()],
            )
        if not row:
            return None
        project = Project(*(value.decode() for value in row[:3]))
        return Access(project, _permissions(row[3]), int(row[4]))

    async def project_generation(self, project_id: str) -> int:
        async with self._translate():
            value = await self.redis.get(self.keys.generation(project_id))
        return -1 if value is None else int(value)  # -1: no cached generation matches

    async def revoke_project_token(self, token_id: str) -> bool:
        async with self._translate():
            project_id = await self.redis.get(self.keys.project_token_project(token_id))
        if project_id is None:
            return False
        project = project_id.decode()
        keys = [self.keys.project_token(project, token_id), self.keys.generation(project)]
        return bool(await self._run("revoke_project_token", keys, [now_iso()]))
