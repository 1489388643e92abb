"""export then import: SQLite to Redis and back, nothing lost."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest

from switchboard.exceptions import Conflict, InvalidRequest
from switchboard.server import ids
from switchboard.server.models import ChannelType, Token
from switchboard.server.permissions import ALL, Permission
from switchboard.server.store import SqliteStore
from switchboard.server.store.redis import RedisStore
from switchboard.server.transfer import decode_dump, export_store, import_store
from tests.conftest import switchboard_cmd


async def fill(store: SqliteStore) -> str:
    project = await store.create_project("shop")
    await store.add_project_token(project.id, ids.hash_secret("ptk_a"), "ptk_a…")
    revoked = await store.add_project_token(project.id, ids.hash_secret("ptk_b"), "ptk_b…")
    await store.revoke_project_token(revoked.id)
    await store.add_project_token(
        project.id,
        ids.hash_secret("ptk_c"),
        "ptk_c…",
        Permission.READ_CHANNELS | Permission.MESSAGE_TOKEN,
    )
    from switchboard.server.models import Channel

    for i, kind in enumerate(ChannelType):
        await store.create_channel(
            Channel(
                project.id,
                f"ch{i}",
                kind,
                msgspec.Raw(b'{"i": %d, "l": [1.5, null]}' % i),
                f"2026-01-0{i + 1}T00:00:00.000Z",
            )
        )
    await store.create_token(
        Token(
            project.id,
            "leap_token_x",
            msgspec.Raw(b'{"u": "x"}'),
            "2026-02-01T00:00:00.000Z",
            "2099-01-01T00:00:00.000Z",
        )
    )
    await store.add_subscription(project.id, "ch0", "leap_token_x")
    await store.add_subscription(project.id, "ch2", "leap_token_x")
    await store.create_project("empty")
    return project.id


def comparable(dump: Any) -> Any:
    data = json.loads(msgspec.json.encode(dump))
    data.pop("exported_at")
    return data


async def test_sqlite_to_redis_and_back(tmp_path: Path, redis_url: str) -> None:
    source = SqliteStore(tmp_path / "a")
    await source.open()
    redis_store = RedisStore(redis_url, prefix="moved:")
    await redis_store.open()
    back = SqliteStore(tmp_path / "b")
    await back.open()
    try:
        project_id = await fill(source)
        dump = await export_store(source)
        counts = await import_store(redis_store, dump)
        assert counts == {
            "projects": 2,
            "project_tokens": 3,
            "channels": 3,
            "tokens": 1,
            "subscriptions": 2,
        }
        assert comparable(await export_store(redis_store)) == comparable(dump)
        await import_store(back, await export_store(redis_store))
        assert comparable(await export_store(back)) == comparable(dump)
        # The secret still opens the project in the new store; the revoked one does not.
        found = await redis_store.find_project_token(ids.hash_secret("ptk_a"))
        assert found is not None and found.project_id == project_id
        assert await redis_store.find_project_token(ids.hash_secret("ptk_b")) is None
        # Permissions travel with the token, by name.
        [shop] = [p for p in dump.projects if p.id == project_id]
        assert [t.permissions for t in shop.project_tokens][2] == ["read_channels", "message_token"]
        for store in (redis_store, back):
            access = await store.find_project_by_token(ids.hash_secret("ptk_c"))
            assert access is not None
            assert access.permissions == Permission.READ_CHANNELS | Permission.MESSAGE_TOKEN
        # A second import is refused whole.
        with pytest.raises(Conflict):
            await import_store(redis_store, dump)
    finally:
        await source.close()
        await redis_store.close()
        await back.close()


def test_cli_round_trip(tmp_path: Path, redis_url: str) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(switchboard_cmd(*args), capture_output=True, text=True, timeout=30)

    made = run("projects", "create", "app", "--data", str(tmp_path / "a"), "--json")
    secret = json.loads(made.stdout)["project_token"]
    dump_file = tmp_path / "dump.json"
    exported = run("export", "--data", str(tmp_path / "a"), "-o", str(dump_file))
    assert exported.returncode == 0, exported.stderr
    assert secret not in dump_file.read_text()
    imported = run("import", str(dump_file), "--redis", redis_url, "--json")
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["imported"]["projects"] == 1
    listed = run("projects", "list", "--redis", redis_url, "--json")
    assert [p["name"] for p in json.loads(listed.stdout)["projects"]] == ["app"]
    again = run("import", str(dump_file), "--redis", redis_url)
    assert again.returncode != 0 and "nothing imported" in again.stderr
    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"format": "other"}')
    bad = run("import", str(garbage), "--data", str(tmp_path / "c"))
    assert bad.returncode != 0 and "not a Switchboard export" in bad.stderr


def _dump(version: int, permissions: Any = None) -> bytes:
    token: dict[str, Any] = {
        "id": "ptkid_1",
        "hint": "ptk_a…",
        "created_at": "2026-01-01T00:00:00.000Z",
        "secret_hash": ids.hash_secret("ptk_a"),
    }
    if permissions is not None:
        token["permissions"] = permissions
    project = {"id": "project_1", "name": "p", "created_at": "2026-01-01T00:00:00.000Z"}
    return json.dumps(
        {
            "format": "switchboard-export",
            "version": version,
            "exported_at": "2026-01-01T00:00:00.000Z",
            "projects": [{**project, "project_tokens": [token]}],
        }
    ).encode()


async def test_a_version_1_dump_gives_its_tokens_every_permission(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "a")
    await store.open()
    try:
        await import_store(store, decode_dump(_dump(1)))
        access = await store.find_project_by_token(ids.hash_secret("ptk_a"))
        assert access is not None and access.permissions == ALL
    finally:
        await store.close()


async def test_an_unknown_permission_in_a_dump_imports_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "a")
    await store.open()
    try:
        with pytest.raises(InvalidRequest, match=r"launch_rockets.*nothing imported"):
            await import_store(store, decode_dump(_dump(2, ["read_channels", "launch_rockets"])))
        assert await store.list_projects() == []
    finally:
        await store.close()


def test_a_dump_of_a_newer_version_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="version 1 or 2"):
        decode_dump(_dump(3))
