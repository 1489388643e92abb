"""Verify the webhooks a Switchboard server sends (and sign them: the server uses this).

Every webhook request carries ``X-Switchboard-Signature: t=<unix seconds>,v1=<hex>``,
where ``v1`` is the HMAC-SHA256, keyed with the project's webhook secret, of
``f"{t}.".encode() + body``. Signing the time with the body lets a receiver refuse a
replayed request: :func:`verify` checks the HMAC in constant time and that ``t`` is
within ``tolerance_s`` of its own clock.

Standard library only, so a receiver needs nothing but this package::

    from switchboard.webhooks import verify

    if not verify(secret, request_body, request.headers["X-Switchboard-Signature"]):
        return 401
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["SIGNATURE_HEADER", "sign", "signature_header", "verify"]

SIGNATURE_HEADER = "X-Switchboard-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"{timestamp}." + body`` keyed with ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The value of :data:`SIGNATURE_HEADER` for ``body``, signed now (or at ``timestamp``)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={sign(secret, t, body)}"


def verify(
    secret: str,
    body: bytes,
    header: str | None,
    *,
    tolerance_s: float = 300,
    now: float | None = None,
) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` and is at most ``tolerance_s`` old
    (or ahead). Any malformed header is simply False."""
    if not header:
        return False
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body)
    # Several v1 values may be sent while a secret is being rotated; any one may match.
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))
