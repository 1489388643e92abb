"""The REST publish's fast path (api/fast_conn.py): raw sockets against a real node.

Each test checks what a client sees — answers, their order, the connection's life —
and, through the node's counter, whether the fast path or aiohttp answered.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from switchboard.server.api.fast_parse import NEED_MORE, SLOW, FastRequest, Framer, parse
from switchboard.server.config import Limits
from switchboard.server.permissions import Permission
from tests.conftest import Server, open_raw, running_node
from tests.e2e.leap import leap
from tests.e2e.raw_http import Answer, closed, publish, read_answer, request

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def channel(node: Server, http: httpx.AsyncClient) -> str:
    r = await http.put("/channels/c1", json={"type": "unprotected"})
    assert r.status_code == 200, r.text
    return "c1"


def answered(node: Server) -> int:
    """Requests the node's fast path answered so far."""
    assert node.node is not None and node.node.fast_publish is not None
    return node.node.fast_publish.answered


async def exchange(node: Server, data: bytes, answers: int) -> list[Answer]:
    """Write ``data`` at once on a new connection; read ``answers`` answers."""
    reader, writer = await open_raw(node)
    try:
        writer.write(data)
        return [await read_answer(reader) for _ in range(answers)]
    finally:
        writer.close()


def comparable(answer: Answer) -> tuple[int, dict[str, str], bytes]:
    headers = {k: v for k, v in answer.headers.items() if k != "date"}
    return answer.status, headers, answer.body


SLOW_FIRST = request("GET", "/healthz")
"""Sent first in the same write, it gives the connection to aiohttp: what follows in
that write is answered by aiohttp's route."""


async def test_the_fast_path_answers_as_aiohttp_does(node: Server, channel: str) -> None:
    assert node.node is not None
    reader_only = await node.node.service.create_project_token(
        node.project_id, Permission.READ_CHANNELS
    )
    token = node.project_token
    cases = [
        publish(channel, token, data={"n": 1}),
        publish(channel, "Bearer " + token, data=[1, 2]),
        publish(channel, token, headers={"Connection": "keep-alive"}),
        request("POST", f"/v1/channels/{channel}/messages", b'{"e": "m", "d": ', token=token),
        request("POST", f"/v1/channels/{channel}/messages", b"", token=token),
        request("POST", f"/v1/channels/{channel}/messages", b'{"e": "m", "d": 1e400}', token=token),
        request("POST", f"/v1/channels/{channel}/messages", b'{"d": 1}', token=token),
        request("POST", f"/v1/channels/{channel}/messages", b'{"e": "m", "d": 5.0}', token=token),
        publish(channel, token, event="e" * 200),
        publish(channel, token, data="x" * 70_000),
        publish("nope", token),
        publish(channel, "ptk_unknown"),
        publish(channel, "nonsense"),
        publish(channel, token, length=True, headers={"X-Other": "1"}).replace(
            f"Authorization: {token}\r\n".encode(), b""
        ),
        publish(channel, reader_only),
    ]
    for case in cases:
        before = answered(node)
        [fast] = await exchange(node, case, 1)
        assert answered(node) == before + 1, case
        [_, slow] = await exchange(node, SLOW_FIRST + case, 2)
        assert answered(node) == before + 1, case
        assert comparable(fast) == comparable(slow), case
        assert fast.headers["content-type"] == "application/json"
        assert "date" in fast.headers


async def test_direct_messages_take_it_too(node: Server, http: httpx.AsyncClient) -> None:
    r = await http.post("/channels/tokens", json={})
    token_id = r.json()["data"]["token"]["id"]
    secret = node.project_token
    path = f"/v1/channels/tokens/{token_id}/messages"
    cases = [
        request("POST", path, b'{"e": "dm", "d": {"n": 1}}', token=secret),
        request("POST", path, b'{"e": "dm", "d": {"n": 1}', token=secret),
        request("POST", path, b'{"e": "dm"}', token="ptk_unknown"),
        request(
            "POST", "/v1/channels/tokens/leap_token_nope/messages", b'{"e": "m"}', token=secret
        ),
    ]
    async with leap(node.ws_url, node.project_id, token=token_id) as client:
        for case in cases:
            before = answered(node)
            [fast] = await exchange(node, case, 1)
            assert answered(node) == before + 1, case
            [_, slow] = await exchange(node, SLOW_FIRST + case, 2)
            assert comparable(fast) == comparable(slow), case
        for _ in range(2):  # the first case, fast and slow
            assert (await client.dispatch("DIRECT_MESSAGE"))["d"] == {"e": "dm", "d": {"n": 1}}


async def test_idempotency_keys_work_on_the_fast_path(node: Server, channel: str) -> None:
    body = json.dumps({"e": "m", "d": 1, "idempotency_key": "k1"}).encode()
    path = f"/v1/channels/{channel}/messages"
    first, again = await exchange(
        node, request("POST", path, body, token=node.project_token) * 2, 2
    )
    assert first.json() == {"success": True, "data": {}}
    assert again.json() == {"success": True, "data": {"duplicate": True}}


def mixed_requests(channel: str, token: str, chunked: bool) -> tuple[bytes, list[int]]:
    """Fast and slow requests, to be written at once; the statuses of their answers.
    The published ``d`` are 0 to 4 (3 only with ``chunked``)."""
    path = f"/v1/channels/{channel}/messages"
    chunked_publish = request(
        "POST",
        path,
        b'12\r\n{"e": "m", "d": 3}\r\n0\r\n\r\n',
        token=token,
        length=False,
        headers={"Transfer-Encoding": "chunked"},
    )
    data = (
        publish(channel, token, data=0)
        + publish(channel, token, data=1)
        + request("GET", f"/v1/channels/{channel}", token=token)
        + publish(channel, token, data=2)
        + request("POST", path, b"{", token=token)
        + request("HEAD", path, token=token)  # the GET route's: no history, 400
        + request("GET", path, token=token)
        + publish("nope", token, data=-1)
        + (chunked_publish if chunked else b"")
        + publish(channel, token, data=4)
    )
    return data, [200, 200, 200, 200, 400, 400, 400, 404, *([200] if chunked else []), 200]


async def test_pipelined_fast_and_slow_requests_are_answered_in_order(
    node: Server, channel: str
) -> None:
    async with leap(node.ws_url, node.project_id) as subscriber:
        await subscriber.subscribe(channel)
        reader, writer = await open_raw(node)
        # Rounds 2 and 3: the connection is the fast path's again once aiohttp is done;
        # round 4: not after a chunked body (aiohttp's for good).
        for chunked, fast in ((False, 2), (False, 2), (True, 2), (False, 0)):
            before = answered(node)
            data, statuses = mixed_requests(channel, node.project_token, chunked)
            writer.write(data)
            for i, status in enumerate(statuses):
                answer = await read_answer(reader, head_only=i == 5)
                assert answer.status == status, (i, answer)
                if i == 2:
                    assert answer.json()["data"]["channel"]["id"] == channel
            assert answered(node) == before + fast  # those before the first slow one
            published = [
                (await subscriber.dispatch("MESSAGE"))["d"]["d"] for _ in range(4 + chunked)
            ]
            assert published == ([0, 1, 2, 3, 4] if chunked else [0, 1, 2, 4])
        writer.close()


async def test_a_request_split_into_single_bytes(node: Server, channel: str) -> None:
    token = node.project_token
    data = (
        publish(channel, token, data=1)
        + request("GET", "/healthz")
        + publish(channel, token, data=2)
        + publish(channel, token, data=3)
    )
    async with leap(node.ws_url, node.project_id) as subscriber:
        await subscriber.subscribe(channel)
        reader, writer = await open_raw(node)
        writer.transport.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()
            if i % 16 == 0:
                await asyncio.sleep(0.001)
        assert [(await read_answer(reader)).status for _ in range(4)] == [200] * 4
        assert [(await subscriber.dispatch("MESSAGE"))["d"]["d"] for _ in range(3)] == [1, 2, 3]
        writer.close()


async def test_connection_close_is_honoured(node: Server, channel: str) -> None:
    before = answered(node)
    reader, writer = await open_raw(node)
    writer.write(
        publish(channel, node.project_token, headers={"Connection": "close"})
        + publish(channel, node.project_token)  # after the close: not read
    )
    answer = await read_answer(reader)
    assert answer.status == 200 and answer.headers["connection"] == "close"
    assert await closed(reader)
    assert answered(node) == before + 1
    writer.close()


async def test_keep_alive_over_many_requests(node: Server, channel: str) -> None:
    before = answered(node)
    count = 300
    async with leap(node.ws_url, node.project_id) as subscriber:
        await subscriber.subscribe(channel)
        reader, writer = await open_raw(node)
        for n in range(count):
            writer.write(publish(channel, node.project_token, data=n))
            answer = await read_answer(reader)
            assert answer.status == 200 and "connection" not in answer.headers
        assert [(await subscriber.dispatch("MESSAGE"))["d"]["d"] for _ in range(count)] == list(
            range(count)
        )
        writer.close()
    assert answered(node) == before + count


async def test_a_long_pipeline_in_one_write(node: Server, channel: str) -> None:
    # ~330 KiB at once: more than is kept while an answer is made (reading pauses), and
    # answers the client does not read yet (writes pause: aiohttp takes over, in order).
    count = 1500
    async with leap(node.ws_url, node.project_id) as subscriber:
        await subscriber.subscribe(channel)
        reader, writer = await open_raw(node)
        writer.write(b"".join(publish(channel, node.project_token, data=n) for n in range(count)))
        await writer.drain()
        for _ in range(count):
            assert (await read_answer(reader)).status == 200
        got = [(await subscriber.dispatch("MESSAGE"))["d"]["d"] for _ in range(count)]
        assert got == list(range(count))
        writer.close()


async def test_a_deleted_channel_is_refused_at_once(
    node: Server, channel: str, http: httpx.AsyncClient
) -> None:
    reader, writer = await open_raw(node)
    writer.write(publish(channel, node.project_token))
    assert (await read_answer(reader)).status == 200
    assert (await http.delete(f"/channels/{channel}")).status_code == 200
    writer.write(publish(channel, node.project_token))
    answer = await read_answer(reader)
    assert answer.status == 404 and answer.json()["error"]["code"] == "not_found"
    writer.close()


@pytest.fixture
async def small_node(tmp_path: Path) -> AsyncIterator[Server]:
    limits = Limits(max_request_bytes=1000, http_header_timeout_s=0.6)
    async with running_node(tmp_path / "small", limits=limits) as server:
        async with httpx.AsyncClient(base_url=server.api, headers=server.headers) as http:
            assert (await http.put("/channels/c1", json={"type": "public"})).status_code == 200
        yield server


async def test_a_body_over_the_limit_gets_the_413_envelope(small_node: Server) -> None:
    token = small_node.project_token
    path = "/v1/channels/c1/messages"
    at_limit = json.dumps({"e": "m", "d": "x" * 980}).encode().ljust(1000)
    over = json.dumps({"e": "m", "d": "x" * 1000}).encode()
    ok, refused = await exchange(
        small_node,
        request("POST", path, at_limit, token=token) + request("POST", path, over, token=token),
        2,
    )
    assert ok.status == 200
    assert refused.status == 413
    assert refused.json()["error"]["code"] == "payload_too_large"
    assert "1000 bytes" in refused.json()["error"]["message"]


async def test_an_active_connection_is_not_closed_as_idle(small_node: Server) -> None:
    # http_header_timeout_s is 0.6 s: the idle timeout counts from each answer.
    reader, writer = await open_raw(small_node)
    loop = asyncio.get_running_loop()
    until = loop.time() + 1.5
    while loop.time() < until:
        writer.write(publish("c1", small_node.project_token))
        assert (await read_answer(reader)).status == 200
        await asyncio.sleep(0.2)
    started = loop.time()
    assert await closed(reader)  # then idle: closed after the timeout
    assert 0.3 < loop.time() - started < 3
    writer.close()


def test_what_the_parser_leaves_to_aiohttp() -> None:
    good = publish("c1", "ptk_x", data=1)
    found = parse(good + b"GET", 0, 1000, False)
    assert isinstance(found, FastRequest) and found.end == len(good)
    assert (found.target, found.direct, found.authorization, found.close) == (
        "c1",
        False,
        "ptk_x",
        False,
    )
    assert parse(good[:20], 0, 1000, False) == NEED_MORE
    assert parse(good[:-1], 0, 1000, False) == SLOW  # the body is still arriving
    assert parse(b"GET /healthz", 0, 1000, False) == SLOW
    slow = [
        publish("c%201", "ptk_x"),
        publish("..", "ptk_x"),
        publish("tokens", "ptk_x"),
        publish("c1", "ptk_x").replace(b"HTTP/1.1", b"HTTP/1.0"),
        publish("c1", "ptk_x").replace(b"/messages", b"/messages?project=p"),
        publish("c1", "ptk_x", headers={"Transfer-Encoding": "chunked"}),
        publish("c1", "ptk_x", headers={"Expect": "100-continue"}),
        publish("c1", "ptk_x", headers={"Content-Encoding": "gzip"}),
        publish("c1", "ptk_x", headers={"Upgrade": "websocket"}),
        publish("c1", "ptk_x", headers={"Connection": "upgrade"}),
        publish("c1", "ptk_x", headers={"Authorization": "ptk_y"}),
        publish("c1", "ptk_x", headers={"X-Folded": "a\r\n b"}),
        publish("c1", "ptk_x", headers={"X-Bytes": "\u00e9"}),
        publish("c1", "ptk_x", data="x" * 2000),
        publish("c1", "ptk_x").replace(b"Host: test\r\n", b""),
    ]
    for case in slow:
        assert parse(case, 0, 1000, False) == SLOW, case
    with_origin = publish("c1", "ptk_x", headers={"Origin": "https://a.example"})
    assert isinstance(parse(with_origin, 0, 1000, False), FastRequest)
    assert parse(with_origin, 0, 1000, True) == SLOW


def test_the_framer_follows_messages_across_chunks() -> None:
    data = publish("c1", "ptk_x") + request("GET", "/healthz") + publish("c2", "ptk_x")
    for size in (1, 7, 64, len(data)):
        framer = Framer()
        for i in range(0, len(data), size):
            framer.feed(data[i : i + size])
        assert framer.at_boundary, size
    framer = Framer()
    framer.feed(data[:-3])
    assert not framer.at_boundary and framer.owed == 3
    for lost in (b"Transfer-Encoding: chunked", b"Upgrade: websocket"):
        framer = Framer()
        framer.feed(request("GET", "/ws", headers=dict([lost.decode().split(": ")])))
        assert framer.lost and not framer.at_boundary
