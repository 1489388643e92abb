"""The Store contract: every implementation passes this same suite.

Add an implementation to the ``store`` fixture's params and the whole suite runs on it.
"""

from __future__ import annotations

import msgspec
import pytest

from switchboard.exceptions import Conflict, NotFound, PayloadTooLarge
from switchboard.server.models import Access, Channel, ChannelType, Project, ProjectTokenInfo, Token
from switchboard.server.permissions import ALL, Permission
from switchboard.server.store import Store


def raw(value: object) -> msgspec.Raw:
    return msgspec.Raw(msgspec.json.encode(value))


def channel(
    project: Project,
    channel_id: str,
    kind: ChannelType = ChannelType.PRIVATE,
    state: object = None,
    created_at: str = "2026-01-01T00:00:00.000Z",
) -> Channel:
    return Channel(project.id, channel_id, kind, raw(state or {}), created_at)


def token(
    project: Project, token_id: str, state: object = None, expires_at: str | None = None
) -> Token:
    return Token(project.id, token_id, raw(state or {}), "2026-01-01T00:00:00.000Z", expires_at)


async def test_projects_are_unique_by_name(store: Store) -> None:
    a = await store.create_project("a")
    with pytest.raises(Conflict):
        await store.create_project("a")
    assert await store.get_project(a.id) == a
    assert await store.get_project("project_missing") is None
    assert [p.name for p in await store.list_projects()] == ["a"]


async def found(store: Store, secret_hash: str) -> Access | None:
    """The lookup without its generation (which starts at random on Redis)."""
    access = await store.find_project_by_token(secret_hash)
    return None if access is None else Access(access.project, access.permissions)


async def test_project_tokens_are_found_by_hash_until_revoked(
    store: Store, project: Project
) -> None:
    info = await store.add_project_token(project.id, "hash1", "ptk_ab…")
    other = await store.create_project("other")
    await store.add_project_token(other.id, "hash3", "ptk_cd…")
    assert await store.find_project_token("hash1") == info
    assert await store.find_project_token("hash2") is None
    assert await found(store, "hash1") == Access(project, ALL)
    assert await found(store, "hash3") == Access(other, ALL)
    assert await store.find_project_by_token("hash2") is None
    assert [t.id for t in await store.list_project_tokens(project.id)] == [info.id]
    assert await store.revoke_project_token(info.id) is True
    assert await store.revoke_project_token(info.id) is False
    assert await store.find_project_token("hash1") is None
    assert await store.find_project_by_token("hash1") is None
    assert await found(store, "hash3") == Access(other, ALL)
    [listed] = await store.list_project_tokens(project.id)
    assert listed.revoked_at is not None


async def test_a_revocation_bumps_the_generation_of_its_project_alone(
    store: Store, project: Project
) -> None:
    info = await store.add_project_token(project.id, "hash1", "ptk_ab…")
    await store.add_project_token(project.id, "hash2", "ptk_cd…")
    other = await store.create_project("other")
    await store.add_project_token(other.id, "hash3", "ptk_ef…")
    first = await store.find_project_by_token("hash2")
    theirs = await store.find_project_by_token("hash3")
    assert first is not None and theirs is not None
    assert await store.project_generation(project.id) == first.generation
    await store.revoke_project_token(info.id)
    # The project's other tokens' cached lookups are stale now; the other project's not.
    assert await store.project_generation(project.id) != first.generation
    assert await store.project_generation(other.id) == theirs.generation
    again = await store.find_project_by_token("hash2")
    assert again is not None and again.generation == await store.project_generation(project.id)
    assert await store.revoke_project_token(info.id) is False
    assert await store.project_generation(project.id) == again.generation


async def test_project_tokens_keep_their_permissions(store: Store, project: Project) -> None:
    granted = Permission.READ_CHANNELS | Permission.PUBLISH_CHANNEL_MESSAGES
    info = await store.add_project_token(project.id, "hash1", "ptk_ab…", granted)
    assert info.permissions == granted
    assert await found(store, "hash1") == Access(project, granted)
    assert await store.find_project_token("hash1") == info
    [listed] = await store.list_project_tokens(project.id)
    assert listed.permissions == granted
    [(dumped, secret_hash)] = await store.project_token_hashes(project.id)
    assert dumped.permissions == granted and secret_hash == "hash1"
    # The highest flag (1 << 39) survives both stores' encodings.
    top = await store.add_project_token(project.id, "hash2", "ptk_cd…", Permission.CREATE_CHANNEL)
    assert (await found(store, "hash2")) == Access(project, Permission.CREATE_CHANNEL)
    assert top.permissions == Permission.CREATE_CHANNEL


async def test_a_whole_project_token_record_keeps_its_permissions(
    store: Store, project: Project
) -> None:
    info = ProjectTokenInfo(
        "ptkid_x", project.id, "ptk_ef…", "2026-01-01T00:00:00.000Z", None, Permission.MESSAGE_TOKEN
    )
    assert await store.put_project_token(info, "hash9") == info
    assert await found(store, "hash9") == Access(project, Permission.MESSAGE_TOKEN)
    assert await store.list_project_tokens(project.id) == [info]


async def test_project_token_needs_a_project(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.add_project_token("project_missing", "h", "x")


async def test_channel_round_trip_and_conflict(store: Store, project: Project) -> None:
    created = await store.create_channel(channel(project, "game", state={"a": [1, 2]}))
    got = await store.get_channel(project.id, "game")
    assert got == created
    assert got is not None and msgspec.json.decode(got.state) == {"a": [1, 2]}
    with pytest.raises(Conflict):
        await store.create_channel(channel(project, "game"))
    assert await store.get_channel(project.id, "other") is None
    assert await store.channel_exists(project.id, "game")
    assert not await store.channel_exists(project.id, "other")


async def test_channels_are_per_project(store: Store, project: Project) -> None:
    other = await store.create_project("other")
    await store.create_channel(channel(project, "game"))
    await store.create_channel(channel(other, "game", state={"theirs": True}))
    mine = await store.get_channel(project.id, "game")
    assert mine is not None and msgspec.json.decode(mine.state) == {}
    await store.delete_channel(other.id, "game")
    assert await store.get_channel(project.id, "game") is not None
    assert await store.channel_exists(project.id, "game")
    assert not await store.channel_exists(other.id, "game")


async def test_list_channels_pages_and_sorts(store: Store, project: Project) -> None:
    for i in range(5):
        await store.create_channel(
            channel(project, f"c{i}", created_at=f"2026-01-0{i + 1}T00:00:00.000Z")
        )
    page = await store.list_channels(
        project.id, offset=0, limit=2, sort_by="created_at", descending=False
    )
    assert [c.id for c in page.items] == ["c0", "c1"] and page.total == 5
    page = await store.list_channels(
        project.id, offset=4, limit=2, sort_by="created_at", descending=False
    )
    assert [c.id for c in page.items] == ["c4"]
    page = await store.list_channels(project.id, offset=0, limit=10, sort_by="id", descending=True)
    assert [c.id for c in page.items] == ["c4", "c3", "c2", "c1", "c0"]


async def test_state_set_and_patch(store: Store, project: Project) -> None:
    await store.create_channel(channel(project, "game", state={"a": 1, "b": 2}))
    await store.set_channel_state(project.id, "game", raw({"x": 1}))
    new = await store.patch_channel_state(project.id, "game", {"y": {"z": 2}, "x": None}, 1000)
    assert msgspec.json.decode(new) == {"x": None, "y": {"z": 2}}
    got = await store.get_channel(project.id, "game")
    assert got is not None and msgspec.json.decode(got.state) == {"x": None, "y": {"z": 2}}
    with pytest.raises(NotFound):
        await store.set_channel_state(project.id, "nope", raw({}))
    with pytest.raises(NotFound):
        await store.patch_channel_state(project.id, "nope", {}, 1000)


async def test_patch_over_the_limit_changes_nothing(store: Store, project: Project) -> None:
    await store.create_channel(channel(project, "game", state={"a": 1}))
    with pytest.raises(PayloadTooLarge):
        await store.patch_channel_state(project.id, "game", {"big": "x" * 100}, 50)
    got = await store.get_channel(project.id, "game")
    assert got is not None and msgspec.json.decode(got.state) == {"a": 1}


async def test_tokens_round_trip_update_delete(store: Store, project: Project) -> None:
    t = await store.create_token(token(project, "leap_token_a", {"user": 1}))
    assert await store.get_token(project.id, t.id) == t
    assert await store.get_token_any_project(t.id) == t
    other = await store.create_project("other")
    assert await store.get_token(other.id, t.id) is None
    updated = await store.update_token(project.id, t.id, state=raw({"user": 2}))
    assert msgspec.json.decode(updated.state) == {"user": 2} and updated.expires_at is None
    updated = await store.update_token(project.id, t.id, expires_at="2030-01-01T00:00:00.000Z")
    assert updated.expires_at == "2030-01-01T00:00:00.000Z"
    assert msgspec.json.decode(updated.state) == {"user": 2}
    assert [x.id for x in await store.list_tokens(project.id)] == [t.id]
    assert await store.list_tokens(other.id) == []
    with pytest.raises(NotFound):
        await store.update_token(other.id, t.id, state=raw({}))
    await store.delete_token(project.id, t.id)
    assert await store.get_token(project.id, t.id) is None
    with pytest.raises(NotFound):
        await store.delete_token(project.id, t.id)


async def test_subscriptions_both_ways(store: Store, project: Project) -> None:
    await store.create_channel(channel(project, "a"))
    await store.create_channel(channel(project, "b"))
    await store.create_token(token(project, "leap_token_1"))
    await store.create_token(token(project, "leap_token_2"))
    assert await store.add_subscription(project.id, "a", "leap_token_1") is True
    assert await store.add_subscription(project.id, "a", "leap_token_1") is False
    await store.add_subscription(project.id, "b", "leap_token_1")
    await store.add_subscription(project.id, "a", "leap_token_2")
    assert await store.is_subscribed(project.id, "a", "leap_token_1")
    assert [c.id for c in await store.token_channels(project.id, "leap_token_1")] == ["a", "b"]
    assert [t.id for t in await store.channel_tokens(project.id, "a")] == [
        "leap_token_1",
        "leap_token_2",
    ]
    assert await store.remove_subscription(project.id, "a", "leap_token_1") is True
    assert await store.remove_subscription(project.id, "a", "leap_token_1") is False
    assert not await store.is_subscribed(project.id, "a", "leap_token_1")


async def test_subscriptions_keep_the_order_they_were_made_in(
    store: Store, project: Project
) -> None:
    # Many in the same millisecond, named against alphabetical order: INIT lists a
    # token's channels in the order it subscribed.
    names = [f"ch-{i:02d}" for i in reversed(range(30))]
    await store.create_token(token(project, "leap_token_1"))
    for name in names:
        await store.create_channel(channel(project, name))
        await store.create_token(token(project, f"leap_token_{name}"))
    for name in names:
        await store.add_subscription(project.id, name, "leap_token_1")
        await store.add_subscription(project.id, names[0], f"leap_token_{name}")
    assert [c.id for c in await store.token_channels(project.id, "leap_token_1")] == names
    holders = [t.id for t in await store.channel_tokens(project.id, names[0])]
    assert holders == ["leap_token_1"] + [f"leap_token_{n}" for n in names]


async def test_subscription_needs_channel_and_token_of_the_project(
    store: Store, project: Project
) -> None:
    other = await store.create_project("other")
    await store.create_channel(channel(project, "a"))
    await store.create_token(token(other, "leap_token_theirs"))
    with pytest.raises(NotFound):
        await store.add_subscription(project.id, "missing", "leap_token_theirs")
    with pytest.raises(NotFound):
        await store.add_subscription(project.id, "a", "leap_token_theirs")
    assert await store.channel_tokens(project.id, "a") == []


async def test_deleting_a_channel_drops_its_subscriptions(store: Store, project: Project) -> None:
    await store.create_channel(channel(project, "a"))
    await store.create_token(token(project, "leap_token_1"))
    await store.add_subscription(project.id, "a", "leap_token_1")
    assert await store.delete_channel(project.id, "a") == ["leap_token_1"]
    assert await store.token_channels(project.id, "leap_token_1") == []
    with pytest.raises(NotFound):
        await store.delete_channel(project.id, "a")
    # A new channel with the same ID starts with no subscribers.
    await store.create_channel(channel(project, "a"))
    assert await store.channel_tokens(project.id, "a") == []


async def test_deleting_a_token_drops_its_subscriptions(store: Store, project: Project) -> None:
    await store.create_channel(channel(project, "a"))
    await store.create_token(token(project, "leap_token_1"))
    await store.add_subscription(project.id, "a", "leap_token_1")
    await store.delete_token(project.id, "leap_token_1")
    assert await store.channel_tokens(project.id, "a") == []


async def test_ping(store: Store) -> None:
    await store.ping()
