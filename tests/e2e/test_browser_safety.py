"""Browser safety (issue 10, item 7): CORS, the gateway's Origin list, secrets in logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.conftest import Server, free_port, start_node, switchboard_cmd
from tests.e2e.leap import leap

APP = "https://app.example.com"
EVIL = "https://evil.example.net"


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Server]:
    """A node that lets APP call its REST API and open sockets, and nobody else."""
    server = await start_node(tmp_path / "d", cors_origins=(APP,), ws_origins=(APP,))
    try:
        yield server
    finally:
        assert server.node is not None
        await server.node.stop()


async def test_preflight_from_an_allowed_origin(guarded: Server) -> None:
    async with httpx.AsyncClient(base_url=guarded.api) as http:
        r = await http.options(
            "/channels/room/messages",
            headers={
                "Origin": APP,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == APP
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert "authorization" in r.headers["Access-Control-Allow-Headers"].lower()
    assert r.headers["Vary"] == "Origin"
    assert "Access-Control-Allow-Credentials" not in r.headers


async def test_preflight_from_another_origin_is_refused(guarded: Server) -> None:
    async with httpx.AsyncClient(base_url=guarded.api) as http:
        r = await http.options(
            "/channels", headers={"Origin": EVIL, "Access-Control-Request-Method": "GET"}
        )
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"
    assert "Access-Control-Allow-Origin" not in r.headers


async def test_responses_and_errors_carry_cors_headers_for_allowed_origins(
    guarded: Server,
) -> None:
    async with httpx.AsyncClient(base_url=guarded.api, headers={"Origin": APP}) as http:
        good = await http.get("/channels", headers=guarded.headers)
        bad = await http.get("/channels", headers={"Authorization": "ptk_nope"})
    assert good.status_code == 200 and bad.status_code == 401
    for r in (good, bad):
        assert r.headers["Access-Control-Allow-Origin"] == APP
        assert "Retry-After" in r.headers["Access-Control-Expose-Headers"]
    async with httpx.AsyncClient(base_url=guarded.api, headers={"Origin": EVIL}) as http:
        other = await http.get("/channels", headers=guarded.headers)
    # The call itself is served (CORS is the browser's to enforce); no header, so a
    # page of another origin cannot read the answer.
    assert other.status_code == 200
    assert "Access-Control-Allow-Origin" not in other.headers


async def test_no_cors_headers_unless_configured(node: Server) -> None:
    async with httpx.AsyncClient(base_url=node.api, headers={"Origin": APP}) as http:
        r = await http.get("/channels", headers=node.headers)
        pre = await http.options("/channels", headers={"Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in r.headers
    assert "Access-Control-Allow-Origin" not in pre.headers
    assert pre.json()["success"] is False  # OPTIONS is not a route: the envelope


async def test_any_origin_with_a_star(tmp_path: Path) -> None:
    server = await start_node(tmp_path / "d", cors_origins=("*",))
    try:
        async with httpx.AsyncClient(base_url=server.api) as http:
            r = await http.get("/channels", headers={**server.headers, "Origin": EVIL})
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert "Vary" not in r.headers
    finally:
        assert server.node is not None
        await server.node.stop()


async def test_websocket_origin_allow_list(guarded: Server) -> None:
    async with leap(guarded.ws_url, guarded.project_id, query="") as ok_client:
        assert ok_client.init["scope"] == "noauth"  # no Origin at all: a backend
    async with websockets.connect(guarded.ws_url, origin=APP) as ws:  # type: ignore[arg-type]
        assert json.loads(await ws.recv())["op"] == 1
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(guarded.ws_url, origin=EVIL):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403
    assert json.loads(refused.value.response.body or b"{}")["error"]["code"] == "forbidden"


def test_no_secret_reaches_the_log(tmp_path: Path) -> None:
    """A full run at debug level: no project token or Leap token issued is in any line."""
    data = str(tmp_path / "d")
    port = free_port()
    proc = subprocess.Popen(
        switchboard_cmd("serve", "--port", str(port), "--data", data, "--log-level", "debug"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    secrets: list[str] = []
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not lines or "Project token" not in lines[-1]:
            line = proc.stdout.readline()
            assert line, "the server exited"
            lines.append(line)
        project_token = lines[-1].split()[-1]
        project_id = next(line.split()[-1] for line in lines if "Project ID" in line)
        secrets.append(project_token)
        more = subprocess.run(
            switchboard_cmd(
                "project-tokens", "create", "--project", project_id, "--json", "--data", data
            ),
            capture_output=True,
            text=True,
        )
        assert more.returncode == 0, more.stderr
        secrets += re.findall(r"ptk_[A-Za-z0-9_-]+", more.stdout)
        assert len(secrets) == 2
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base + "/v1", headers={"Authorization": project_token}) as http:
            http.put("/channels/room", json={"type": "private"})
            for i in range(5):
                token = http.post("/channels/tokens", json={"state": {"i": i}}).json()["data"]
                secrets.append(token["token"]["id"])
            for token_id in secrets[-5:]:
                http.put(f"/channels/room/subscribers/{token_id}")
                http.get(f"/channels/tokens/{token_id}")
                http.patch(f"/channels/tokens/{token_id}", json={"state": {"x": 1}})
                http.post(f"/channels/tokens/{token_id}/messages", json={"e": "dm"})
                http.post(f"/channels/tokens/{token_id}/messages", content=b"not json")
            http.delete(f"/channels/tokens/{secrets[-1]}")
            http.get("/channels", headers={"Authorization": project_token + "x"})  # near miss
            http.get(f"/channels/tokens/{secrets[-2]}x")
        ws_url = base.replace("http", "ws") + "/ws"

        async def sockets() -> None:
            for token_id in [*secrets[-5:], project_token, "leap_token_" + "A" * 43]:
                async with websockets.connect(ws_url) as ws:
                    await ws.recv()
                    await ws.send(
                        json.dumps({"op": 2, "d": {"project_id": project_id, "token": token_id}})
                    )
                    with contextlib.suppress(websockets.ConnectionClosed):
                        await ws.recv()

        asyncio.run(sockets())
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0
    records = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert len(records) > 30  # the run was logged, line by line
    assert len(secrets) >= 6
    for secret in secrets:
        assert secret not in stderr, f"a secret ({secret[:12]}…) is in the log"
        # Nor its random part on its own (base64url: it may hold "_" itself).
        assert secret.removeprefix("ptk_").removeprefix("leap_token_") not in stderr
