"""The smallest end-to-end check: a server starts, answers REST and a Leap socket."""

from __future__ import annotations

import json

import httpx
import websockets

from tests.conftest import Server


async def test_rest_and_socket(node: Server) -> None:
    async with httpx.AsyncClient(base_url=node.api, headers=node.headers) as http:
        r = await http.put("/channels/lobby", json={"type": "unprotected", "state": {"n": 1}})
        assert r.status_code == 200, r.text
    async with websockets.connect(node.ws_url) as ws:
        hello = json.loads(await ws.recv())
        assert hello == {"op": 1, "d": {"heartbeat_interval": 30000}}
        await ws.send(json.dumps({"op": 2, "d": {"project_id": node.project_id}}))
        init = json.loads(await ws.recv())
        assert init["d"]["e"] == "INIT"
        assert init["d"]["d"]["scope"] == "noauth"
        await ws.send(json.dumps({"op": 0, "d": {"c": "lobby", "e": "SUBSCRIBE", "d": None}}))
        available = json.loads(await ws.recv())
        assert available["d"]["e"] == "AVAILABLE"
        assert available["d"]["d"]["channel"]["state"] == {"n": 1}
