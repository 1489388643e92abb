"""A tiny reverse proxy: one origin per cluster node, in front of the app and Switchboard.

Each port the proxy listens on serves the whole app: ``/ws`` goes to that port's
Switchboard node, everything else (the page, ``/api``) to the example's backend. A
browser that opens the app on port N therefore talks to node N, and the backend hands
out the relative socket URL ``/ws`` (``backend.py --socket-url /ws``), as it would behind
any real load balancer that serves the app and Switchboard on one origin.

WebSocket close codes are passed through both ways: Hop's client decides from the code
whether to reconnect (4001: never), so a proxy that turned them into 1006 would hide
exactly what the tests look at.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

# Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus what aiohttp sets.
HOP_HEADERS = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "host",
    "content-length",
}
# Close codes that say no close frame came; they must not be sent in one (RFC 6455 §7.4.1).
# The browser gets 1001 instead, as from a node going away, and reconnects.
UNSENDABLE = {1005, 1006, 1015}


@dataclass
class Route:
    """One listening port: where its sockets go, and how many are open through it now."""

    node_ws_url: str
    app_url: str
    session: aiohttp.ClientSession
    live: int = 0
    opened: int = 0
    close_codes: list[int] = field(default_factory=list)
    sockets: set[web.WebSocketResponse] = field(default_factory=set)


UPSTREAM = web.AppKey("upstream", Route)


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    async for message in source:
        if message.type == WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await sink.send_bytes(message.data)


async def _socket(request: web.Request, route: Route) -> web.WebSocketResponse:
    browser = web.WebSocketResponse(autoping=True)
    await browser.prepare(request)
    route.opened += 1
    route.live += 1
    route.sockets.add(browser)
    try:
        async with route.session.ws_connect(
            route.node_ws_url + ("?" + request.query_string if request.query_string else ""),
            autoping=True,
        ) as node:
            to_node = asyncio.ensure_future(_pump(browser, node))
            to_browser = asyncio.ensure_future(_pump(node, browser))
            await asyncio.wait({to_node, to_browser}, return_when=asyncio.FIRST_COMPLETED)
            for task in (to_node, to_browser):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await task
            if to_browser.done() and node.close_code is not None:
                # The node closed: give the browser the very same code.
                code = node.close_code
                route.close_codes.append(code)
                await browser.close(code=WSCloseCode.GOING_AWAY if code in UNSENDABLE else code)
            else:
                await node.close(code=browser.close_code or WSCloseCode.GOING_AWAY)
    except aiohttp.ClientError:
        await browser.close(code=WSCloseCode.TRY_AGAIN_LATER)
    finally:
        route.live -= 1
        route.sockets.discard(browser)
    return browser


async def _handle(request: web.Request) -> web.StreamResponse:
    route = request.app[UPSTREAM]
    if request.path == "/ws" and request.headers.get("Upgrade", "").lower() == "websocket":
        return await _socket(request, route)
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
    async with route.session.request(
        request.method,
        route.app_url + request.path_qs,
        headers=headers,
        data=await request.read(),
        allow_redirects=False,
    ) as answer:
        body = await answer.read()
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
        return web.Response(status=answer.status, headers=kept, body=body)


class Proxy:
    """``Proxy(app_url, [node_ws_url, …])``: one port per node; ``urls`` in the same order."""

    def __init__(self, app_url: str, node_ws_urls: list[str]) -> None:
        self.app_url = app_url
        self.node_ws_urls = node_ws_urls
        self.routes: list[Route] = []
        self.urls: list[str] = []
        self._runners: list[web.AppRunner] = []
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Proxy:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        for ws_url in self.node_ws_urls:
            route = Route(ws_url, self.app_url, self._session)
            app = web.Application()
            app[UPSTREAM] = route
            app.router.add_route("*", "/{tail:.*}", _handle)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            self.routes.append(route)
            self.urls.append(f"http://127.0.0.1:{port}/")
            self._runners.append(runner)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Close the browsers' sockets first: a runner waits for its open handlers.
        for route in self.routes:
            for socket in list(route.sockets):
                await socket.close(code=WSCloseCode.GOING_AWAY)
        for runner in self._runners:
            await runner.cleanup()
        if self._session is not None:
            await self._session.close()
