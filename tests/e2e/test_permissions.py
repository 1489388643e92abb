"""Project-token permissions over real HTTP, WebSocket and the command line.

For every REST route: a token with every permission but the route's gets 403
``missing_permission`` and changes nothing (nothing stored, nothing sent to a live
connection), whatever the body and whether or not the resource exists; a token with
only that permission succeeds. Also: the gateway's project scope, the Python SDK's
error, the CLI, and a store written before permissions existed.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import switchboard
from switchboard.server import ids
from switchboard.server.node import Node
from switchboard.server.permissions import ALIASES, ALL, ROUTE_PERMISSIONS, Permission, names
from switchboard.server.store import SqliteStore
from switchboard.server.store.redis import RedisStore
from switchboard.server.store.sqlite import SCHEMA_VERSION
from tests.conftest import Server, make_settings, switchboard_cmd
from tests.e2e.leap import leap

P = Permission


@dataclass(frozen=True)
class Case:
    needed: Permission
    """What the route needs: the documented table (docs/permissions.md), written out."""
    method: str
    route: str
    """The route as the permission table names it."""
    path: str
    """The path called; ``{T}``/``{U}`` are a subscribed and an unsubscribed token."""
    body: Any = None
    missing_path: str | None = None
    """The same call on a channel or token that does not exist (still 403, never 404)."""

    @property
    def id(self) -> str:
        return f"{self.method} {self.route}"


CASES = [
    Case(P.READ_CHANNELS, "GET", "/v1/channels", "/channels"),
    Case(P.CREATE_CHANNEL, "POST", "/v1/channels", "/channels", {"type": "public"}),
    Case(P.CREATE_CHANNEL, "PUT", "/v1/channels/{channel_id}", "/channels/new", {"type": "public"}),
    Case(
        P.READ_CHANNELS,
        "GET",
        "/v1/channels/{channel_id}",
        "/channels/c",
        missing_path="/channels/nope",
    ),
    Case(
        P.DELETE_CHANNELS,
        "DELETE",
        "/v1/channels/{channel_id}",
        "/channels/c",
        missing_path="/channels/nope",
    ),
    Case(
        P.CREATE_CHANNEL,
        "PATCH",
        "/v1/channels/{channel_id}",
        "/channels/c",
        {"history": {"size": 3}},
        "/channels/nope",
    ),
    Case(
        P.READ_CHANNELS,
        "GET",
        "/v1/channels/{channel_id}/state",
        "/channels/c/state",
        missing_path="/channels/nope/state",
    ),
    Case(
        P.UPDATE_CHANNEL_STATE,
        "PUT",
        "/v1/channels/{channel_id}/state",
        "/channels/c/state",
        {"b": 2},
        "/channels/nope/state",
    ),
    Case(
        P.UPDATE_CHANNEL_STATE,
        "PATCH",
        "/v1/channels/{channel_id}/state",
        "/channels/c/state",
        {"b": 2},
        "/channels/nope/state",
    ),
    Case(
        P.PUBLISH_CHANNEL_MESSAGES,
        "POST",
        "/v1/channels/{channel_id}/messages",
        "/channels/c/messages",
        {"e": "hi", "d": 1},
        "/channels/nope/messages",
    ),
    Case(
        P.READ_CHANNELS,
        "GET",
        "/v1/channels/{channel_id}/messages",
        "/channels/h/messages",
        missing_path="/channels/nope/messages",
    ),
    Case(
        P.MANAGE_CHANNEL_SUBSCRIBERS,
        "PUT",
        "/v1/channels/{channel_id}/subscribers/{token}",
        "/channels/c/subscribers/{U}",
        missing_path="/channels/nope/subscribers/leap_token_nope",
    ),
    Case(
        P.MANAGE_CHANNEL_SUBSCRIBERS,
        "DELETE",
        "/v1/channels/{channel_id}/subscribers/{token}",
        "/channels/c/subscribers/{T}",
        missing_path="/channels/nope/subscribers/leap_token_nope",
    ),
    Case(
        P.READ_LEAP_TOKENS,
        "GET",
        "/v1/channels/{channel_id}/tokens",
        "/channels/c/tokens",
        missing_path="/channels/nope/tokens",
    ),
    Case(
        P.READ_CHANNELS,
        "GET",
        "/v1/channels/{channel_id}/stats",
        "/channels/c/stats",
        missing_path="/channels/nope/stats",
    ),
    Case(
        P.READ_LEAP_TOKENS,
        "GET",
        "/v1/channels/{channel_id}/presence",
        "/channels/c/presence",
        missing_path="/channels/nope/presence",
    ),
    Case(
        P.CREATE_LEAP_TOKEN, "POST", "/v1/channels/tokens", "/channels/tokens", {"state": {"x": 1}}
    ),
    Case(P.READ_LEAP_TOKENS, "GET", "/v1/channels/tokens", "/channels/tokens"),
    Case(
        P.READ_LEAP_TOKENS,
        "GET",
        "/v1/channels/tokens/{token}",
        "/channels/tokens/{T}",
        missing_path="/channels/tokens/leap_token_nope",
    ),
    Case(
        P.UPDATE_LEAP_TOKEN,
        "PATCH",
        "/v1/channels/tokens/{token}",
        "/channels/tokens/{T}",
        {"state": {"u": 2}},
        "/channels/tokens/leap_token_nope",
    ),
    Case(
        P.UPDATE_LEAP_TOKEN,
        "DELETE",
        "/v1/channels/tokens/{token}",
        "/channels/tokens/{T}",
        missing_path="/channels/tokens/leap_token_nope",
    ),
    Case(
        P.MESSAGE_TOKEN,
        "POST",
        "/v1/channels/tokens/{token}/messages",
        "/channels/tokens/{T}/messages",
        {"e": "hi", "d": 1},
        "/channels/tokens/leap_token_nope/messages",
    ),
    Case(
        P.READ_LEAP_TOKENS,
        "GET",
        "/v1/channels/tokens/{token}/messages",
        "/channels/tokens/{T}/messages",
        missing_path="/channels/tokens/leap_token_nope/messages",
    ),
    Case(P.READ_CHANNELS, "GET", "/v1/stats", "/stats"),
    Case(P.READ_CHANNELS, "GET", "/v1/settings", "/settings"),
    Case(P.CREATE_CHANNEL, "PATCH", "/v1/settings", "/settings", {"history": {"size": 5}}),
]


def test_the_table_is_the_documented_one() -> None:
    assert {(c.method, c.route): c.needed for c in CASES} == ROUTE_PERMISSIONS


@dataclass
class World:
    node: Server
    admin: httpx.AsyncClient
    subscribed: str
    unsubscribed: str

    async def token_with(self, granted: Permission) -> str:
        assert self.node.node is not None
        return await self.node.node.service.create_project_token(self.node.project_id, granted)

    def path(self, case: Case, missing: bool = False) -> str:
        path = case.missing_path if missing else case.path
        assert path is not None
        return path.replace("{T}", self.subscribed).replace("{U}", self.unsubscribed)

    async def snapshot(self) -> dict[str, Any]:
        """Everything a call could have changed, read with the full-access token."""

        async def get(path: str) -> Any:
            response = await self.admin.get(path)
            assert response.status_code == 200, response.text
            return response.json()["data"]

        channels = (await get("/channels"))["channels"]
        per_channel = {
            c["id"]: (
                c["type"],
                c["state"],
                c.get("history"),
                [t["id"] for t in (await get(f"/channels/{c['id']}/tokens"))["tokens"]],
            )
            for c in channels
        }
        tokens = [
            (t["id"], t["state"], t["expires_at"])
            for t in (await get("/channels/tokens"))["tokens"]
        ]
        return {
            "channels": per_channel,
            "tokens": tokens,
            "messages": (await get("/stats"))["messages"]["total"],
        }


@pytest.fixture
async def world(node: Server) -> AsyncIterator[World]:
    async with httpx.AsyncClient(base_url=node.api, headers=node.headers) as admin:
        ok = await admin.put("/channels/c", json={"type": "private", "state": {"a": 1}})
        assert ok.status_code == 200, ok.text
        # With history, so that reading it (GET .../messages) succeeds.
        ok = await admin.put("/channels/h", json={"type": "public", "history": {"size": 10}})
        assert ok.status_code == 200, ok.text
        # With token inboxes, so that reading one (GET .../tokens/:token/messages) succeeds.
        ok = await admin.patch("/settings", json={"inbox": {"size": 10}})
        assert ok.status_code == 200, ok.text
        subscribed = (await admin.post("/channels/tokens", json={"state": {"u": 1}})).json()
        unsubscribed = (await admin.post("/channels/tokens", json={})).json()
        t = subscribed["data"]["token"]["id"]
        u = unsubscribed["data"]["token"]["id"]
        assert (await admin.put(f"/channels/c/subscribers/{t}")).status_code == 200
        yield World(node, admin, t, u)


def forbidden(response: httpx.Response, needed: Permission) -> str:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "missing_permission", body
    [name] = names(needed)
    assert body["error"]["permission"] == name
    message: str = body["error"]["message"]
    assert name in message
    return message


async def call(
    token: str, world: World, case: Case, *, missing: bool = False, content: bytes | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=world.node.api, headers={"Authorization": token}) as c:
        kwargs: dict[str, Any] = {}
        if content is not None:
            kwargs["content"] = content
            kwargs["headers"] = {"Content-Type": "application/json"}
        elif case.body is not None:
            kwargs["json"] = case.body
        return await c.request(case.method, world.path(case, missing), **kwargs)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_a_route_needs_its_permission_and_only_it(world: World, case: Case) -> None:
    needed = case.needed
    # Every other permission: none of them stands in for the one the route needs.
    without = await world.token_with(ALL & ~needed & ~ALIASES.get(needed, P(0)))
    before = await world.snapshot()
    async with leap(world.node.ws_url, world.node.project_id, world.subscribed) as live:
        assert [c["id"] for c in live.init["channels"]] == ["c"]
        message = forbidden(await call(without, world, case), needed)
        assert f"{case.method} {case.route}" in message
        assert world.subscribed not in message
        if case.missing_path is not None:
            # Refused before the lookup: a caller without the permission cannot probe IDs.
            forbidden(await call(without, world, case, missing=True), needed)
        if case.body is not None:
            # ... and before the body is read: a bad body is still a 403, not a 400.
            forbidden(await call(without, world, case, content=b"{not json"), needed)
        await live.nothing(0.2)
    assert await world.snapshot() == before

    only = await world.token_with(needed)
    response = await call(only, world, case)
    assert response.status_code == 200, response.text
    assert response.json()["success"] is True


async def test_the_old_channel_token_flag_creates_leap_tokens(world: World) -> None:
    legacy = await world.token_with(P.CREATE_CHANNEL_TOKEN)
    async with httpx.AsyncClient(base_url=world.node.api, headers={"Authorization": legacy}) as c:
        response = await c.post("/channels/tokens", json={})
        assert response.status_code == 200, response.text
        # It grants nothing else.
        forbidden(await c.get("/channels/tokens"), P.READ_LEAP_TOKENS)


async def test_unauthenticated_and_foreign_project_checks_come_first(world: World) -> None:
    reader = await world.token_with(P.READ_CHANNELS)
    async with httpx.AsyncClient(base_url=world.node.api) as c:
        assert (await c.delete("/channels/c")).status_code == 401
        assert (
            await c.delete("/channels/c", headers={"Authorization": "ptk_nope"})
        ).status_code == 401
        response = await c.get(
            "/channels", params={"project": "project_other"}, headers={"Authorization": reader}
        )
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


async def test_every_v1_route_declares_its_permission(world: World) -> None:
    """A route added without a table entry would answer 500 ("declares no permission")
    to a full-access token; the routes that do not authenticate at all are unaffected."""
    assert world.node.node is not None
    app = world.node.node.app
    seen = set()
    for route in app.router.routes():
        resource = route.resource
        if (
            resource is None
            or not resource.canonical.startswith("/v1/")
            or route.method in ("HEAD", "*")
        ):
            continue
        seen.add((route.method, resource.canonical))
        path = resource.canonical.replace("{channel_id}", "nope").replace(
            "{token}", "leap_token_nope"
        )
        response = await world.admin.request(route.method, path.removeprefix("/v1"))
        assert response.status_code != 500, (route.method, resource.canonical, response.text)
    assert set(ROUTE_PERMISSIONS) <= seen


async def test_the_overview_shows_the_tokens_permissions(world: World) -> None:
    reader = await world.token_with(P.READ_CHANNELS | P.MESSAGE_TOKEN)
    async with httpx.AsyncClient(base_url=world.node.api, headers={"Authorization": reader}) as c:
        stats = (await c.get("/stats")).json()["data"]
    assert stats["permissions"] == ["read_channels", "message_token"]
    admin = (await world.admin.get("/stats")).json()["data"]
    assert admin["permissions"] == names(ALL)


async def test_the_python_sdk_raises_missing_permission(world: World) -> None:
    reader = await world.token_with(P.READ_CHANNELS)
    async with switchboard.AsyncSwitchboard(reader, world.node.base_url) as sb:
        assert [c.id for c in await sb.channels.get_all()] == ["c", "h"]
        with pytest.raises(switchboard.MissingPermission) as caught:
            await sb.channels.delete("c")
    error = caught.value
    assert isinstance(error, switchboard.Forbidden)
    assert error.status == 403 and error.code == "missing_permission"
    assert error.permission == "delete_channels"
    assert "delete_channels" in error.message


# The gateway: a project-scope connection.


async def test_project_scope_identify_needs_read_channels(world: World) -> None:
    writer = await world.token_with(ALL & ~P.READ_CHANNELS)
    async with leap(world.node.ws_url) as client:
        await client.recv()  # HELLO
        await client.send({"op": 2, "d": {"project_id": world.node.project_id, "token": writer}})
        code, reason = await client.closed()
    assert code == 4001
    assert "read_channels" in reason


async def test_project_scope_with_read_channels_subscribes_but_may_not_publish(
    world: World,
) -> None:
    reader = await world.token_with(P.READ_CHANNELS)
    async with (
        leap(world.node.ws_url, world.node.project_id, world.subscribed) as member,
        leap(world.node.ws_url, world.node.project_id, reader) as console,
    ):
        assert console.init["scope"] == "project"
        available = await console.subscribe("c")
        assert available["e"] == "AVAILABLE"
        await console.publish("c", "hi", 1)
        refused = await console.dispatch("ERROR")
        assert refused["c"] == "c" and refused["d"]["code"] == "missing_permission"
        assert "publish_channel_messages" in refused["d"]["message"]
        await member.nothing(0.2)

    publisher = await world.token_with(P.READ_CHANNELS | P.PUBLISH_CHANNEL_MESSAGES)
    async with (
        leap(world.node.ws_url, world.node.project_id, world.subscribed) as member,
        leap(world.node.ws_url, world.node.project_id, publisher) as console,
    ):
        assert (await console.subscribe("c"))["e"] == "AVAILABLE"
        await console.publish("c", "hi", 1)
        message = await member.dispatch("MESSAGE")
        assert message["d"] == {"e": "hi", "d": 1}


# The command line.


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(switchboard_cmd(*args), capture_output=True, text=True, timeout=30)


def test_the_cli_creates_and_lists_restricted_tokens(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    made = run_cli("projects", "create", "app", "--data", data, "--json")
    assert made.returncode == 0, made.stderr
    project_id = json.loads(made.stdout)["project"]["id"]

    created = run_cli(
        "project-tokens", "create", "--project", project_id, "--data", data, "--json",
        "--permissions", "read_channels, publish_channel_messages",
        "--permissions", "MESSAGE_TOKEN",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    out = json.loads(created.stdout)
    assert out["permissions"] == ["read_channels", "publish_channel_messages", "message_token"]
    assert out["project_token"].startswith("ptk_")

    text = run_cli(
        "project-tokens", "create", "--project", project_id, "--data", data,
        "--permissions", "read_leap_tokens",
    )  # fmt: skip
    assert text.returncode == 0, text.stderr
    assert "permissions: read_leap_tokens" in text.stdout

    listed = run_cli("project-tokens", "list", "--project", project_id, "--data", data, "--json")
    assert listed.returncode == 0, listed.stderr
    tokens = json.loads(listed.stdout)["project_tokens"]
    assert [t["permissions"] for t in tokens] == [
        names(ALL),
        ["read_channels", "publish_channel_messages", "message_token"],
        ["read_leap_tokens"],
    ]
    plain = run_cli("project-tokens", "list", "--project", project_id, "--data", data)
    lines = plain.stdout.splitlines()
    assert lines[0].endswith("permissions: all")
    assert lines[1].endswith("permissions: read_channels,publish_channel_messages,message_token")

    bad = run_cli(
        "project-tokens", "create", "--project", project_id, "--data", data,
        "--permissions", "read_channels,launch_rockets",
    )  # fmt: skip
    assert bad.returncode == 2
    assert "unknown permission 'launch_rockets'" in bad.stderr and "read_channels" in bad.stderr
    # Nothing was created by the refused command.
    again = run_cli("project-tokens", "list", "--project", project_id, "--data", data, "--json")
    assert len(json.loads(again.stdout)["project_tokens"]) == 3


# Stores written before permissions existed.

_SCHEMA_1 = """
CREATE TABLE projects (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL) STRICT;
CREATE TABLE project_tokens (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL UNIQUE, hint TEXT NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT
) STRICT;
PRAGMA user_version=1;
"""


async def test_an_old_sqlite_store_is_migrated_with_full_access(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    secret = "ptk_" + "a" * 40
    db = sqlite3.connect(data / "switchboard.sqlite3")
    db.executescript(_SCHEMA_1)
    db.execute("INSERT INTO projects VALUES ('project_old', 'old', '2025-01-01T00:00:00.000Z')")
    db.execute(
        "INSERT INTO project_tokens VALUES ('ptkid_old', 'project_old', ?, 'ptk_aa…', "
        "'2025-01-01T00:00:00.000Z', NULL)",
        (ids.hash_secret(secret),),
    )
    db.commit()
    db.close()

    node = Node(make_settings(data))
    await node.start()
    try:
        assert node.bootstrap is None
        async with httpx.AsyncClient(
            base_url=node.base_url + "/v1", headers={"Authorization": secret}
        ) as c:
            stats = (await c.get("/stats")).json()["data"]
            assert stats["permissions"] == names(ALL)
            assert (await c.put("/channels/x", json={"type": "public"})).status_code == 200
            assert (await c.delete("/channels/x")).status_code == 200
    finally:
        await node.stop()

    db = sqlite3.connect(data / "switchboard.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)  # the current one
    assert db.execute("SELECT permissions FROM project_tokens").fetchone() == (int(ALL),)
    db.close()
    # Opening it again (a second process, a restart) migrates nothing twice.
    store = SqliteStore(data)
    await store.open()
    [info] = await store.list_project_tokens("project_old")
    assert info.permissions == ALL
    await store.close()


async def test_an_old_redis_token_without_the_field_has_full_access(redis_url: str) -> None:
    store = RedisStore(redis_url, prefix="old:")
    await store.open()
    try:
        project = await store.create_project("old")
        restricted = await store.add_project_token(project.id, "h2", "ptk_bb…", P.READ_CHANNELS)
        # A hash as an older Switchboard wrote it: no permissions field.
        info = await store.add_project_token(project.id, "h1", "ptk_aa…")
        await store.redis.hdel(store.keys.project_token(project.id, info.id), "permissions")
        access = await store.find_project_by_token("h1")
        assert access is not None and access.permissions == ALL
        listed = {t.id: t.permissions for t in await store.list_project_tokens(project.id)}
        assert listed == {info.id: ALL, restricted.id: P.READ_CHANNELS}
    finally:
        await store.close()
