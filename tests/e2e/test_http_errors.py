"""Request heads aiohttp cannot parse are answered with the JSON envelope, like every REST error."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Server, open_raw

pytestmark = pytest.mark.timeout(30)


async def exchange(node: Server, head: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await open_raw(node)
    try:
        writer.write(head)
        await writer.drain()
        raw = await reader.read()  # the server closes the connection after the error
    finally:
        writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    header_block, _, body = rest.partition(b"\r\n\r\n")
    headers = {}
    for line in header_block.split(b"\r\n"):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    ("head", "fragment"),
    [
        (b"GET /v1/channels HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n", "8190"),
        (
            b"GET /v1/channels HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H%d: v\r\n" % i for i in range(200))
            + b"\r\n",
            "header",
        ),
        (b"GET /v1/" + b"c" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", ""),
        (b"NOT HTTP AT ALL\r\n\r\n", ""),
    ],
    ids=["long-header", "many-headers", "long-line", "garbage"],
)
async def test_an_unparsable_head_gets_the_envelope(
    node: Server, head: bytes, fragment: str
) -> None:
    status, headers, body = await exchange(node, head)
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    envelope = json.loads(body)
    assert envelope["success"] is False
    assert envelope["error"]["code"] == "invalid_request"
    assert envelope["error"]["message"].startswith("malformed HTTP request")
    assert fragment.lower() in envelope["error"]["message"].lower(), envelope
    assert "aaaa" not in envelope["error"]["message"]  # the offending bytes are not echoed


async def test_the_server_goes_on_serving(node: Server) -> None:
    await exchange(node, b"GET /v1/channels HTTP/1.1\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n")
    status, _, body = await exchange(
        node,
        f"GET /v1/channels HTTP/1.1\r\nHost: x\r\nAuthorization: {node.project_token}\r\n"
        "Connection: close\r\n\r\n".encode(),
    )
    assert status == 200 and json.loads(body)["success"] is True
