"""The realtime client's token refresh (Switchboard's): get_token before the expiry,
refresh() by hand, another token as a reconnect, and get_token after a 4001."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from switchboard import AsyncSwitchboard, AuthenticationFailed, TokenRefreshFailed
from switchboard.client import TokenExpiring, TokenRefreshed
from tests.conftest import Server
from tests.sdk.conftest import Recorder, client_for, eventually

pytestmark = pytest.mark.timeout(30)


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def extend(node: Server, token: str, until: datetime) -> None:
    """What an app's backend does to extend a token: PATCH its expires_at (Hop's route)."""
    async with httpx.AsyncClient(base_url=node.api, headers=node.headers) as http:
        response = await http.patch(
            f"/channels/tokens/{token}", json={"expires_at": until.isoformat()}
        )
        assert response.status_code == 200, response.text


async def test_get_token_refreshes_before_the_expiry_on_the_same_socket(
    sb: AsyncSwitchboard, node: Server
) -> None:
    token = await sb.channels.tokens.create({"u": 1}, expires_at=later(2.0))
    new_expiry = later(3600).replace(microsecond=0)
    asked = Recorder()

    async def get_token() -> str:
        asked(None)
        await extend(node, token.id, new_expiry)
        return token.id

    client = client_for(node, token.id, get_token=get_token, refresh_ahead=1.5)
    events = client.events()
    async with client:
        cid = client.cid
        await eventually(
            lambda: client.expires_at is not None and client.expires_at >= new_expiry,
            stream=events,
        )
        assert len(asked.calls) == 1
        await asyncio.sleep(1.5)  # past the first expiry (a wall-clock bound)
        assert client.connection_state == "connected" and client.cid == cid
        assert client.statistics().connections == 1


async def test_refresh_by_hand_and_its_refusal(sb: AsyncSwitchboard, node: Server) -> None:
    token = await sb.channels.tokens.create({}, expires_at=later(600))
    async with client_for(node, token.id) as client:
        until = later(7200).replace(microsecond=0)
        await extend(node, token.id, until)
        assert await client.refresh() == until
        assert client.expires_at == until
    async with client_for(node) as anonymous:
        with pytest.raises(TokenRefreshFailed) as refused:
            await anonymous.refresh()
        assert refused.value.code == "invalid_request"
        assert anonymous.connection_state == "connected"


async def test_refresh_with_another_token_reconnects_as_it(
    sb: AsyncSwitchboard, node: Server
) -> None:
    first = await sb.channels.tokens.create({"who": "first"})
    second = await sb.channels.tokens.create({"who": "second"})
    async with client_for(node, first.id) as client:
        assert await client.refresh(second.id) is None
        assert client.token == second.id
        assert client.metadata == {"who": "second"}
        assert client.statistics().connections == 2
        assert not await sb.channels.tokens.is_online(first.id)


async def test_get_token_is_asked_once_after_a_4001(sb: AsyncSwitchboard, node: Server) -> None:
    first = await sb.channels.tokens.create({"who": "first"})
    second = await sb.channels.tokens.create({"who": "second"})
    handed = [second.id, first.id]
    client = client_for(node, first.id, get_token=lambda: handed.pop(0))
    events = client.events()
    async with client:
        await sb.channels.tokens.delete(first.id)  # 4001: get_token gives the second token
        await eventually(lambda: client.metadata == {"who": "second"}, stream=events)
        assert client.token == second.id
        await sb.channels.tokens.delete(second.id)  # 4001 again: get_token gives a dead one
        with pytest.raises(AuthenticationFailed):
            await asyncio.wait_for(client.wait_closed(), 5)
    assert handed == []


async def test_without_get_token_no_notice_is_asked_for(sb: AsyncSwitchboard, node: Server) -> None:
    token = await sb.channels.tokens.create({}, expires_at=later(1.0))
    client = client_for(node, token.id)
    events = client.events()
    async with client:
        with pytest.raises(AuthenticationFailed):
            await asyncio.wait_for(client.wait_closed(), 5)
    seen = []
    with pytest.raises(AuthenticationFailed):
        async for event in events:
            seen.append(event)
    assert not any(isinstance(e, TokenExpiring | TokenRefreshed) for e in seen)
