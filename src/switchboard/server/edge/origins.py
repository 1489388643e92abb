"""Origin allow-lists, shared by CORS on the REST API and the gateway's Origin check."""

from __future__ import annotations

from collections.abc import Iterable


def origin_allowed(origin: str, allowed: Iterable[str]) -> bool:
    """Whether ``origin`` (``scheme://host[:port]``) is in ``allowed`` (``*`` matches all).

    Compared without case and without a trailing slash, as browsers send it.
    """
    origin = origin.rstrip("/").lower()
    return any(a == "*" or a.rstrip("/").lower() == origin for a in allowed)
