"""The example's backend on its own (no browser): what it refuses, and the login answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import Server
from tests.react_chat.conftest import StartBackend


async def test_backend_answers_and_refusals(
    spawn_server: Callable[..., Server], start_backend: StartBackend
) -> None:
    server = spawn_server()
    backend = await start_backend(server)
    async with httpx.AsyncClient(base_url=backend.url) as web:
        page = await web.get("/")
        assert page.status_code == 200 and '<div id="root">' in page.text

        login = (await web.post("/api/login", json={"name": " alice "})).json()
        assert login["name"] == "alice" and login["room"] == "chat"
        assert login["projectId"] == server.project_id
        assert login["socketUrl"] == server.ws_url
        assert login["token"].startswith("leap_token_")
        # The same name again gets the same token back (a reload of the page).
        again = (await web.post("/api/login", json={"name": "alice"})).json()
        assert again["token"] == login["token"]
        me = {"Authorization": f"Bearer {login['token']}"}
        assert (await web.get("/api/me", headers=me)).json() == {"name": "alice"}

        async def status(method: str, path: str, **kwargs: Any) -> int:
            return (await web.request(method, path, **kwargs)).status_code

        assert await status("POST", "/api/login", json={"name": ""}) == 400
        assert await status("POST", "/api/login", content=b"not json") == 400
        assert await status("GET", "/api/me") == 401
        assert await status("GET", "/api/me", headers={"Authorization": "leap_token_x"}) == 401
        dm = {"to": "nobody", "text": "hi"}
        assert await status("POST", "/api/dm", json=dm, headers=me) == 404
        assert await status("POST", "/api/topic", json={"topic": "x"}) == 401
        # Kicking takes the project token, not a user's token.
        assert await status("POST", "/api/kick", json={"name": "alice"}, headers=me) == 403
        ptk = server.headers
        assert await status("POST", "/api/kick", json={"name": "bob"}, headers=ptk) == 404
        assert await status("POST", "/api/kick", json={"name": "alice"}, headers=ptk) == 200
        assert await status("GET", "/api/me", headers=me) == 401

    # The token is gone from Switchboard too, and the room's member list is empty again.
    async with httpx.AsyncClient(base_url=server.api, headers=server.headers) as sb:
        assert (await sb.get(f"/channels/tokens/{login['token']}")).status_code == 404
        state = (await sb.get("/channels/chat/state")).json()["data"]["state"]
        assert state == {"topic": "", "members": []}
