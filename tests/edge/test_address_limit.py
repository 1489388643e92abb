"""--max-connections-per-ip: one address's sockets are bounded; the upgrade past it is a 429."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import websockets

from switchboard.server.config import Limits
from tests.conftest import Server, start_node
from tests.e2e.leap import leap

pytestmark = pytest.mark.timeout(30)


async def test_sockets_past_the_bound_are_refused_until_one_closes(tmp_path: Path) -> None:
    server: Server = await start_node(tmp_path / "d", limits=Limits(max_connections_per_ip=3))
    assert server.node is not None
    try:
        async with AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(leap(server.ws_url, server.project_id))
                for _ in range(3)
            ]
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(server.ws_url):
                    pass
            response = refused.value.response
            assert response.status_code == 429
            assert response.headers["Retry-After"] == "1"
            body = json.loads(response.body)
            assert body["success"] is False and body["error"]["code"] == "rate_limited"
            assert "3 sockets" in body["error"]["message"]
            # The ones in keep working.
            assert (await clients[0].subscribe("nope"))["e"] == "UNAVAILABLE"
            await clients.pop().ws.close()
            async with leap(server.ws_url, server.project_id) as again:
                assert again.init is not None
        assert server.node.gateway.stats()["sockets_refused_per_ip"] == 1
    finally:
        await server.node.stop()


async def test_without_the_option_there_is_no_bound(node: Server) -> None:
    async with AsyncExitStack() as stack:
        for _ in range(25):
            await stack.enter_async_context(leap(node.ws_url, node.project_id))
    assert node.node is not None
    assert node.node.gateway.stats()["sockets_refused_per_ip"] == 0
