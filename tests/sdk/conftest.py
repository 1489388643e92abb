"""Fixtures for the SDK tests: SDK clients on the in-process server, and helpers to
await what happens instead of sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from switchboard import AsyncSwitchboard, Switchboard
from switchboard._rest import ChannelsAPI, TokensAPI
from switchboard.client import Client, ConnectionState
from switchboard.server.node import Node
from tests.conftest import Server, make_settings, start_node

FAST = (0.02, 0.2)
"""Reconnect delays for tests: the real default starts at one second."""
WAIT = 5.0


class Threaded:
    """The sync SDK with each call run in a worker thread, so that the in-process
    server (in this test's event loop) keeps serving while a sync call blocks."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if isinstance(attr, ChannelsAPI | TokensAPI):
            return Threaded(attr)
        if callable(attr):

            async def call(*args: Any, **kwargs: Any) -> Any:
                return await asyncio.to_thread(attr, *args, **kwargs)

            return call
        return attr


@pytest.fixture
async def sb(node: Server) -> AsyncIterator[AsyncSwitchboard]:
    async with AsyncSwitchboard(node.project_token, node.base_url) as client:
        yield client


@pytest.fixture(params=["async", "sync"])
async def api(request: pytest.FixtureRequest, node: Server) -> AsyncIterator[Any]:
    """The async SDK, or the sync one behind :class:`Threaded`: the same awaitable surface."""
    if request.param == "async":
        async with AsyncSwitchboard(node.project_token, node.base_url) as client:
            yield client
    else:
        sync = Switchboard(node.project_token, node.base_url)
        try:
            yield Threaded(sync)
        finally:
            sync.close()


class Recorder:
    """A listener that remembers its calls; ``await rec.wait(n)`` until it has ``n``."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self._more = asyncio.Event()

    def __call__(self, value: Any) -> None:
        self.calls.append(value)
        self._more.set()

    async def wait(self, count: int = 1) -> list[Any]:
        async with asyncio.timeout(WAIT):
            while len(self.calls) < count:
                self._more.clear()
                await self._more.wait()
        return self.calls


async def reach(states: AsyncIterator[ConnectionState], *path: str) -> None:
    """Read ``client.connection_states()`` until the states in ``path`` were seen in order."""
    wanted = list(path)
    async with asyncio.timeout(WAIT):
        async for state in states:
            if state == wanted[0]:
                wanted.pop(0)
                if not wanted:
                    return
    raise AssertionError(f"states ended before {wanted}")


async def eventually(check: Callable[[], Any], *, stream: AsyncIterator[Any]) -> None:
    """Read ``stream`` (e.g. ``client.events()``) until ``check()`` is true."""
    async with asyncio.timeout(WAIT):
        if check():
            return
        async for _ in stream:
            if check():
                return
    raise AssertionError("stream ended before the condition held")


def client_for(node: Server, token: str | None = None, **kwargs: Any) -> Client:
    kwargs.setdefault("url", node.ws_url)
    kwargs.setdefault("reconnect_delay", FAST)
    return Client(node.project_id, token, **kwargs)


class Restartable:
    """An in-process server that a test stops and starts again on the same port and data."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.running = True

    async def stop(self) -> None:
        assert self.server.node is not None
        await self.server.node.stop()
        self.running = False

    async def start(self) -> None:
        assert self.server.data_dir is not None and self.server.node is not None
        node = Node(make_settings(self.server.data_dir, port=self.server.node.port))
        await node.start()
        self.server = replace(self.server, node=node)
        self.running = True


@pytest.fixture
async def restartable(tmp_path: Path) -> AsyncIterator[Restartable]:
    server = Restartable(await start_node(tmp_path / "restartable"))
    try:
        yield server
    finally:
        if server.running:
            await server.stop()
