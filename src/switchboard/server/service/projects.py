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


class ProjectOperations(ServiceBase):
    """Authentication and the command line's project operations."""

    async def authenticate(self, secret: str | None) -> Access:
        """The project a project token belongs to and its permissions. Raises Unauthorized."""
        if not secret or not secret.startswith(ids.PROJECT_TOKEN_PREFIX):
            raise Unauthorized("a project token (ptk_…) is required in the Authorization header")
        secret_hash = ids.hash_secret(secret)
        # One read: the token's project, if the token exists and is not revoked. Nothing
        # is cached, so a revocation (from any node, or the command line) applies to the
        # very next call.
        access = await self.store.find_project_by_token(secret_hash)
        # The lookup is by hash, so timing says nothing about the secret; compare anyway
        # so that the decision itself is constant-time.
        if access is None or not hmac.compare_digest(secret_hash, ids.hash_secret(secret)):
            raise Unauthorized("unknown or revoked project token")
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
