"""A token deleted while a socket's IDENTIFY is looking it up still closes that socket (4001).

Found by the soak (scripts/soak): on a Redis cluster a few sockets a minute identified
with a token that was being deleted, missed the deletion's event (they were not attached
to the hub yet) and lived on with a deleted token, their SUBSCRIBEs answered not_found.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import httpx
import pytest
import websockets

from switchboard.server.broker import events as ev
from switchboard.server.fanout import Connection, Dispatch, Hub
from switchboard.server.history import NoHistoryCache
from tests.conftest import Server, join_node, start_node
from tests.e2e.leap import Leap


class NullTransport:
    """A transport that takes every write (the hub's Transport protocol, nothing more)."""

    def write(self, data: bytes | bytearray) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


def test_the_hub_closes_a_connection_identifying_with_a_deleted_token() -> None:
    hub = Hub(max_buffered_bytes=1 << 20)
    conn = Connection(
        hub.writer,
        NullTransport(),
        cid="c1",
        project_id="",
        token_id=None,
        scope="noauth",
        compressed=False,
    )
    other = Connection(
        hub.writer,
        NullTransport(),
        cid="c2",
        project_id="",
        token_id=None,
        scope="noauth",
        compressed=False,
    )
    hub.watch_token(conn, "leap_token_a")
    hub.watch_token(other, "leap_token_b")
    Dispatch(hub, NoHistoryCache()).handle(ev.TokenDeleted("project_x", "leap_token_a"))
    assert conn.closing and not other.closing
    hub.unwatch_token(conn, "leap_token_a")
    hub.unwatch_token(other, "leap_token_b")
    assert hub._identifying == {}, "nothing is kept once the IDENTIFY is over"


async def _identify_during_delete(a: Server, b: Server, http: httpx.AsyncClient) -> list[str]:
    """Sockets identify with a token on ``b`` while ``a`` deletes it; what each one saw."""
    r = await http.post("/channels/tokens")
    assert r.status_code == 200, r.text
    token = r.json()["data"]["token"]["id"]
    sockets = [await websockets.connect(b.ws_url) for _ in range(10)]
    outcomes: list[str] = []
    try:
        clients = [Leap(ws) for ws in sockets]
        for client in clients:
            assert (await client.recv())["op"] == 1
        identify = {"op": 2, "d": {"project_id": b.project_id, "token": token}}
        sends = [c.send(identify) for c in clients]
        delete = http.delete(f"/channels/tokens/{token}")
        results = await asyncio.gather(delete, *sends)
        assert results[0].status_code == 200
        deleted_at = time.monotonic()
        for client in clients:
            try:
                async with asyncio.timeout(deleted_at + 4 - time.monotonic()):
                    while True:
                        await client.ws.recv()
            except websockets.ConnectionClosed as exc:
                outcomes.append(f"closed {exc.rcvd.code if exc.rcvd else None}")
            except TimeoutError:
                outcomes.append("still open")
    finally:
        for ws in sockets:
            with contextlib.suppress(Exception):
                await ws.close()
    return outcomes


@pytest.mark.timeout(120)
async def test_no_socket_outlives_its_token_deleted_during_identify(
    redis_url: str, tmp_path: Path
) -> None:
    a = await start_node(tmp_path / "a", redis_url=redis_url)
    b = await join_node(a, tmp_path / "b", redis_url=redis_url)
    try:
        async with httpx.AsyncClient(base_url=a.api, headers=a.headers) as http:
            outcomes: list[str] = []
            for _ in range(15):
                outcomes += await _identify_during_delete(a, b, http)
        assert set(outcomes) == {"closed 4001"}, sorted(outcomes)
    finally:
        for server in (b, a):
            assert server.node is not None
            await server.node.stop()
