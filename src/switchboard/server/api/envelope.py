"""The JSON envelope of every REST response, and the one place errors become responses."""

from __future__ import annotations

import math
from typing import Any

import msgspec
from aiohttp import web

from switchboard.exceptions import APIError, MissingPermission, RateLimited

_encoder = msgspec.json.Encoder()


OK_EMPTY = b'{"success":true,"data":{}}'
"""The body of :func:`ok` for a call with no result."""


def ok_body(data: Any = None) -> bytes:
    """The body of :func:`ok` (the REST publish's fast path, ``api/fast_publish.py``, too)."""
    if data is None:
        return OK_EMPTY
    return _encoder.encode({"success": True, "data": data})


def ok(data: Any = None) -> web.Response:
    """``200 {"success": true, "data": ...}``; a call with no result gets ``data: {}``."""
    return web.Response(body=ok_body(data), content_type="application/json")


def error_parts(exc: APIError) -> tuple[bytes, dict[str, str]]:
    """The error envelope's body for ``exc`` and the headers it adds (``Retry-After``)."""
    error: dict[str, str] = {"code": exc.code, "message": exc.message}
    if isinstance(exc, MissingPermission) and exc.permission is not None:
        # Beside code and message (Hop's SDKs read only those): what a client must ask for.
        error["permission"] = exc.permission
    body = _encoder.encode({"success": False, "error": error})
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        # Whole seconds, rounded up (RFC 9110 §10.2.3): never "0" while still limited.
        return body, {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return body, {}


def error_response(exc: APIError, headers: dict[str, str] | None = None) -> web.Response:
    """The error envelope for ``exc``, with its status. Never a stack trace."""
    body, added = error_parts(exc)
    if added:
        headers = {**(headers or {}), **added}
    return web.Response(
        status=exc.status, body=body, content_type="application/json", headers=headers
    )
