"""The JSON envelope of every REST response, and the one place errors become responses."""

from __future__ import annotations

import math
from typing import Any

import msgspec
from aiohttp import web

from switchboard.exceptions import APIError, MissingPermission, RateLimited

_encoder = msgspec.json.Encoder()


def ok(data: Any = None) -> web.Response:
    """``200 {"success": true, "data": ...}``; a call with no result gets ``data: {}``."""
    body = _encoder.encode({"success": True, "data": {} if data is None else data})
    return web.Response(body=body, content_type="application/json")


def error_response(exc: APIError, headers: dict[str, str] | None = None) -> web.Response:
    """The error envelope for ``exc``, with its status. Never a stack trace."""
    error: dict[str, str] = {"code": exc.code, "message": exc.message}
    if isinstance(exc, MissingPermission) and exc.permission is not None:
        # Beside code and message (Hop's SDKs read only those): what a client must ask for.
        error["permission"] = exc.permission
    body = _encoder.encode({"success": False, "error": error})
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        # Whole seconds, rounded up (RFC 9110 §10.2.3): never "0" while still limited.
        headers = {**(headers or {}), "Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return web.Response(
        status=exc.status, body=body, content_type="application/json", headers=headers
    )
