"""CORS for the REST API: which browser origins may call it, and preflight answers.

Off unless origins are configured (``--cors-origin``), as with any API whose callers
are backends. With origins set:

- a request whose ``Origin`` is allowed gets ``Access-Control-Allow-Origin`` (the origin
  itself, with ``Vary: Origin``; ``*`` when every origin is allowed) on every response,
  errors included, so browser code can read the error envelope and ``Retry-After``;
- a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from an allowed origin
  is answered 204 with the methods and headers the API accepts; from any other origin
  403 with the envelope;
- credentials (cookies) are never allowed: the API authenticates with the
  ``Authorization`` header, which a preflight lists as allowed.

These are steps of the app's one request middleware (``api/app.py``), not a middleware
of their own. The WebSocket gateway does not use CORS (browsers do not preflight
WebSockets); its ``Origin`` check uses the same
:func:`~switchboard.server.edge.origins.origin_allowed` with its own list (``--ws-origin``).
"""

from __future__ import annotations

from aiohttp import web

from switchboard.exceptions import Forbidden
from switchboard.server.api.envelope import error_response
from switchboard.server.edge.origins import origin_allowed

ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE"
ALLOWED_HEADERS = "Authorization, Content-Type"
EXPOSED_HEADERS = "Retry-After"
MAX_AGE_S = 600


def is_preflight(request: web.Request) -> bool:
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers


def preflight_response(request: web.Request, origin: str, origins: tuple[str, ...]) -> web.Response:
    """204 with what the API accepts, or 403 for an origin that is not allowed."""
    if not origin_allowed(origin, origins):
        return error_response(Forbidden(f"the origin {origin} may not call this API"))
    requested = request.headers.get("Access-Control-Request-Headers")
    response = web.Response(status=204)
    response.headers.update(
        {
            "Access-Control-Allow-Methods": ALLOWED_METHODS,
            # Echo what the browser asks for: the API ignores headers it does not
            # read, and authentication is by header, not cookie.
            "Access-Control-Allow-Headers": requested or ALLOWED_HEADERS,
            "Access-Control-Max-Age": str(MAX_AGE_S),
        }
    )
    return response


def add_headers(response: web.StreamResponse, origin: str, origins: tuple[str, ...]) -> None:
    """Let a page of ``origin`` read ``response``, if the origin is allowed."""
    if response.prepared or not origin_allowed(origin, origins):
        return
    any_origin = "*" in origins
    response.headers["Access-Control-Allow-Origin"] = "*" if any_origin else origin
    response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    if not any_origin:
        response.headers["Vary"] = "Origin"
