"""Raw HTTP/1.1 over a real socket, for tests that must control every byte and packet."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

WAIT = 10.0


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    """Lower-case names; a repeated name keeps its last value."""
    body: bytes
    head: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    length: bool = True,
) -> bytes:
    """One request's bytes: ``Host``, ``Authorization`` (if ``token``), ``Content-Length``
    (if ``length``), ``headers``, then ``body``."""
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    if token is not None:
        lines.append(f"Authorization: {token}")
    if length:
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def publish(channel: str, token: str, event: str = "m", data: Any = None, **kw: Any) -> bytes:
    """``POST /v1/channels/:channel/messages`` with ``{"e": event, "d": data}``."""
    body = json.dumps({"e": event, "d": data}).encode()
    return request("POST", f"/v1/channels/{channel}/messages", body, token=token, **kw)


async def read_answer(reader: asyncio.StreamReader, *, head_only: bool = False) -> Answer:
    """The next answer on the connection (``head_only``: to a HEAD request)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = 0 if head_only else int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), WAIT)
    return Answer(int(status_line.split()[1]), headers, body, head)


async def closed(reader: asyncio.StreamReader) -> bool:
    """Whether the server closes the connection (nothing more comes before EOF)."""
    return await asyncio.wait_for(reader.read(), WAIT) == b""
