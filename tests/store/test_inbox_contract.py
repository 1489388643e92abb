"""The token inbox part of the Store contract, on both stores (docs/inbox.md)."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from switchboard.server.history import INBOX, HistoryMessage, InboxSetting
from switchboard.server.models import Project, Token
from switchboard.server.store import Store

pytestmark = pytest.mark.timeout(30)


async def token(store: Store, project: Project, token_id: str = "leap_token_a") -> str:
    made = Token(project.id, token_id, msgspec.Raw(b"{}"), "2026-01-01T00:00:00.000Z")
    await store.create_token(made)
    return token_id


async def inbox_on(store: Store, project: Project, size: int, ttl_s: int, epoch: str) -> None:
    setting = InboxSetting(size, ttl_s, epoch)
    await store.set_project_setting(project.id, INBOX, msgspec.Raw(msgspec.json.encode(setting)))


def data(n: int) -> msgspec.Raw:
    return msgspec.Raw(msgspec.json.encode({"n": n}))


async def test_inboxes_are_off_without_the_setting(store: Store, project: Project) -> None:
    t = await token(store, project)
    assert await store.append_inbox(project.id, t, "e", data(1)) is None
    assert await store.read_inbox(project.id, t, 0, 10) is None


async def test_offsets_count_up_per_token_in_the_projects_epoch(
    store: Store, project: Project
) -> None:
    a = await token(store, project, "leap_token_a")
    b = await token(store, project, "leap_token_b")
    await inbox_on(store, project, 10, 60, "e0000001")
    empty = await store.read_inbox(project.id, a, 0, 10)
    assert empty is not None
    assert (empty.messages, empty.epoch, empty.top, empty.first) == ([], "e0000001", 0, 1)
    positions = [await store.append_inbox(project.id, a, "e", data(n)) for n in range(3)]
    assert [(p.offset, p.epoch) for p in positions if p] == [(i, "e0000001") for i in (1, 2, 3)]
    other = await store.append_inbox(project.id, b, "e", data(9))
    assert other is not None and other.offset == 1
    page = await store.read_inbox(project.id, a, 1, 10)
    assert page is not None
    assert (page.epoch, page.top, page.first) == ("e0000001", 3, 1)
    assert [(m.offset, m.event, bytes(m.data)) for m in page.messages] == [
        (2, "e", b'{"n":1}'),
        (3, "e", b'{"n":2}'),
    ]
    assert all(m.created_ms > 1_700_000_000_000 for m in page.messages)
    limited = await store.read_inbox(project.id, a, 0, 2)
    assert limited is not None and [m.offset for m in limited.messages] == [1, 2]


async def test_a_new_epoch_starts_again_at_one(store: Store, project: Project) -> None:
    t = await token(store, project)
    await inbox_on(store, project, 10, 60, "e0000001")
    for n in range(3):
        await store.append_inbox(project.id, t, "e", data(n))
    await inbox_on(store, project, 10, 60, "e0000002")
    page = await store.read_inbox(project.id, t, 0, 10)
    assert page is not None and (page.messages, page.epoch, page.top) == ([], "e0000002", 0)
    position = await store.append_inbox(project.id, t, "e", data(7))
    assert position is not None and (position.offset, position.epoch) == (1, "e0000002")
    page = await store.read_inbox(project.id, t, 0, 10)
    assert page is not None and [bytes(m.data) for m in page.messages] == [b'{"n":7}']


async def test_size_and_age_bound_what_is_kept(store: Store, project: Project) -> None:
    t = await token(store, project)
    await inbox_on(store, project, 3, 60, "e0000001")
    for n in range(7):
        await store.append_inbox(project.id, t, "e", data(n))
    page = await store.read_inbox(project.id, t, 0, 10)
    assert page is not None
    assert (page.top, page.first) == (7, 5)
    assert [m.offset for m in page.messages] == [5, 6, 7]
    await inbox_on(store, project, 3, 1, "e0000001")  # same epoch, a 1 s age bound
    await asyncio.sleep(1.1)  # the bound under test is a wall-clock age
    page = await store.read_inbox(project.id, t, 0, 10)
    assert page is not None and (page.messages, page.top, page.first) == ([], 7, 8)
    position = await store.append_inbox(project.id, t, "e", data(8))
    assert position is not None and position.offset == 8
    page = await store.read_inbox(project.id, t, 0, 10)
    assert page is not None and [m.offset for m in page.messages] == [8]


async def test_put_inbox_replaces_it_whole(store: Store, project: Project) -> None:
    t = await token(store, project)
    await inbox_on(store, project, 10, 60, "e0000001")
    await store.append_inbox(project.id, t, "e", data(0))
    now_ms = int(time.time() * 1000)
    kept = [HistoryMessage(o, "m", data(o), now_ms) for o in (4, 5)]
    await store.put_inbox(project.id, t, "e0000001", 5, kept)
    page = await store.read_inbox(project.id, t, 0, 10)
    assert page is not None
    assert (page.top, page.first, [m.offset for m in page.messages]) == (5, 4, [4, 5])
    position = await store.append_inbox(project.id, t, "e", data(6))
    assert position is not None and position.offset == 6


async def test_a_deleted_tokens_inbox_goes_with_it(store: Store, project: Project) -> None:
    t = await token(store, project)
    await inbox_on(store, project, 10, 60, "e0000001")
    await store.append_inbox(project.id, t, "e", data(0))
    await store.delete_token(project.id, t)
    await store.drop_inbox(project.id, t)
    await token(store, project, t)  # the same ID again (never done by the server)
    page = await store.read_inbox(project.id, t, 0, 10)
    assert page is not None and (page.messages, page.top) == ([], 0)
