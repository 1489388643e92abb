"""The batch part of the Store contract, on both stores: many appends at once, token
lookups, idempotency keys."""

from __future__ import annotations

import asyncio
import sqlite3

import msgspec
import pytest

from switchboard.exceptions import NotFound
from switchboard.server.history import HistoryPolicy, StreamPosition
from switchboard.server.models import Project, Token
from switchboard.server.store import IN_FLIGHT, SqliteStore, Store
from tests.store.test_history_contract import data, make

pytestmark = pytest.mark.timeout(30)


async def test_appends_in_order_with_one_result_each(store: Store, project: Project) -> None:
    await make(store, project, "kept")
    await make(store, project, "plain")
    epoch = await store.set_history_policy(project.id, "kept", HistoryPolicy(3, 60))
    assert epoch is not None
    shared = data(0)
    messages = [
        ("kept", "e", shared),
        ("plain", "e", shared),
        ("missing", "e", shared),
        *(("kept", "f", data(i)) for i in range(1, 4)),
    ]
    results = await store.append_messages(project.id, messages)
    assert results[:2] == [StreamPosition(1, epoch), None]
    assert isinstance(results[2], NotFound)
    assert results[3:] == [StreamPosition(n, epoch) for n in (2, 3, 4)]
    page = await store.read_history(project.id, "kept", 0, 10)
    assert page is not None
    assert [(m.offset, m.event, msgspec.json.decode(m.data)) for m in page.messages] == [
        (2, "f", {"n": 1}),
        (3, "f", {"n": 2}),
        (4, "f", {"n": 3}),
    ]
    assert await store.append_messages(project.id, []) == []


async def test_a_thousand_appends_across_chunks(store: Store, project: Project) -> None:
    channels = [f"c{i}" for i in range(300)]
    for channel in channels:
        await make(store, project, channel)
    await store.set_history_policy(project.id, "c299", HistoryPolicy(10, 60))
    messages = [(c, "e", data(n)) for n in range(3) for c in channels]
    results = await store.append_messages(project.id, messages)
    assert [r.offset for r in results if isinstance(r, StreamPosition)] == [1, 2, 3]
    assert results.count(None) == 897


async def test_project_token_ids(store: Store, project: Project) -> None:
    other = await store.create_project("other")
    mine = Token(project.id, "leap_token_mine", msgspec.Raw(b"{}"), "2026-01-01T00:00:00.000Z")
    theirs = Token(other.id, "leap_token_theirs", msgspec.Raw(b"{}"), "2026-01-01T00:00:00.000Z")
    await store.create_token(mine)
    await store.create_token(theirs)
    wanted = [mine.id, theirs.id, "leap_token_none"]
    assert await store.project_token_ids(project.id, wanted) == {mine.id}
    # IDs no Switchboard makes are answered too (Redis sends the IDs one per line).
    odd = ["", "leap\ntoken", mine.id, "é", mine.id + "\n"]
    assert await store.project_token_ids(project.id, odd) == {mine.id}
    assert await store.project_token_ids(project.id, ["", mine.id, ""]) == {mine.id}
    many = [f"leap_token_{i}" for i in range(999)] + [mine.id]
    assert await store.project_token_ids(project.id, many) == {mine.id}
    assert await store.project_token_ids(project.id, []) == set()


async def test_a_token_deleted_or_created_is_seen_by_the_next_lookup(
    store: Store, project: Project
) -> None:
    """SQLite keeps the tokens found while nobody commits (store/sqlite_token_reads.py):
    a deletion through the store, or by another connection to the file (another
    worker, the command line), and a creation are seen by the very next lookup."""
    tokens = [
        Token(project.id, f"leap_token_{i}", msgspec.Raw(b"{}"), "2026-01-01T00:00:00.000Z")
        for i in range(4)
    ]
    for token in tokens[:3]:
        await store.create_token(token)
    ids = [t.id for t in tokens]
    assert await store.project_token_ids(project.id, ids) == set(ids[:3])
    assert await store.project_token_ids(project.id, ids) == set(ids[:3])  # kept
    await store.delete_token(project.id, ids[0])
    assert await store.project_token_ids(project.id, ids) == set(ids[1:3])
    await store.create_token(tokens[3])
    assert await store.project_token_ids(project.id, ids) == set(ids[1:])
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as other:  # another process's connection
            other.execute("PRAGMA foreign_keys = ON")
            other.execute("DELETE FROM tokens WHERE id = ?", (ids[1],))
        assert await store.project_token_ids(project.id, ids) == {ids[2], ids[3]}


async def test_idempotency_keys_claim_answer_free_and_expire(
    store: Store, project: Project
) -> None:
    assert await store.claim_idempotency_keys(project.id, ["a", "b"], 30) == [None, None]
    assert await store.claim_idempotency_keys(project.id, ["a", "c"], 30) == [IN_FLIGHT, None]
    await store.finish_idempotency_keys(project.id, {"a": b'{"ok":1}', "b": None}, 0.3)
    assert await store.claim_idempotency_keys(project.id, ["a", "b"], 30) == [b'{"ok":1}', None]
    # Another project's keys are its own.
    other = await store.create_project("other")
    assert await store.claim_idempotency_keys(other.id, ["a"], 30) == [None]
    await asyncio.sleep(0.5)
    assert await store.claim_idempotency_keys(project.id, ["a"], 30) == [None]


async def test_concurrent_claims_give_a_key_to_one(store: Store, project: Project) -> None:
    answers = await asyncio.gather(
        *(store.claim_idempotency_keys(project.id, ["k"], 30) for _ in range(20))
    )
    assert sorted(a[0] is None for a in answers) == [False] * 19 + [True]


async def test_inbox_appends_in_one_call(store: Store, project: Project) -> None:
    from tests.store.test_inbox_contract import inbox_on, token

    a = await token(store, project, "leap_token_a")
    b = await token(store, project, "leap_token_b")
    assert await store.append_inboxes(project.id, [(a, "e", data(0))]) == [None]
    await inbox_on(store, project, 10, 60, "ep1")
    messages = [(a, "e", data(1)), (b, "e", data(2)), (a, "e", data(3))]
    assert await store.append_inboxes(project.id, messages) == [
        StreamPosition(1, "ep1"),
        StreamPosition(1, "ep1"),
        StreamPosition(2, "ep1"),
    ]
    assert await store.append_inboxes(project.id, []) == []
