"""Identifiers: how they are made and which ones are valid.

Project and channel IDs are Pika-style, like Hop's: ``<prefix>_<tail>`` where the tail
is the unpadded base64 of a decimal snowflake (42-bit milliseconds since 2022-01-01,
10-bit node, 12-bit sequence). Secrets (leap tokens, project tokens) carry at least 128
bits from :mod:`secrets` instead, so they cannot be guessed from one another.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
import time

_EPOCH_MS = 1_640_995_200_000
CHANNEL_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
RESERVED_CHANNEL_IDS = frozenset({"tokens"})
"""Not channel IDs: ``/v1/channels/tokens`` is the token routes' (Hop's paths)."""

_RESERVED = "|".join(re.escape(word) for word in sorted(RESERVED_CHANNEL_IDS))
VALID_CHANNEL_ID = f"^(?!(?:{_RESERVED})$){CHANNEL_ID.pattern[1:]}"
"""A valid channel ID, reserved IDs excluded, as one regex. It is the ``{channel_id}``
pattern of ``/openapi.json`` (so a tool that reads only ``pattern`` still sees that
``/v1/channels/tokens`` is no channel's URL); ECMA-262 and Python read it alike."""
CHANNEL_ID_SEGMENT = rf"(?!(?:{_RESERVED})(?:/|$))[^\x7b\x7d/]+"
"""The ``{channel_id}`` of a route (aiohttp's default, ``[^{}/]+``, less the reserved
IDs): ``PUT /v1/channels/tokens`` is then a method that path does not have (405), never
a channel route asked for a channel named "tokens"."""

PROJECT_PREFIX = "project_"
PROJECT_TOKEN_PREFIX = "ptk_"
LEAP_TOKEN_PREFIX = "leap_token_"


class _Snowflake:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._seq = 0
        self._node = secrets.randbits(10)

    def next(self) -> int:
        with self._lock:
            now = int(time.time() * 1000) - _EPOCH_MS
            if now <= self._last_ms:
                self._seq = (self._seq + 1) & 0xFFF
                if self._seq == 0:
                    self._last_ms += 1
                now = self._last_ms
            else:
                self._seq = 0
                self._last_ms = now
            return (now << 22) | (self._node << 12) | self._seq


_snowflake = _Snowflake()


def pika(prefix: str) -> str:
    """A new time-ordered ID such as ``channel_MjcxMDk5Nzg1MTM1MDYzMTA``."""
    tail = base64.b64encode(str(_snowflake.next()).encode()).decode().rstrip("=")
    return f"{prefix}_{tail}"


def new_project_id() -> str:
    return pika("project")


def new_channel_id() -> str:
    return pika("channel")


def new_project_token_id() -> str:
    return pika("ptkid")


def new_leap_token() -> str:
    """A leap token: 192 random bits, URL-safe."""
    return LEAP_TOKEN_PREFIX + secrets.token_urlsafe(24)


def new_project_token() -> str:
    """A project token secret: 256 random bits. Shown once, stored only as a hash."""
    return PROJECT_TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """The stored form of a project token.

    A fast hash is right here: the secret has 256 random bits, so there is nothing
    to brute-force, and lookups happen on every REST call.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_hint(secret: str) -> str:
    """A short, harmless prefix that lets an operator tell tokens apart in a list."""
    return secret[: len(PROJECT_TOKEN_PREFIX) + 4] + "…"


def redact(secret: str | None) -> str | None:
    """How a secret (leap token, project token) appears in logs: never whole."""
    if not secret:
        return secret
    return secret[:12] + "…" if len(secret) > 12 else "…"


def is_valid_channel_id(channel_id: str) -> bool:
    # fullmatch: "$" alone would let a trailing newline through ("game\n").
    return bool(CHANNEL_ID.fullmatch(channel_id)) and channel_id not in RESERVED_CHANNEL_IDS


def member_id(token_id: str) -> str:
    """The public name of a token in presence dispatches: ``member_`` + 24 hex digits.

    A one-way function of the token ID (which has at least 128 random bits, so the ID
    cannot be found back from it), the same on every node; REST presence shows both so
    a backend can match them.
    """
    digest = hashlib.sha256(b"switchboard-presence\x00" + token_id.encode()).hexdigest()
    return "member_" + digest[:24]
