"""The history part of the Store contract, on both stores."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from switchboard.exceptions import NotFound, StaleAccess
from switchboard.server.history import HistoryMessage, HistoryPolicy, StreamPosition
from switchboard.server.models import Channel, ChannelType, Project
from switchboard.server.store import SqliteStore, Store

pytestmark = pytest.mark.timeout(30)


async def make(store: Store, project: Project, channel_id: str = "c") -> None:
    await store.create_channel(
        Channel(
            project.id,
            channel_id,
            ChannelType.PUBLIC,
            msgspec.Raw(b"{}"),
            "2026-01-01T00:00:00.000Z",
        )
    )


def data(n: int) -> msgspec.Raw:
    return msgspec.Raw(msgspec.json.encode({"n": n}))


async def test_history_is_off_by_default(store: Store, project: Project) -> None:
    await make(store, project)
    assert await store.history_policy(project.id, "c") is None
    assert await store.append_message(project.id, "c", "e", data(1)) is None
    assert await store.read_history(project.id, "c", 0, 10) is None


async def test_unknown_channel_is_not_found(store: Store, project: Project) -> None:
    with pytest.raises(NotFound):
        await store.append_message(project.id, "nope", "e", data(1))
    with pytest.raises(NotFound):
        await store.read_history(project.id, "nope", 0, 10)
    with pytest.raises(NotFound):
        await store.set_history_policy(project.id, "nope", HistoryPolicy(10, 60))
    with pytest.raises(NotFound):
        await store.history_policy(project.id, "nope")


async def test_offsets_count_up_within_an_epoch(store: Store, project: Project) -> None:
    await make(store, project)
    epoch = await store.set_history_policy(project.id, "c", HistoryPolicy(10, 60))
    assert epoch
    assert await store.history_policy(project.id, "c") == HistoryPolicy(10, 60)
    positions = [await store.append_message(project.id, "c", "e", data(n)) for n in range(3)]
    assert [(p.offset, p.epoch) for p in positions if p] == [(1, epoch), (2, epoch), (3, epoch)]
    page = await store.read_history(project.id, "c", 0, 10)
    assert page is not None
    assert (page.epoch, page.top, page.first) == (epoch, 3, 1)
    assert [(m.offset, m.event, bytes(m.data)) for m in page.messages] == [
        (1, "e", b'{"n":0}'),
        (2, "e", b'{"n":1}'),
        (3, "e", b'{"n":2}'),
    ]
    assert all(m.created_ms > 1_700_000_000_000 for m in page.messages)


async def test_since_and_limit_page_through(store: Store, project: Project) -> None:
    await make(store, project)
    await store.set_history_policy(project.id, "c", HistoryPolicy(100, 60))
    for n in range(7):
        await store.append_message(project.id, "c", "e", data(n))
    page = await store.read_history(project.id, "c", 2, 3)
    assert page is not None
    assert [m.offset for m in page.messages] == [3, 4, 5]
    page = await store.read_history(project.id, "c", 5, 3)
    assert page is not None
    assert [m.offset for m in page.messages] == [6, 7]
    page = await store.read_history(project.id, "c", 7, 3)
    assert page is not None and page.messages == [] and page.top == 7


async def test_size_bounds_what_is_kept(store: Store, project: Project) -> None:
    await make(store, project)
    await store.set_history_policy(project.id, "c", HistoryPolicy(5, 60))
    for n in range(250):
        await store.append_message(project.id, "c", "e", data(n))
    page = await store.read_history(project.id, "c", 0, 1000)
    assert page is not None
    assert [m.offset for m in page.messages] == [246, 247, 248, 249, 250]
    assert (page.top, page.first) == (250, 246)


async def test_age_bounds_what_is_kept(store: Store, project: Project) -> None:
    await make(store, project)
    await store.set_history_policy(project.id, "c", HistoryPolicy(100, 1))
    await store.append_message(project.id, "c", "e", data(1))
    await asyncio.sleep(1.1)  # the bound under test is a wall-clock age
    page = await store.read_history(project.id, "c", 0, 10)
    assert page is not None
    assert (page.messages, page.top, page.first) == ([], 1, 2)
    await store.append_message(project.id, "c", "e", data(2))
    page = await store.read_history(project.id, "c", 0, 10)
    assert page is not None
    assert [m.offset for m in page.messages] == [2]
    assert page.first == 2


async def test_changing_bounds_keeps_the_epoch_off_and_on_does_not(
    store: Store, project: Project
) -> None:
    await make(store, project)
    epoch = await store.set_history_policy(project.id, "c", HistoryPolicy(10, 60))
    await store.append_message(project.id, "c", "e", data(1))
    assert await store.set_history_policy(project.id, "c", HistoryPolicy(20, 60)) == epoch
    page = await store.read_history(project.id, "c", 0, 10)
    assert page is not None and page.top == 1
    assert await store.set_history_policy(project.id, "c", None) is None
    assert await store.read_history(project.id, "c", 0, 10) is None
    again = await store.set_history_policy(project.id, "c", HistoryPolicy(10, 60))
    assert again != epoch
    page = await store.read_history(project.id, "c", 0, 10)
    assert page is not None and (page.messages, page.top, page.epoch) == ([], 0, again)


async def test_deleting_the_channel_deletes_its_history(store: Store, project: Project) -> None:
    await make(store, project)
    epoch = await store.set_history_policy(project.id, "c", HistoryPolicy(10, 60))
    await store.append_message(project.id, "c", "e", data(1))
    await store.delete_channel(project.id, "c")
    await make(store, project)
    assert await store.read_history(project.id, "c", 0, 10) is None
    again = await store.set_history_policy(project.id, "c", HistoryPolicy(10, 60))
    assert again != epoch
    position = await store.append_message(project.id, "c", "e", data(2))
    assert position is not None and position.offset == 1


async def test_concurrent_appends_get_distinct_ordered_offsets(
    store: Store, project: Project
) -> None:
    await make(store, project)
    await store.set_history_policy(project.id, "c", HistoryPolicy(1000, 60))
    positions = await asyncio.gather(
        *(store.append_message(project.id, "c", "e", data(n)) for n in range(50))
    )
    assert sorted(p.offset for p in positions if p) == list(range(1, 51))
    page = await store.read_history(project.id, "c", 0, 1000)
    assert page is not None
    by_offset = {m.offset: bytes(m.data) for m in page.messages}
    # Each append's offset names the message it stored.
    for n, position in enumerate(positions):
        assert position is not None and by_offset[position.offset] == bytes(data(n))


async def test_policies_of_many_channels_in_one_read(store: Store, project: Project) -> None:
    for channel_id in ("a", "b", "c"):
        await make(store, project, channel_id)
    await store.set_history_policy(project.id, "a", HistoryPolicy(10, 60))
    await store.set_history_policy(project.id, "c", HistoryPolicy(3, 5))
    found = await store.history_policies(project.id, ["a", "b", "c", "nope"])
    assert found == {"a": HistoryPolicy(10, 60), "c": HistoryPolicy(3, 5)}
    assert await store.history_policies(project.id, []) == {}
    other = await store.create_project("other")
    assert await store.history_policies(other.id, ["a", "c"]) == {}
    many = [f"m{n}" for n in range(1200)]  # past one statement's chunk
    for channel_id in many[::100]:
        await make(store, project, channel_id)
        await store.set_history_policy(project.id, channel_id, HistoryPolicy(1, 1))
    assert set(await store.history_policies(project.id, many)) == set(many[::100])


def kept(offset: int, n: int, created_ms: int) -> HistoryMessage:
    return HistoryMessage(offset, "e", data(n), created_ms)


async def test_put_history_keeps_offsets_epoch_and_dates(store: Store, project: Project) -> None:
    await make(store, project)
    now_ms = int(time.time() * 1000)
    messages = [kept(5, 5, now_ms - 3000), kept(6, 6, now_ms - 2000), kept(7, 7, now_ms - 1000)]
    await store.put_history(project.id, "c", HistoryPolicy(10, 60), "feedbeef", 7, messages)
    assert await store.history_policy(project.id, "c") == HistoryPolicy(10, 60)
    page = await store.read_history(project.id, "c", 0, 10)
    assert page is not None
    assert (page.epoch, page.top, page.first) == ("feedbeef", 7, 5)
    assert page.messages == messages
    # Publishing goes on from there, in the same epoch.
    position = await store.append_message(project.id, "c", "e", data(8))
    assert position is not None and (position.offset, position.epoch) == (8, "feedbeef")


async def test_put_history_replaces_and_applies_the_bounds(store: Store, project: Project) -> None:
    await make(store, project)
    await store.set_history_policy(project.id, "c", HistoryPolicy(10, 60))
    for n in range(3):
        await store.append_message(project.id, "c", "e", data(n))
    now_ms = int(time.time() * 1000)
    messages = [
        kept(1, 1, now_ms - 120_000),  # older than ttl_s: not served
        kept(2, 2, now_ms - 1000),  # below the size bound (top 4, size 2): not kept
        kept(3, 3, now_ms - 1000),
        kept(4, 4, now_ms - 500),
    ]
    await store.put_history(project.id, "c", HistoryPolicy(2, 60), "0badcafe", 4, messages)
    page = await store.read_history(project.id, "c", 0, 10)
    assert page is not None
    assert (page.epoch, page.top, page.first) == ("0badcafe", 4, 3)
    assert [m.offset for m in page.messages] == [3, 4]
    # No messages at all: an empty history at that top.
    await store.put_history(project.id, "c", HistoryPolicy(5, 60), "00000001", 9, [])
    page = await store.read_history(project.id, "c", 0, 10)
    assert page is not None and (page.messages, page.top, page.first) == ([], 9, 10)
    with pytest.raises(NotFound):
        await store.put_history(project.id, "nope", HistoryPolicy(5, 60), "e", 0, [])


# Group commit (SQLite only): appends that queue up share one transaction.


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    impl = SqliteStore(tmp_path / "data")
    await impl.open()
    try:
        yield impl
    finally:
        await impl.close()


async def test_group_commit_keeps_the_order_appends_were_made(sqlite: SqliteStore) -> None:
    project = await sqlite.create_project("p")
    for channel_id in ("a", "b"):
        await make(sqlite, project, channel_id)
        await sqlite.set_history_policy(project.id, channel_id, HistoryPolicy(1000, 60))
    calls = [("a" if n % 3 else "b", n) for n in range(300)]
    positions = await asyncio.gather(
        *(sqlite.append_message(project.id, c, "e", data(n)) for c, n in calls)
    )
    for channel_id in ("a", "b"):
        made = [n for c, n in calls if c == channel_id]
        offsets = [p.offset for (c, _), p in zip(calls, positions, strict=True) if c == channel_id]
        # Offsets in the order the appends were made, with no gap...
        assert offsets == list(range(1, len(made) + 1))
        page = await sqlite.read_history(project.id, channel_id, 0, 1000)
        assert page is not None
        # ... and each names the message it stored.
        assert [bytes(m.data) for m in page.messages] == [bytes(data(n)) for n in made]
    batches = sqlite.__dict__["_append_batches"]
    assert batches.appends == 300
    assert batches.batches < 300  # they did share transactions


async def test_group_commit_fails_only_the_append_whose_channel_went(sqlite: SqliteStore) -> None:
    project = await sqlite.create_project("p")
    for channel_id in ("a", "b"):
        await make(sqlite, project, channel_id)
        await sqlite.set_history_policy(project.id, channel_id, HistoryPolicy(10, 60))
    await sqlite.append_message(project.id, "a", "e", data(0))
    batches = sqlite.__dict__["_append_batches"]
    release = threading.Event()

    def hold_then_delete_b(db: sqlite3.Connection) -> None:
        assert release.wait(10)
        db.execute("DELETE FROM channels WHERE project_id = ? AND id = 'b'", (project.id,))

    # The writer thread is busy while three appends queue behind it (their channels
    # exist when they are made); then b goes, before their batch runs.
    holder = asyncio.ensure_future(sqlite._write(hold_then_delete_b))
    appends = [
        asyncio.ensure_future(sqlite.append_message(project.id, c, "e", data(n)))
        for n, c in enumerate("aba", start=1)
    ]
    while len(batches._queue) < 3:
        await asyncio.sleep(0)
    release.set()
    await holder
    results = await asyncio.gather(*appends, return_exceptions=True)
    assert isinstance(results[1], NotFound)
    assert [(r.offset if isinstance(r, StreamPosition) else r) for r in results[::2]] == [2, 3]
    assert batches.batches == 2  # the first append's, then the three together
    page = await sqlite.read_history(project.id, "a", 0, 10)
    assert page is not None and [m.offset for m in page.messages] == [1, 2, 3]


async def test_an_append_checks_a_cached_generation_first(store: Store, project: Project) -> None:
    await make(store, project)
    await make(store, project, "h")
    await store.set_history_policy(project.id, "h", HistoryPolicy(10, 60))
    await store.add_project_token(project.id, "hash1", "ptk_ab…")
    info = await store.add_project_token(project.id, "hash2", "ptk_cd…")
    access = await store.find_project_by_token("hash1")
    assert access is not None
    now = access.generation
    assert await store.append_message(project.id, "c", "e", data(1), generation=now) is None
    first = await store.append_message(project.id, "h", "e", data(1), generation=now)
    assert first is not None and first.offset == 1
    with pytest.raises(NotFound):
        await store.append_message(project.id, "nope", "e", data(1), generation=now)
    await store.revoke_project_token(info.id)
    for channel_id in ("c", "h", "nope"):  # stale before anything else, and nothing kept
        with pytest.raises(StaleAccess):
            await store.append_message(project.id, channel_id, "e", data(2), generation=now)
    page = await store.read_history(project.id, "h", 0, 10)
    assert page is not None and [m.offset for m in page.messages] == [1]
    fresh = await store.project_generation(project.id)
    second = await store.append_message(project.id, "h", "e", data(3), generation=fresh)
    assert second is not None and second.offset == 2
