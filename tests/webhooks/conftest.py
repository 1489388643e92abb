"""A node with fast webhook retries, a receiver, and a client with the project token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, running_node
from tests.webhooks.receiver import Receiver, receiver

FAST = {"webhook_retry_base_s": 0.05, "webhook_timeout_s": 2.0, "webhook_retries": 2}


@pytest.fixture
async def hooks() -> AsyncIterator[Receiver]:
    async with receiver() as got:
        yield got


@pytest.fixture
async def wnode(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_node(tmp_path / "data", **FAST) as server:
        yield server


@pytest.fixture
async def api(wnode: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=wnode.api, headers=wnode.headers) as client:
        yield client


async def data(response: Any) -> Any:
    r = await response
    assert r.status_code == 200, r.text
    return r.json()["data"]
