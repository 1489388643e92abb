"""Token refresh on an open socket and the expiry notice (Switchboard's, docs/protocol.md
"Token refresh"), and the per-token connection limit beside them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from switchboard.server.clock import format_iso
from switchboard.server.config import Limits
from switchboard.server.models import UNCHANGED
from tests.conftest import Server, start_node
from tests.e2e.leap import Leap, leap
from tests.edge.test_gateway import make_token, ok

pytestmark = pytest.mark.timeout(30)


def later(seconds: float) -> str:
    return format_iso(datetime.now(UTC) + timedelta(seconds=seconds))


async def identify(client: Leap, project_id: str, token: str, **extra: Any) -> dict[str, Any]:
    client.hello = await client.recv()
    await client.send({"op": 2, "d": {"project_id": project_id, "token": token, **extra}})
    init = await client.dispatch("INIT")
    return dict(init["d"])


async def refresh(client: Leap, token: Any) -> dict[str, Any]:
    await client.send({"op": 0, "d": {"c": None, "e": "TOKEN_REFRESH", "d": {"token": token}}})
    return await client.dispatch()


async def set_expiry_without_event(server: Server, token: str, expires_at: str) -> None:
    """Move the stored expiry with no broker event: as a node that missed the PATCH's
    event sees it, so only a refresh can tell the connection."""
    assert server.node is not None
    await server.node.service.store.update_token(
        server.project_id, token, state=UNCHANGED, expires_at=expires_at
    )


async def test_a_refresh_takes_the_stored_expiry_and_keeps_the_socket(
    node: Server, http: httpx.AsyncClient
) -> None:
    token = await make_token(http, expires_at=later(1.5))
    await ok(http.put("/channels/room", json={"type": "public"}))
    async with leap(node.ws_url, node.project_id, token) as client:
        await client.subscribe("room")
        extended = later(3600)
        await set_expiry_without_event(node, token, extended)
        answer = await refresh(client, token)
        assert answer == {
            "c": None,
            "u": True,
            "e": "TOKEN_REFRESHED",
            "d": {"expires_at": extended},
        }
        await asyncio.sleep(2.0)  # past the old expiry, a wall-clock bound
        await ok(http.post("/channels/room/messages", json={"e": "still", "d": 1}))
        message = await client.dispatch("MESSAGE")
        assert message["d"] == {"e": "still", "d": 1}


async def test_without_a_refresh_the_old_expiry_still_cuts_off(
    node: Server, http: httpx.AsyncClient
) -> None:
    # The stored expiry moved without an event and nobody refreshed: the connection
    # keeps the expiry it knows, and is closed with the usual 4001 at it.
    token = await make_token(http, expires_at=later(1.0))
    async with leap(node.ws_url, node.project_id, token) as client:
        await set_expiry_without_event(node, token, later(3600))
        code, reason = await client.closed(timeout=5)
        assert code == 4001 and "expired" in reason


async def test_a_bad_refresh_is_an_error_and_the_socket_stays(
    node: Server, http: httpx.AsyncClient
) -> None:
    token = await make_token(http, expires_at=later(3600))
    other = await make_token(http)
    async with leap(node.ws_url, node.project_id, token) as client:
        for presented in (other, "leap_token_nope", None, 5):
            answer = await refresh(client, presented)
            assert answer["e"] == "ERROR" and answer["c"] is None and answer["u"] is True
            assert answer["d"]["code"] == "invalid_request"
            assert answer["d"]["request"] == "TOKEN_REFRESH"
        assert "own token" in (await refresh(client, other))["d"]["message"]
        await client.send({"op": 3})
        assert await client.recv() == {"op": 4}
    async with leap(node.ws_url, node.project_id) as anonymous:
        answer = await refresh(anonymous, token)
        assert answer["e"] == "ERROR" and "identified with a token" in answer["d"]["message"]


async def test_a_refresh_of_a_token_expired_meanwhile_closes_4001(
    node: Server, http: httpx.AsyncClient
) -> None:
    token = await make_token(http, expires_at=later(3600))
    async with leap(node.ws_url, node.project_id, token) as client:
        await set_expiry_without_event(node, token, "2000-01-01T00:00:00.000Z")
        await client.send({"op": 0, "d": {"c": None, "e": "TOKEN_REFRESH", "d": {"token": token}}})
        code, reason = await client.closed()
        assert code == 4001 and "expired" in reason


async def test_the_expiry_notice_comes_before_the_expiry_and_again_after_a_refresh(
    node: Server, http: httpx.AsyncClient
) -> None:
    first_expiry = later(2.0)
    token = await make_token(http, expires_at=first_expiry)
    async with leap(node.ws_url) as client:
        await identify(client, node.project_id, token, expiry_notice=1.5)
        notice = await client.dispatch("TOKEN_EXPIRING", timeout=3)
        assert notice["c"] is None and notice["u"] is True
        assert notice["d"]["expires_at"] == first_expiry
        assert 0 < notice["d"]["expires_in_ms"] <= 1500
        # The backend extends the token (PATCH); the client refreshes to learn it.
        second_expiry = later(2.5)
        await ok(http.patch(f"/channels/tokens/{token}", json={"expires_at": second_expiry}))
        assert (await refresh(client, token))["d"] == {"expires_at": second_expiry}
        notice = await client.dispatch("TOKEN_EXPIRING", timeout=3)
        assert notice["d"]["expires_at"] == second_expiry
        code, _ = await client.closed(timeout=5)
        assert code == 4001


async def test_a_notice_is_sent_at_once_when_less_than_it_is_left(
    node: Server, http: httpx.AsyncClient
) -> None:
    token = await make_token(http, expires_at=later(30))
    async with leap(node.ws_url) as client:
        await identify(client, node.project_id, token, expiry_notice=60)
        notice = await client.dispatch("TOKEN_EXPIRING", timeout=2)
        assert 25_000 < notice["d"]["expires_in_ms"] <= 30_000
    # A token that never expires gets no notice, until the backend gives it an expiry.
    forever = await make_token(http)
    async with leap(node.ws_url) as client:
        await identify(client, node.project_id, forever, expiry_notice=60)
        await client.nothing(0.3)
        expiry = later(30)
        await ok(http.patch(f"/channels/tokens/{forever}", json={"expires_at": expiry}))
        assert (await client.dispatch("TOKEN_EXPIRING"))["d"]["expires_at"] == expiry


async def test_without_asking_a_client_sees_no_notice(
    node: Server, http: httpx.AsyncClient
) -> None:
    # What Hop's clients see: nothing new before the 4001 at the expiry.
    token = await make_token(http, expires_at=later(1.0))
    async with leap(node.ws_url, node.project_id, token) as client:
        frames: list[Any] = []
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                frames.append(await client.recv(timeout=5))
        assert [f for f in frames if f["op"] == 0] == []
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001


@pytest.mark.parametrize("notice", [0, -1, 1e9, "soon"])
async def test_a_bad_expiry_notice_closes_4005(
    node: Server, http: httpx.AsyncClient, notice: Any
) -> None:
    token = await make_token(http)
    async with leap(node.ws_url) as client:
        await client.recv()
        await client.send(
            {"op": 2, "d": {"project_id": node.project_id, "token": token, "expiry_notice": notice}}
        )
        assert (await client.closed())[0] == 4005


async def test_a_refresh_is_not_a_new_connection(tmp_path: Path) -> None:
    """The per-token limit (``--max-connections-per-token``) counts sockets; refreshing
    on them, many times, never counts against it."""
    server = await start_node(tmp_path / "d", limits=Limits(max_connections_per_token=2))
    assert server.node is not None
    try:
        async with httpx.AsyncClient(base_url=server.api, headers=server.headers) as http:
            token = await make_token(http, expires_at=later(3600))
            async with (
                leap(server.ws_url, server.project_id, token) as first,
                leap(server.ws_url, server.project_id, token) as second,
            ):
                assert second.init["connection_count"] == 2
                for client in (first, second, first, second, first):
                    assert (await refresh(client, token))["e"] == "TOKEN_REFRESHED"
                assert server.node.hub.token_connections(token) == 2
                async with leap(server.ws_url) as third:
                    await third.recv()
                    await third.send(
                        {"op": 2, "d": {"project_id": server.project_id, "token": token}}
                    )
                    code, reason = await third.closed()
                    assert code == 4000 and "2 connections" in reason
                token_view = await ok(http.get(f"/channels/tokens/{token}"))
                assert token_view["token"]["is_online"] is True
            # Once one closes, a new connection gets in (on the client's next retry).
            async with leap(server.ws_url, server.project_id, token) as again:
                assert again.init["connection_count"] == 1
    finally:
        await server.node.stop()
