"""How a REST response is judged beyond the document's schemas: the envelope, the code
that fits its status, a 405's ``Allow``, and which 400s valid data may get.

Used by the REST fuzzer (``rest_fuzz.py``) and by the malformed-request tests beside it.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fuzz.spec_routes import Route

CODES = {
    400: "invalid_request",
    401: "invalid_auth",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "already_exists",
    413: "payload_too_large",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}
"""The error code that fits each status (SPEC §2)."""

SEMANTIC_REFUSALS = {
    "keeps no history": "a channel's own setting: history is read only where it is kept",
    "keeps no token inboxes": "a project's own setting: inboxes are read only where they are kept",
    "must be in the future": "a token's expiry is checked against the clock",
    "give a url for events, an authorize_url, or both": "a rule across two fields",
    "events must name at least one event when url is set": "a rule across two fields",
    "must be an absolute http:// or https:// URL": "URL syntax, past what a pattern says",
    "is not a URL": "URL syntax, past what a pattern says",
}
"""The 400s valid data may get: each message part, and why the schema cannot say it."""


def envelope_problem(status: int, content_type: str, content: bytes) -> str | None:
    """Why a response is not the JSON envelope with a fitting status, or ``None``."""
    if not content_type.startswith("application/json"):
        return f"content-type {content_type!r}, not JSON"
    try:
        body = json.loads(content)
    except ValueError:
        return "the body is not JSON"
    if not isinstance(body, dict):
        return "the body is not an object"
    if status == 200:
        if body.get("success") is not True or "data" not in body:
            return "a 200 that is not {success: true, data}"
        return None
    error = body.get("error")
    if body.get("success") is not False or not isinstance(error, dict):
        return "an error that is not {success: false, error}"
    if not isinstance(error.get("message"), str) or not error["message"]:
        return "an error without a message"
    if CODES.get(status) != error.get("code"):
        return f"status {status} with code {error.get('code')!r}"
    return None


def not_allowed_problem(route: Route, status: int, headers: Any, content: bytes) -> str | None:
    """Why a response to a method ``route`` lacks is not its 405, or ``None``."""
    if status != 405:
        return f"a method {route.template} does not have got {status}, not 405"
    allow = headers.get("allow")
    allow = ", ".join(allow) if isinstance(allow, list) else allow or ""
    if set(allow.split(", ")) != route.allow:
        return f"Allow: {allow!r}, not {', '.join(sorted(route.allow))}"
    return envelope_problem(status, "application/json", content)


def refusal_problem(status: int, content: bytes) -> str | None:
    """Why a 400 to valid data is a mismatch (the schema allowed it), or ``None``."""
    if status != 400:
        return None
    message = json.loads(content)["error"]["message"]
    if any(reason in message for reason in SEMANTIC_REFUSALS):
        return None
    return f"valid data refused: {message[:120]!r}"
