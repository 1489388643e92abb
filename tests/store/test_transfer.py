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
from switchboard.server.history import INBOX, HistoryPolicy, InboxSetting
from switchboard.server.models import ChannelType, Token
from switchboard.server.permissions import ALL, Permission
from switchboard.server.store import SqliteStore
from switchboard.server.store.redis import RedisStore
from switchboard.server.store.transfer import decode_dump, export_store, import_store
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
    # History: ch0 keeps its last 3 of 5 messages, ch1 keeps history but has none yet.
    await store.set_history_policy(project.id, "ch0", HistoryPolicy(3, 600))
    for n in range(5):
        await store.append_message(project.id, "ch0", "m", msgspec.Raw(b'{"n": %d}' % n))
    await store.set_history_policy(project.id, "ch1", HistoryPolicy(10, 60))
    # Settings: the webhooks with their signing secret, which must survive the move.
    webhooks = b'{"url":"http://app.example/h","events":["token.online"],"secret":"whsec_k"}'
    await store.set_project_setting(project.id, "webhooks", msgspec.Raw(webhooks))
    # Token inboxes: on, with two direct messages kept for leap_token_x.
    inbox = msgspec.json.encode(InboxSetting(10, 600, "e1e1e1e1"))
    await store.set_project_setting(project.id, INBOX, msgspec.Raw(inbox))
    for n in range(2):
        await store.append_inbox(project.id, "leap_token_x", "dm", msgspec.Raw(b"%d" % n))
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
            "histories": 2,
            "history_messages": 3,
            "settings": 2,
            "inboxes": 1,
            "inbox_messages": 2,
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
        # (By hint: tokens made in the same millisecond have no order between them.)
        [restricted] = [t for t in shop.project_tokens if t.hint == "ptk_c…"]
        assert restricted.permissions == ["read_channels", "message_token"]
        for store in (redis_store, back):
            access = await store.find_project_by_token(ids.hash_secret("ptk_c"))
            assert access is not None
            assert access.permissions == Permission.READ_CHANNELS | Permission.MESSAGE_TOKEN
        # History moves with its epoch and offsets: readers' positions still hold, and
        # the next message gets the next offset.
        before = await source.read_history(project_id, "ch0", 0, 10)
        assert before is not None and [m.offset for m in before.messages] == [3, 4, 5]
        for store in (redis_store, back):
            after = await store.read_history(project_id, "ch0", 0, 10)
            assert after == before
            assert await store.history_policy(project_id, "ch1") == HistoryPolicy(10, 60)
            assert await store.history_policy(project_id, "ch2") is None
            position = await store.append_message(project_id, "ch0", "m", msgspec.Raw(b"6"))
            assert position is not None and (position.offset, position.epoch) == (6, before.epoch)
        # So do inboxes: the same epoch and offsets, the next one after the top.
        inbox = await source.read_inbox(project_id, "leap_token_x", 0, 10)
        assert inbox is not None and [m.offset for m in inbox.messages] == [1, 2]
        for store in (redis_store, back):
            assert await store.read_inbox(project_id, "leap_token_x", 0, 10) == inbox
            sent = await store.append_inbox(project_id, "leap_token_x", "dm", msgspec.Raw(b"2"))
            assert sent is not None and (sent.offset, sent.epoch) == (3, "e1e1e1e1")
        for store in (redis_store, back):
            kept = await store.get_project_setting(project_id, "webhooks")
            assert kept is not None and b"whsec_k" in bytes(kept)
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


def _m(offset: int) -> dict[str, Any]:
    return {"offset": offset, "e": "m", "d": offset, "created_ms": 1_800_000_000_000}


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
    with pytest.raises(InvalidRequest, match="version 1 or 2 or 3 or 4"):
        decode_dump(_dump(5))


def _with_channel(dump: bytes, channel: dict[str, Any]) -> bytes:
    data = json.loads(dump)
    data["projects"][0]["channels"] = [channel]
    return json.dumps(data).encode()


CHANNEL = {"id": "c", "type": "public", "state": {}, "created_at": "2026-01-01T00:00:00.000Z"}


async def test_a_version_2_dump_s_channels_keep_no_history(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "a")
    await store.open()
    try:
        await import_store(store, decode_dump(_with_channel(_dump(2), CHANNEL)))
        assert await store.history_policy("project_1", "c") is None
    finally:
        await store.close()


@pytest.mark.parametrize(
    "history",
    [
        {"size": 0, "ttl_s": 60, "epoch": "e", "top": 0},
        {"size": 5, "ttl_s": 0, "epoch": "e", "top": 0},
        {"size": 5, "ttl_s": 60, "epoch": "", "top": 0},
        {"size": 5, "ttl_s": 60, "epoch": "e", "top": 1, "messages": [_m(2)]},
        {"size": 5, "ttl_s": 60, "epoch": "e", "top": 3, "messages": [_m(2), _m(1)]},
        {"size": 5, "ttl_s": 60, "epoch": "e", "top": 3, "messages": [_m(2), _m(2)]},
        {"size": 5, "ttl_s": 60, "epoch": "e", "top": 3, "messages": [_m(0)]},
    ],
)
async def test_a_history_no_store_could_hold_imports_nothing(
    tmp_path: Path, history: dict[str, Any]
) -> None:
    store = SqliteStore(tmp_path / "a")
    await store.open()
    try:
        dump = decode_dump(_with_channel(_dump(3), {**CHANNEL, "history": history}))
        with pytest.raises(InvalidRequest, match=r"channel 'c'.*nothing imported"):
            await import_store(store, dump)
        assert await store.list_projects() == []
    finally:
        await store.close()
