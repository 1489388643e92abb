"""A real HTTP server that receives webhooks for the tests, and records what came."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from switchboard.webhooks import SIGNATURE_HEADER, verify


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return msgspec.json.decode(self.body)

    @property
    def type(self) -> str:
        return str(self.json["type"])

    def signed_by(self, secret: str) -> bool:
        return verify(secret, self.body, self.headers.get(SIGNATURE_HEADER))


@dataclass
class Receiver:
    """Answers each request with what ``answer`` says (a status, 200 by default)."""

    base_url: str = ""
    received: list[Received] = field(default_factory=list)
    answer: Callable[[Received], Any] = lambda r: 200
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url(self) -> str:
        return self.base_url + "/hooks"

    @property
    def authorize_url(self) -> str:
        return self.base_url + "/authorize"

    async def _handle(self, request: web.Request) -> web.Response:
        got = Received(request.path, dict(request.headers), await request.read())
        async with self._arrived:
            self.received.append(got)
            self._arrived.notify_all()
        status = self.answer(got)
        if asyncio.iscoroutine(status):
            status = await status
        return web.Response(status=status, text="ok")

    def of_type(self, *types: str) -> list[Received]:
        return [r for r in self.received if r.path == "/hooks" and r.type in types]

    async def wait_for(
        self, check: Callable[[list[Received]], bool], timeout: float = 10.0
    ) -> list[Received]:
        async with asyncio.timeout(timeout):
            async with self._arrived:
                await self._arrived.wait_for(lambda: check(self.received))
        return self.received

    async def wait_types(
        self, *types: str, count: int = 1, timeout: float = 10.0
    ) -> list[Received]:
        await self.wait_for(lambda _: len(self.of_type(*types)) >= count, timeout)
        return self.of_type(*types)


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    got = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", got._handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    got.base_url = f"http://127.0.0.1:{port}"
    try:
        yield got
    finally:
        await runner.cleanup()
