"""Project tokens: authenticating a REST call, creating projects and their tokens."""

from __future__ import annotations

import hmac

from switchboard.exceptions import (
    InvalidRequest,
    Unauthorized,
)
from switchboard.server import ids
from switchboard.server.models import (
    Access,
    Project,
)
from switchboard.server.permissions import ALL, Permission
from switchboard.server.service._base import ServiceBase

MAX_CACHED_ACCESS = 10_000
"""Project-token lookups a node keeps (only tokens that were found; all dropped at once
when full)."""


class ProjectOperations(ServiceBase):
    """Authentication and the command line's project operations."""

    async def authenticate(self, secret: str | None, *, deferred: bool = False) -> Access:
        """The project a project token belongs to and its permissions. Raises Unauthorized.

        Lookups are cached on this node by the secret's hash, each with the project's
        credential generation (bumped by every revocation, from any node or the command
        line). A cached answer is used only once the generation is checked against the
        store: here by one small read, or, with ``deferred``, by the caller's own store
        operation, which must take ``Access.generation`` and raise StaleAccess if it is
        out of date (a publish does: the check rides on its one store call). So a
        revocation applies to the very next call on every node.
        """
        if not secret or not secret.startswith(ids.PROJECT_TOKEN_PREFIX):
            raise Unauthorized("a project token (ptk_…) is required in the Authorization header")
        secret_hash = ids.hash_secret(secret)
        cached = self._access.get(secret_hash)
        if cached is not None:
            if deferred:
                return cached
            generation = await self.store.project_generation(cached.project.id)
            if generation == cached.generation:
                return cached
            self.forget_access(cached.project.id)
        access = await self.store.find_project_by_token(secret_hash)
        # The lookup is by hash, so timing says nothing about the secret; compare anyway
        # so that the decision itself is constant-time.
        if access is None or not hmac.compare_digest(secret_hash, ids.hash_secret(secret)):
            raise Unauthorized("unknown or revoked project token")
        if len(self._access) >= MAX_CACHED_ACCESS:
            self._access.clear()
        self._access[secret_hash] = access
        return access

    async def create_project(self, name: str) -> tuple[Project, str]:
        """Create a project and its first project token; return both (the secret, once)."""
        if not 1 <= len(name) <= 128:
            raise InvalidRequest("project name must be 1 to 128 characters")
        project = await self.store.create_project(name)
        secret = await self.create_project_token(project.id)
        return project, secret

    async def create_project_token(self, project_id: str, permissions: Permission = ALL) -> str:
        """Create a project token with ``permissions``; return its secret (shown once)."""
        if not permissions & ALL:
            raise InvalidRequest("a project token needs at least one permission")
        secret = ids.new_project_token()
        await self.store.add_project_token(
            project_id, ids.hash_secret(secret), ids.secret_hint(secret), permissions & ALL
        )
        return secret
