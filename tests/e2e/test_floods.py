"""Floods and slow clients against a real server process (issue 10, item 4).

Each test measures what it provokes and prints the figure (``pytest -s`` shows them;
docs/reliability.md records them): connect storms, sockets that never IDENTIFY,
slowloris HTTP heads and bodies, client publish and SUBSCRIBE floods, REST floods per
project token. In every case the server keeps serving a well-behaved client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import httpx
import pytest
import websockets

from tests.conftest import Server, json_request_head, open_raw, switchboard_cmd
from tests.e2e.leap import Leap, leap


async def ok(response: httpx.Response) -> dict[str, object]:
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()["data"]
    return data


async def still_serves(server: Server) -> float:
    """A fresh client identifies, subscribes and gets a publish; the seconds it took."""
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=server.api, headers=server.headers) as http:
        await http.put("/channels/canary", json={"type": "unprotected"})
        async with leap(server.ws_url, server.project_id) as client:
            assert (await client.subscribe("canary"))["e"] == "AVAILABLE"
            await ok(await http.post("/channels/canary/messages", json={"e": "alive"}))
            assert (await client.dispatch("MESSAGE"))["d"]["e"] == "alive"
    return time.monotonic() - started


@pytest.mark.timeout(120)
async def test_a_connect_storm_of_2000_sockets(spawn_server: object) -> None:
    server: Server = spawn_server()  # type: ignore[operator]
    count = 2000

    async def one() -> websockets.ClientConnection:
        ws = await websockets.connect(server.ws_url, open_timeout=30, max_size=None)
        client = Leap(ws)
        init = await client.identify(server.project_id)
        assert init["scope"] == "noauth"
        return ws

    started = time.monotonic()
    sockets = await asyncio.gather(*(one() for _ in range(count)))
    took = time.monotonic() - started
    try:
        assert len(sockets) == count
        assert await still_serves(server) < 5
        for ws in sockets[::100]:  # still open, both ways
            await ws.send('{"op": 3}')
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["op"] == 4
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))
    print(f"\nconnect storm: {count} sockets opened and identified at once in {took:.2f} s")


async def test_sockets_that_never_identify_are_closed_4002(spawn_server: object) -> None:
    server: Server = spawn_server(None, "--identify-timeout", "1")  # type: ignore[operator]
    count = 300
    started = time.monotonic()
    sockets = await asyncio.gather(*(websockets.connect(server.ws_url) for _ in range(count)))
    codes = []
    for ws in sockets:
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed as exc:
            codes.append(exc.rcvd.code if exc.rcvd else None)
    took = time.monotonic() - started
    assert codes == [4002] * count
    # The sweep runs every second: closed between 1 and about 2 s after opening.
    assert took < 5
    assert await still_serves(server) < 5
    print(f"\nno IDENTIFY: {count} sockets closed with 4002 {took:.2f} s after they opened")


async def test_slowloris_heads_are_cut_off_and_others_served(spawn_server: object) -> None:
    """200 connections dribble a request head; each is closed at the header timeout."""
    server: Server = spawn_server(None, "--http-header-timeout", "1")  # type: ignore[operator]
    count = 200

    async def dribble() -> tuple[float, bytes]:
        opened = time.monotonic()  # the server's clock starts when it accepts
        reader, writer = await open_raw(server)
        writer.write(b"GET /v1/channels HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        answer = b""
        try:
            for _ in range(100):  # up to 20 s of one header byte every 0.2 s
                writer.write(b"x")
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    answer = await asyncio.wait_for(reader.read(100), 0.2)
                    break  # EOF (b"") or an answer: either way the server acted
        except ConnectionError:
            pass
        finally:
            writer.close()
        return time.monotonic() - opened, answer

    dribblers = [asyncio.create_task(dribble()) for _ in range(count)]
    # While they dribble, a normal client gets normal answers.
    served = await still_serves(server)
    results = await asyncio.gather(*dribblers)
    held = [t for t, _ in results]
    # Closed without an answer, after the timeout and not long after it.
    assert {answer for _, answer in results} == {b""}
    assert min(held) > 0.8, min(held)  # by the timeout, not at once
    assert max(held) < 5, f"slowloris held for {max(held):.1f} s"
    assert served < 5
    print(
        f"\nslowloris: {count} dribbling heads closed {min(held):.2f}-{max(held):.2f} s after "
        f"they connected (timeout 1 s); a normal client meanwhile took {served:.2f} s"
    )


async def test_a_slow_body_gets_408_and_writes_nothing(spawn_server: object) -> None:
    server: Server = spawn_server(None, "--http-body-timeout", "1")  # type: ignore[operator]
    reader, writer = await open_raw(server)
    body = json.dumps({"type": "public"}).encode()
    writer.write(
        json_request_head("PUT", "/v1/channels/slow", server.project_token, len(body)) + body[:5]
    )
    await writer.drain()
    started = time.monotonic()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    took = time.monotonic() - started
    assert head.startswith(b"HTTP/1.1 408"), head
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    envelope = json.loads(await reader.readexactly(length))
    assert envelope["error"]["code"] == "request_timeout"
    writer.close()
    assert 0.9 < took < 5
    async with httpx.AsyncClient(base_url=server.api, headers=server.headers) as http:
        assert (await http.get("/channels/slow")).status_code == 404  # nothing half-written


async def test_a_client_publish_flood_is_refused_then_closed_4008(spawn_server: object) -> None:
    server: Server = spawn_server()  # type: ignore[operator]
    async with httpx.AsyncClient(base_url=server.api, headers=server.headers) as http:
        await http.put("/channels/chat", json={"type": "public"})
        token = (await ok(await http.post("/channels/tokens")))["token"]["id"]  # type: ignore[index]
        other = (await ok(await http.post("/channels/tokens")))["token"]["id"]  # type: ignore[index]
    async with (
        leap(server.ws_url, server.project_id, token) as flooder,
        leap(server.ws_url, server.project_id, other) as reader,
    ):
        for client in (flooder, reader):
            assert (await client.subscribe("chat"))["e"] == "AVAILABLE"
        frame = json.dumps(
            {"op": 0, "d": {"c": "chat", "e": "MESSAGE", "d": {"e": "spam", "d": 1}}}
        )
        started = time.monotonic()
        sent = 0
        errors = 0
        closed: tuple[int | None, str] | None = None
        try:
            while time.monotonic() - started < 10:
                for _ in range(20):
                    await flooder.ws.send(frame)
                    sent += 1
                await asyncio.sleep(0.01)  # ~2,000 a second, forty times the limit
                while True:
                    try:
                        got = await flooder.dispatch(timeout=0.001)
                    except TimeoutError:
                        break
                    errors += got["e"] == "ERROR"
        except websockets.ConnectionClosed as exc:
            closed = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")
        if closed is None:
            closed = await flooder.closed()
        took = time.monotonic() - started
        assert closed[0] == 4008, closed
        assert errors > 0
        assert took < 5
        # The other subscriber got only what the limit let through, and still works.
        delivered = 0
        while True:
            try:
                await reader.dispatch("MESSAGE", timeout=0.5)
                delivered += 1
            except TimeoutError:
                break
        assert 0 < delivered <= 50 + 50 * took + 1
        await reader.send({"op": 3})
        assert (await reader.recv())["op"] == 4
    print(
        f"\npublish flood: {sent} sent in {took:.2f} s, {delivered} delivered, "
        f"{errors} ERROR dispatches read, then closed with 4008"
    )


async def test_a_client_a_little_over_the_rate_is_not_closed(spawn_server: object) -> None:
    server: Server = spawn_server()  # type: ignore[operator]
    async with httpx.AsyncClient(base_url=server.api, headers=server.headers) as http:
        await http.put("/channels/chat", json={"type": "public"})
        token = (await ok(await http.post("/channels/tokens")))["token"]["id"]  # type: ignore[index]
    async with leap(server.ws_url, server.project_id, token) as client:
        assert (await client.subscribe("chat"))["e"] == "AVAILABLE"
        for _ in range(30):  # 3 s at 60 a second: 10 a second over
            for _ in range(6):
                await client.publish("chat", "m", 1)
            await asyncio.sleep(0.1)
        await client.send({"op": 3})
        while (frame := await client.recv())["op"] != 4:
            assert frame["op"] == 0
        assert client.ws.close_code is None


async def test_a_subscribe_flood_is_closed_4008(spawn_server: object) -> None:
    server: Server = spawn_server()  # type: ignore[operator]
    async with leap(server.ws_url, server.project_id) as client:
        frames = [
            json.dumps({"op": 0, "d": {"c": f"ch{i}", "e": "SUBSCRIBE", "d": None}})
            for i in range(5000)
        ]
        started = time.monotonic()
        try:
            for frame in frames:
                await client.ws.send(frame)
        except websockets.ConnectionClosed:
            pass
        code, _ = await client.closed(timeout=10)
        assert code == 4008
        took = time.monotonic() - started
    assert await still_serves(server) < 5
    print(f"\nSUBSCRIBE flood: 5000 frames, closed with 4008 after {took:.2f} s")


async def test_a_rest_flood_gets_429_with_retry_after_and_other_projects_are_unaffected(
    spawn_server: object, tmp_path: Path
) -> None:
    import subprocess

    server: Server = spawn_server(None, "--rest-requests-per-second", "20")  # type: ignore[operator]
    made = subprocess.run(
        switchboard_cmd("projects", "create", "other", "--json", "--data", str(tmp_path / "data")),
        capture_output=True,
        text=True,
        check=True,
    )
    other_token = json.loads(made.stdout)["project_token"]
    async with (
        httpx.AsyncClient(base_url=server.api, headers=server.headers) as flood,
        httpx.AsyncClient(base_url=server.api, headers={"Authorization": other_token}) as calm,
    ):
        answers = await asyncio.gather(*(flood.get("/channels") for _ in range(100)))
        statuses = [r.status_code for r in answers]
        limited = [r for r in answers if r.status_code == 429]
        assert 15 <= statuses.count(200) <= 40, statuses
        assert len(limited) + statuses.count(200) == 100
        for r in limited:
            assert r.json() == {
                "success": False,
                "error": {"code": "rate_limited", "message": r.json()["error"]["message"]},
            }
            assert int(r.headers["Retry-After"]) >= 1
        # Another project's token is not slowed down by the flood.
        assert all(r.status_code == 200 for r in [await calm.get("/channels") for _ in range(15)])
        # After Retry-After, the flooding token is served again.
        await asyncio.sleep(int(limited[-1].headers["Retry-After"]))
        assert (await flood.get("/channels")).status_code == 200
        # Bad tokens are refused as ever (401), not counted against anyone.
        bad = await flood.get("/channels", headers={"Authorization": "ptk_nope"})
        assert bad.status_code == 401
    print(
        f"\nREST flood: 100 calls at once at 20/s: {statuses.count(200)} served, {len(limited)} got 429"
    )
