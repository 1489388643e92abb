"""The REST API (SPEC §2): routes, project-token auth, the JSON envelope."""

from switchboard.server.api.app import build_app

__all__ = ["build_app"]
