"""What only a real `switchboard` process shows: the CLI, durability, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import Server, launch, stop, switchboard_cmd
from tests.e2e.leap import leap


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        switchboard_cmd(*args),
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def cli_json(*args: str, env: dict[str, str] | None = None) -> Any:
    result = cli(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["projects"],
        ["projects", "create"],
        ["projects", "list"],
        ["project-tokens"],
        ["project-tokens", "create"],
        ["project-tokens", "list"],
        ["project-tokens", "revoke"],
        ["tokens"],
        ["tokens", "create"],
        ["export"],
        ["import"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_serve_help_names_every_environment_variable() -> None:
    text = cli("serve", "--help").stdout
    for var in [
        "SWITCHBOARD_HOST",
        "SWITCHBOARD_PORT",
        "SWITCHBOARD_DATA",
        "SWITCHBOARD_REDIS_URL",
        "SWITCHBOARD_HEARTBEAT_INTERVAL",
        "SWITCHBOARD_MAX_PAYLOAD_BYTES",
        "SWITCHBOARD_LOG_LEVEL",
    ]:
        assert var in text


def test_project_commands_before_the_first_serve(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    created = cli_json("projects", "create", "shop", "--data", data)
    project = created["project"]
    assert project["name"] == "shop" and project["id"].startswith("project_")
    assert created["project_token"].startswith("ptk_")
    # The environment variable stands in for --data.
    listed = cli_json("projects", "list", env={"SWITCHBOARD_DATA": data})
    assert [p["name"] for p in listed["projects"]] == ["shop"]
    duplicate = cli("projects", "create", "shop", "--data", data)
    assert duplicate.returncode != 0 and "exists" in duplicate.stderr

    second = cli_json("project-tokens", "create", "--project", project["id"], "--data", data)
    tokens = cli_json("project-tokens", "list", "--project", project["id"], "--data", data)
    assert len(tokens["project_tokens"]) == 2
    assert all(second["project_token"] not in json.dumps(t) for t in tokens["project_tokens"])

    leap_token = cli_json(
        "tokens", "create", "--project", project["id"], "--state", '{"userId": 7}', "--data", data
    )["token"]
    assert leap_token["id"].startswith("leap_token_") and leap_token["state"] == {"userId": 7}
    bad = cli("tokens", "create", "--project", project["id"], "--state", "{nope", "--data", data)
    assert bad.returncode != 0 and "JSON" in bad.stderr
    missing = cli("tokens", "create", "--project", "project_nope", "--data", data)
    assert missing.returncode != 0 and "no project" in missing.stderr

    # A server on this store has no "default" project to make, and serves "shop".
    server = launch(tmp_path / "data", credentials=(project["id"], created["project_token"]))
    try:
        assert "First start" not in "".join(server.output)
        with httpx.Client(base_url=server.api, headers=server.headers) as http:
            assert http.get("/channels").status_code == 200
            r = http.get(f"/channels/tokens/{leap_token['id']}")
            assert r.json()["data"]["token"]["state"] == {"userId": 7}
            # Revoking from the command line, beside the running server, cuts off at once.
            [first_id] = [t["id"] for t in tokens["project_tokens"] if not t["revoked_at"]][:1]
            revoked = cli_json("project-tokens", "revoke", first_id, "--data", data)
            assert revoked == {"revoked": first_id}
            assert http.get("/channels").status_code == 401
            assert (
                http.get(
                    "/channels", headers={"Authorization": second["project_token"]}
                ).status_code
                == 200
            )
    finally:
        assert stop(server) == 0


def test_first_serve_prints_the_default_project_once(spawn_server: Any, tmp_path: Path) -> None:
    first: Server = spawn_server(tmp_path / "d")
    text = "".join(first.output)
    for piece in [
        "REST API:",
        "/v1",
        "WebSocket:",
        "/ws",
        "Console:",
        "/console",
        'created the project "default"',
        first.project_id,
        first.project_token,
    ]:
        assert piece in text
    assert stop(first) == 0
    again: Server = spawn_server(
        tmp_path / "d", credentials=(first.project_id, first.project_token)
    )
    assert first.project_token not in "".join(again.output)
    with httpx.Client(base_url=again.api, headers=again.headers) as http:
        assert http.get("/channels").status_code == 200


def test_acknowledged_writes_survive_kill_9(spawn_server: Any, tmp_path: Path) -> None:
    server: Server = spawn_server(tmp_path / "d")
    with httpx.Client(base_url=server.api, headers=server.headers) as http:

        def ok(r: httpx.Response) -> Any:
            assert r.status_code == 200, r.text
            return r.json()["data"]

        ok(http.put("/channels/game", json={"type": "private", "state": {"round": 1}}))
        ok(http.patch("/channels/game/state", json={"score": 10}))
        token = ok(
            http.post(
                "/channels/tokens",
                json={"state": {"userId": "u1"}, "expires_at": "2099-01-01T00:00:00Z"},
            )
        )
        token_id = token["token"]["id"]
        ok(http.put(f"/channels/game/subscribers/{token_id}"))
        for i in range(50):
            ok(http.put(f"/channels/bulk-{i}", json={"type": "public", "state": {"i": i}}))
        ok(http.delete("/channels/bulk-0"))
        ok(http.patch(f"/channels/tokens/{token_id}", json={"state": {"userId": "u2"}}))
    assert stop(server, signal.SIGKILL) == -signal.SIGKILL

    again: Server = spawn_server(
        tmp_path / "d", credentials=(server.project_id, server.project_token)
    )
    with httpx.Client(base_url=again.api, headers=again.headers) as http:
        game = http.get("/channels/game").json()["data"]["channel"]
        assert game["state"] == {"round": 1, "score": 10} and game["type"] == "private"
        listing = http.get("/channels").json()["data"]
        assert listing["total_count"] == 50
        assert http.get("/channels/bulk-0").status_code == 404
        assert http.get("/channels/bulk-49/state").json()["data"] == {"state": {"i": 49}}
        got = http.get(f"/channels/tokens/{token_id}").json()["data"]["token"]
        assert got["state"] == {"userId": "u2"}
        assert got["expires_at"] == "2099-01-01T00:00:00.000Z"
        tokens = http.get("/channels/game/tokens").json()["data"]["tokens"]
        assert [t["id"] for t in tokens] == [token_id]


async def test_sigterm_closes_sockets_with_1001_and_exits_0(tmp_path: Path) -> None:
    server = launch(tmp_path / "d")
    try:
        async with leap(server.ws_url, server.project_id) as client:
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            code, _ = await client.closed(timeout=10)
            assert code == 1001
        assert server.process.wait(timeout=10) == 0
    finally:
        assert server.process is not None
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
        if server.process.stdout is not None:
            server.process.stdout.close()
    with pytest.raises(OSError):
        async with websockets.connect(server.ws_url, open_timeout=2):
            pass


def test_logs_are_json_lines_without_whole_secrets(tmp_path: Path) -> None:
    from tests.conftest import free_port

    port = free_port()
    proc = subprocess.Popen(
        switchboard_cmd("serve", "--port", str(port), "--data", str(tmp_path / "d")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        while not lines or "Project token" not in lines[-1]:
            lines.append(proc.stdout.readline())
        secret = lines[-1].split()[-1]
        base = f"http://127.0.0.1:{port}/v1"
        with httpx.Client(base_url=base, headers={"Authorization": secret}) as http:
            token = http.post("/channels/tokens").json()["data"]["token"]["id"]
            http.get(f"/channels/tokens/{token}")
            http.get("/channels", headers={"Authorization": "ptk_wrong_secret_value"})
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    records = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert any(r["event"] == "request" and r["status"] == 401 for r in records)
    assert any(r["event"] == "listening" for r in records)
    assert secret not in stderr
    assert token not in stderr
    assert "ptk_wrong_secret_value" not in stderr
    assert proc.returncode == 0


def test_a_port_in_use_fails_before_touching_the_store(tmp_path: Path) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        result = cli("serve", "--port", str(port), "--data", str(tmp_path / "d"))
    finally:
        blocker.close()
    assert result.returncode == 1
    assert "cannot listen" in result.stderr
    assert not (tmp_path / "d" / "switchboard.sqlite3").exists()
