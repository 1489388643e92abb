"""The ways ``channels.py`` sends one message to each of N token connections, as raw requests.

A ``Path`` is one way: how many requests one *round* takes (a round gives every connection one
frame) and the request ``i`` of round ``r``. Switchboard's ways:

- ``channel messages``: ``POST /v1/channels/p<i>/messages`` to the private channel of token i;
- ``direct messages``: ``POST /v1/channels/tokens/<token>/messages``, one request per message;
- ``broadcast``: ``POST /v1/broadcast`` ``{tokens: [up to 1,000], e, d}``, the same message to a
  slice of the tokens (beyond Hop, issue 21);
- ``batch``: ``POST /v1/batch`` ``{requests: [{op: "direct", token, e, d}, ...]}``, up to 1,000
  direct messages per request (issue 21);

and the **DM floor**'s (``peers/floor_server.py``: aiohttp, uvloop, one pre-built frame written
to each of its sockets per ``POST /publish``, nothing else): one request per round, the frame a
Switchboard token connection receives for a direct message (``DIRECT_MESSAGE``, same bytes).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from _http_load import HttpPool, http_request
from _targets import payload

EVENT = b'"m"'


def dm_frame_payload(d: bytes) -> bytes:
    """The JSON a Switchboard token connection receives for a direct message ``{"e":"m","d":d}``."""
    return b'{"op":0,"d":{"c":null,"u":false,"e":"DIRECT_MESSAGE","d":{"e":"m","d":' + d + b"}}}"


@dataclass
class Path:
    """One way of giving each of N connections one message: a round of ``requests`` requests."""

    name: str
    requests: int
    """Requests per round."""
    build: Callable[[int, int], bytes]
    """``build(round, i)``: request ``i`` of a round; its payload's ``seq`` is unique in the run."""
    route: str = ""
    """The route a bulk path needs (checked with ``available`` before it runs)."""
    bulk: bool = False
    """Many deliveries per request: runs K rounds per repetition (else one)."""


def single_paths(port: int, auth: dict[str, str], tokens: list[str]) -> list[Path]:
    """One REST request per message: to token i's private channel, or to token i directly."""
    n = len(tokens)

    def channel_message(rnd: int, i: int) -> bytes:
        body = b'{"e":"m","d":' + payload(rnd * n + i) + b"}"
        return http_request("POST", f"/v1/channels/p{i}/messages", port, body, auth)

    def direct_message(rnd: int, i: int) -> bytes:
        body = b'{"e":"m","d":' + payload(rnd * n + i) + b"}"
        return http_request("POST", f"/v1/channels/tokens/{tokens[i]}/messages", port, body, auth)

    return [
        Path("channel messages", n, channel_message),
        Path("direct messages", n, direct_message),
    ]


def bulk_paths(port: int, auth: dict[str, str], tokens: list[str], per_request: int) -> list[Path]:
    """``/v1/broadcast`` and ``/v1/batch``, ``per_request`` tokens a request (the last one of a
    round takes what is left)."""
    slices = [tokens[i : i + per_request] for i in range(0, len(tokens), per_request)]
    lists = [json.dumps(s).encode() for s in slices]
    heads = [
        [b'{"op":"direct","token":"' + t.encode() + b'","e":"m","d":' for t in s] for s in slices
    ]
    count = len(slices)

    def broadcast(rnd: int, i: int) -> bytes:
        body = b'{"tokens":' + lists[i] + b',"e":"m","d":' + payload(rnd * count + i) + b"}"
        return http_request("POST", "/v1/broadcast", port, body, auth)

    def batch(rnd: int, i: int) -> bytes:
        d = payload(rnd * count + i) + b"}"
        body = b'{"requests":[' + b",".join(h + d for h in heads[i]) + b"]}"
        return http_request("POST", "/v1/batch", port, body, auth)

    return [
        Path("broadcast", count, broadcast, "/v1/broadcast", bulk=True),
        Path("batch", count, batch, "/v1/batch", bulk=True),
    ]


def floor_path(port: int) -> Path:
    """The DM floor: one ``POST /publish`` per round writes the frame to every socket."""

    def publish(rnd: int, i: int) -> bytes:
        return http_request("POST", "/publish", port, dm_frame_payload(payload(rnd)))

    return Path("DM floor", 1, publish, bulk=True)


PROBES = {
    "/v1/broadcast": b'{"tokens":[],"e":"m","d":null}',
    "/v1/batch": b'{"requests":[]}',
}
"""A request to each bulk route that delivers nothing (an empty list of targets)."""


async def available(port: int, auth: dict[str, str], route: str) -> str | None:
    """None if this server has ``route``; else why not (a 404: not on this code yet)."""
    async with HttpPool(port, 1) as pool:
        status, body = await pool.request(http_request("POST", route, port, PROBES[route], auth))
    if status == 404:
        return f"POST {route} answers 404 (not on this server's code yet): {body[:120]!r}"
    return None
