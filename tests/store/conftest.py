"""The store contract's fixtures: every test runs on SQLite, on a real Redis and on a
real Redis Cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from switchboard.server.models import Project
from switchboard.server.store import SqliteStore, Store
from switchboard.server.store.redis import RedisStore


@pytest.fixture(params=["sqlite", "redis", "redis-cluster"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An open store of each kind; the Redis one on the session's Redis, emptied."""
    impl: Store
    if request.param == "redis":
        impl = RedisStore(request.getfixturevalue("redis_url"), prefix="test:")
    elif request.param == "redis-cluster":
        impl = RedisStore(request.getfixturevalue("redis_cluster_url"), prefix="test:")
    else:
        impl = SqliteStore(tmp_path / "data")
    await impl.open()
    try:
        yield impl
    finally:
        await impl.close()


@pytest.fixture
async def project(store: Store) -> Project:
    return await store.create_project("p")
