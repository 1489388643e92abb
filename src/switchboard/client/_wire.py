"""Leap frames the client sends and reads, and the socket URL (SPEC §3).

The opcodes (``Op``) and close codes (``CloseCode``) are shared with the server, in
``switchboard._leap_ops``.
"""

from __future__ import annotations

import json
import zlib
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from switchboard._leap_ops import Op

DEFAULT_URL = "ws://127.0.0.1:4000/ws"
COMPRESSIONS = ("none", "zlib")
INBOX = "$inbox"
"""The token's inbox where a channel is named (docs/inbox.md): its position is held,
recovered (IDENTIFY ``recover``) and reported (``Recovery.channel``) under this name,
which no channel ID can be (``$`` is not allowed in one)."""


def socket_url(url: str, compression: str) -> str:
    """``url`` with ``encoding=json`` and ``compression`` in its query.

    ``http(s)://host:port`` is accepted too and becomes ``ws(s)://host:port/ws``.
    """
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"url must be a ws:// or wss:// URL, got {url!r}")
    path = parts.path if parts.path not in ("", "/") else "/ws"
    query = dict(parse_qsl(parts.query))
    query.setdefault("encoding", "json")
    query["compression"] = compression
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))


def encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def decode(message: str | bytes) -> dict[str, Any]:
    """A server frame. Binary frames are one independent zlib stream each (``compression=zlib``)."""
    text = zlib.decompress(message) if isinstance(message, bytes) else message
    frame = json.loads(text)
    if not isinstance(frame, dict) or not isinstance(frame.get("op"), int):
        raise ValueError(f"not a Leap frame: {frame!r}")
    return frame


def identify(project_id: str, token: str | None, extra: dict[str, Any] | None = None) -> str:
    """IDENTIFY; ``extra`` holds Switchboard's additions (``expiry_notice``, ``recover``)."""
    d: dict[str, Any] = {"project_id": project_id}
    if token is not None:
        d["token"] = token
    if extra:
        d.update(extra)
    return encode({"op": Op.IDENTIFY, "d": d})


def dispatch(channel: str | None, event: str, data: Any = None) -> str:
    # No "u": the official JS client sends {c, e, d}; the server ignores it anyway.
    return encode({"op": Op.DISPATCH, "d": {"c": channel, "e": event, "d": data}})


HEARTBEAT = encode({"op": Op.HEARTBEAT})


def probe_reply(tag: str) -> str:
    return encode({"op": Op.HEARTBEAT, "d": {"tag": tag}})
