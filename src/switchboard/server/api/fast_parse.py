"""Raw HTTP/1.1 for the REST publish's fast path: which bytes it may take, and where
the messages aiohttp takes end.

:func:`parse` reads one request at a position of a connection's bytes and says
whether the fast path (``api/fast_publish.py``) may answer it: only a plain
``POST /v1/channels/{channel_id}/messages HTTP/1.1`` whose head is in the shape every
parser reads alike, with its whole ``Content-Length`` body present. Anything it is not
sure of is :data:`SLOW`: aiohttp gets those bytes unchanged and answers as always.

:class:`Framer` follows the bytes handed to aiohttp, so the connection knows when
aiohttp's parser is between messages again (then the fast path may take the next
request); bytes it cannot frame for certain (chunked bodies, upgrades, a head it does
not read) keep the connection aiohttp's for good.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_HEAD = 8000
"""Longest head the fast path reads (aiohttp refuses a line over 8190 bytes)."""
MAX_FIELDS = 100
"""Most header lines the fast path reads (aiohttp refuses over 128)."""

NEED_MORE = 0
""":func:`parse`: the head is not complete yet."""
SLOW = 1
""":func:`parse`: aiohttp's to answer."""

_PREFIX = b"POST /v1/channels/"
_SUFFIX = b"/messages HTTP/1.1"
_CHANNEL_ID = re.compile(rb"[A-Za-z0-9_.:@-]{1,128}")
"""A channel ID as it stands in the path; anything percent-encoded is aiohttp's."""
_TOKENS = b"tokens/"
_TOKEN_ID = re.compile(rb"[A-Za-z0-9_-]{1,200}")
"""A token ID as it stands in the path (``POST /v1/channels/tokens/:token/messages``)."""
_NOT_CHANNELS = frozenset({b".", b"..", b"tokens"})
"""Segments a URL parser resolves (``.``, ``..``), and the token routes' ``tokens``."""
_FIELDS = re.compile(rb"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e]*\r\n)*")
"""Header lines every parser reads alike: a token name, a colon, printable ASCII."""
_DIGITS = re.compile(rb"0|[1-9][0-9]{0,8}")

_READ = {b"content-length", b"authorization", b"connection", b"host"}
_REFUSED = {b"transfer-encoding", b"expect", b"upgrade", b"content-encoding"}
"""Headers that change how aiohttp reads or answers a request: theirs."""


@dataclass(slots=True)
class FastRequest:
    """A publish (or a direct message) the fast path may answer."""

    target: str
    """The channel's ID, or with ``direct`` the token's."""
    direct: bool
    """A direct message to a token (``POST /v1/channels/tokens/:token/messages``)."""
    authorization: str
    body: bytes
    close: bool
    """``Connection: close``: the connection ends after the answer."""
    end: int
    """Where the request ends in the bytes it was parsed from."""


def parse(buf: bytes, pos: int, max_body: int, origin_matters: bool) -> FastRequest | int:
    """The request at ``buf[pos:]``, :data:`NEED_MORE` or :data:`SLOW`.

    A request is the fast path's when its request line is exactly the publish route's
    with a plain channel ID (no query, no escapes), or the direct message route's with
    a plain token ID, and its head has one
    ``Content-Length`` of at most ``max_body``, one ``Host``, at most one
    ``Authorization`` and ``Connection`` (``close`` or ``keep-alive``), no header that
    changes how the body is read or the answer made (``Transfer-Encoding``, ``Expect``,
    ``Upgrade``, ``Content-Encoding``; ``Origin`` when ``origin_matters``, i.e. with
    CORS on), and its body is all in ``buf``. A request whose head is complete but
    whose body is not is SLOW: aiohttp's body deadline applies to it.
    """
    end = buf.find(b"\r\n\r\n", pos)
    if end < 0:
        return NEED_MORE if len(buf) - pos <= MAX_HEAD and _may_be_fast(buf, pos) else SLOW
    line_end = buf.find(b"\r\n", pos)
    if (
        end - pos > MAX_HEAD
        or not buf.startswith(_PREFIX, pos)
        or not buf.endswith(_SUFFIX, pos, line_end)
    ):
        return SLOW
    target = buf[pos + len(_PREFIX) : line_end - len(_SUFFIX)]
    direct = target.startswith(_TOKENS)
    if direct:
        target = target[len(_TOKENS) :]
        if not _TOKEN_ID.fullmatch(target):
            return SLOW
    elif not _CHANNEL_ID.fullmatch(target) or target in _NOT_CHANNELS:
        return SLOW
    fields = buf[line_end + 2 : end + 2]
    if not _FIELDS.fullmatch(fields):
        return SLOW
    found = _headers(fields, origin_matters)
    if found is None:
        return SLOW
    length_field, authorization, connection = found
    length = int(length_field)
    body_at = end + 4
    if length > max_body or len(buf) - body_at < length:
        return SLOW
    return FastRequest(
        target.decode("ascii"),
        direct,
        authorization,
        buf[body_at : body_at + length],
        connection == b"close",
        body_at + length,
    )


def _may_be_fast(buf: bytes, pos: int) -> bool:
    """Whether an incomplete head may still be the publish route's: worth waiting for."""
    start = buf[pos : pos + len(_PREFIX)]
    return _PREFIX.startswith(start)


def _headers(fields: bytes, origin_matters: bool) -> tuple[bytes, str, bytes] | None:
    """(Content-Length, Authorization, Connection) from checked header lines, or None
    if the request is aiohttp's."""
    lines = fields.split(b"\r\n")
    if len(lines) > MAX_FIELDS:
        return None
    seen: dict[bytes, bytes] = {}
    for line in lines[:-1]:
        name, _, value = line.partition(b":")
        name = name.lower()
        if name in _READ:
            if name in seen:
                return None
            seen[name] = value.strip(b" \t")
        elif name in _REFUSED or (origin_matters and name == b"origin"):
            return None
    length = seen.get(b"content-length")
    connection = seen.get(b"connection", b"keep-alive").lower()
    if (
        length is None
        or not _DIGITS.fullmatch(length)
        or b"host" not in seen
        or connection not in (b"close", b"keep-alive")
    ):
        return None
    return length, seen.get(b"authorization", b"").decode("ascii"), connection


@dataclass(slots=True)
class Framer:
    """Follows the bytes handed to aiohttp, message by message.

    ``at_boundary``: every byte handed over so far belongs to a message whose end was
    also handed over, so aiohttp's parser holds nothing partial. ``lost``: bytes came
    that it cannot frame for certain; aiohttp keeps the connection for good.
    """

    owed: int = 0
    """Body bytes of the last message still to come."""
    head: bytes = b""
    """The start of a head whose end has not come yet."""
    lost: bool = False

    @property
    def at_boundary(self) -> bool:
        return not self.owed and not self.head and not self.lost

    def feed(self, data: bytes) -> None:
        """Follow ``data``, the next bytes aiohttp gets."""
        if self.lost:
            return
        if self.owed >= len(data):
            self.owed -= len(data)
            return
        buf, pos = self.head + data[self.owed :], 0
        self.owed, self.head = 0, b""
        while pos < len(buf):
            end = buf.find(b"\r\n\r\n", pos)
            if end < 0:
                self.head = buf[pos:]
                self.lost = len(self.head) > MAX_HEAD
                return
            length = _framed_length(buf[pos : end + 2])
            if length is None:
                self.lost = True
                return
            pos = end + 4 + length
        self.owed = pos - len(buf)


def _framed_length(head: bytes) -> int | None:
    """A message's body length, if its head says it in the one plain way (one
    ``Content-Length``, or none and no ``Transfer-Encoding`` or ``Upgrade``); else None."""
    line_end = head.find(b"\r\n")
    if not head.endswith(b" HTTP/1.1\r\n", 0, line_end + 2) or not _FIELDS.fullmatch(
        head[line_end + 2 :]
    ):
        return None
    length: bytes | None = None
    for line in head[line_end + 2 :].split(b"\r\n")[:-1]:
        name, _, value = line.partition(b":")
        name = name.lower()
        if name in (b"transfer-encoding", b"upgrade"):
            return None
        if name == b"content-length":
            value = value.strip(b" \t")
            if length is not None or not _DIGITS.fullmatch(value):
                return None
            length = value
    return 0 if length is None else int(length)
