"""The chat's backend: Hop's Tokens walkthrough as a web service, on the Switchboard SDK.

It holds the project token (the browser never sees it) and, for each user who signs in,
makes a Leap token with the user's name as its metadata, subscribes it to the private
room and hands it to the page with the project ID and the socket URL. It sends direct
messages and changes the room's topic on the users' behalf, and serves the built page
(``dist/``) so the app needs one origin.

    python examples/react-chat/backend.py --switchboard http://127.0.0.1:4000 --project-token ptk_…

Routes (JSON in and out; the user's calls carry ``Authorization: Bearer leap_token_…``):

- ``POST /api/login {name}`` → ``{name, projectId, token, socketUrl, room}``;
- ``GET /api/me`` → ``{name}``, or 401 once the token is gone (deleted, expired);
- ``POST /api/dm {to, text}`` → a ``DM`` direct message ``{from, text}`` to ``to``;
- ``POST /api/topic {topic}`` → patches the room's state; everyone gets ``STATE_UPDATE``;
- ``POST /api/kick {name}`` with the *project token* → deletes that user's token: the
  server closes the user's sockets (4001) and the page shows it was signed out.

Names are not passwords: this is an example, and anyone who types a name gets it.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from switchboard import APIError, AsyncSwitchboard, ChannelType, Conflict, NotFound, Unavailable

HERE = Path(__file__).resolve().parent
NAME_MAX = 40
TEXT_MAX = 500

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refused(Exception):
    """A request refused with ``status`` and a JSON body ``{error}`` (what src/api.js shows)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Chat:
    """The room, and who is in it: ``name -> token ID`` (in memory; lost on restart)."""

    def __init__(self, sb: AsyncSwitchboard, room: str, socket_url: str, project_token: str):
        self.sb = sb
        self.room = room
        self.socket_url = socket_url
        self.project_token = project_token
        self.project_id = ""
        self.tokens: dict[str, str] = {}
        # The member list lives in the room's state; adding or removing a name is a read,
        # then a patch: one at a time, so two sign-ins at once cannot lose one.
        self.members_lock = asyncio.Lock()

    async def open_room(self) -> None:
        """Create the private room if it is not there; forget members of an earlier run."""
        try:
            channel = await self.sb.channels.create(
                ChannelType.PRIVATE, self.room, state={"topic": "", "members": []}
            )
        except Conflict:
            channel = await self.sb.channels.get(self.room)
            await self.sb.channels.patch_state(self.room, {"members": []})
        self.project_id = channel.project_id

    async def change_members(self, add: str | None = None, remove: str | None = None) -> None:
        async with self.members_lock:
            state = await self.sb.channels.get_state(self.room)
            members = [m for m in state.get("members", []) if m not in (add, remove)]
            if add is not None:
                members.append(add)
            await self.sb.channels.patch_state(self.room, {"members": members})

    async def sign_in(self, name: str) -> str:
        """The user's token: the one they had if it still exists, else a new one."""
        known = self.tokens.get(name)
        if known is not None:
            try:
                await self.sb.channels.tokens.get(known)
                return known
            except NotFound:
                pass
        token = await self.sb.channels.tokens.create({"name": name})
        # Durable: the token keeps the room across reconnects, and INIT lists it, so the
        # page never has to subscribe (and could not: the room is private).
        await self.sb.channels.subscribe_token(self.room, token.id)
        self.tokens[name] = token.id
        await self.change_members(add=name)
        return token.id

    async def caller(self, request: web.Request) -> str:
        """The signed-in user's name, from the token's own metadata on the server."""
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not token.startswith("leap_token_"):
            raise Refused(401, "sign in first")
        try:
            found = await self.sb.channels.tokens.get(token)
        except NotFound:
            raise Refused(401, "this session was revoked") from None
        name = found.state.get("name")
        if not isinstance(name, str) or self.tokens.get(name) != token:
            raise Refused(401, "this session was revoked")
        return name

    async def kick(self, name: str) -> None:
        token = self.tokens.pop(name, None)
        if token is None:
            raise Refused(404, f"nobody called {name!r} is here")
        await self.change_members(remove=name)
        # Deleting the token is the revocation: Switchboard closes its sockets with 4001
        # and refuses it from now on; Hop's client does not retry after 4001.
        await self.sb.channels.tokens.delete(token)


async def body_field(request: web.Request, field: str, limit: int) -> str:
    try:
        body: Any = await request.json()
    except ValueError:
        raise Refused(400, "send a JSON object") from None
    value = body.get(field) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise Refused(400, f"{field}: a string of 1 to {limit} characters")
    return value.strip()


CHAT = web.AppKey("chat", Chat)
routes = web.RouteTableDef()


@routes.post("/api/login")
async def login(request: web.Request) -> web.Response:
    chat: Chat = request.app[CHAT]
    name = await body_field(request, "name", NAME_MAX)
    token = await chat.sign_in(name)
    return web.json_response(
        {
            "name": name,
            "projectId": chat.project_id,
            "token": token,
            "socketUrl": chat.socket_url,
            "room": chat.room,
        }
    )


@routes.get("/api/me")
async def me(request: web.Request) -> web.Response:
    return web.json_response({"name": await request.app[CHAT].caller(request)})


@routes.post("/api/dm")
async def direct_message(request: web.Request) -> web.Response:
    chat: Chat = request.app[CHAT]
    sender = await chat.caller(request)
    to = await body_field(request, "to", NAME_MAX)
    text = await body_field(request, "text", TEXT_MAX)
    token = chat.tokens.get(to)
    if token is None:
        raise Refused(404, f"nobody called {to!r} is here")
    await chat.sb.channels.tokens.publish_direct_message(
        token, "DM", {"from": sender, "text": text}
    )
    return web.json_response({})


@routes.post("/api/topic")
async def topic(request: web.Request) -> web.Response:
    chat: Chat = request.app[CHAT]
    await chat.caller(request)
    text = await body_field(request, "topic", 100)
    await chat.sb.channels.patch_state(chat.room, {"topic": text})
    return web.json_response({})


@routes.post("/api/kick")
async def kick(request: web.Request) -> web.Response:
    chat: Chat = request.app[CHAT]
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), chat.project_token.encode()):
        raise Refused(403, "kicking takes the project token")
    await chat.kick(await body_field(request, "name", NAME_MAX))
    return web.json_response({})


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Switchboard's refusals as JSON; 503 while the server cannot be reached."""
    try:
        return await handler(request)
    except Refused as refused:
        return web.json_response({"error": str(refused)}, status=refused.status)
    except Unavailable as error:
        return web.json_response({"error": f"Switchboard is unavailable: {error}"}, status=503)
    except APIError as error:
        return web.json_response({"error": f"Switchboard refused: {error}"}, status=502)


def make_app(
    switchboard_url: str,
    project_token: str,
    *,
    room: str = "chat",
    socket_url: str | None = None,
    static: Path | None = HERE / "dist",
) -> web.Application:
    """The backend as an aiohttp app (``static``: the built page, served at ``/``)."""
    app = web.Application(middlewares=[json_errors])
    app.add_routes(routes)

    async def switchboard(app: web.Application) -> AsyncIterator[None]:
        async with AsyncSwitchboard(project_token, base_url=switchboard_url) as sb:
            chat = Chat(sb, room, socket_url or default_socket_url(switchboard_url), project_token)
            await chat.open_room()
            app[CHAT] = chat
            yield

    app.cleanup_ctx.append(switchboard)
    if static is not None and (static / "index.html").is_file():
        index = static / "index.html"

        async def page(request: web.Request) -> web.FileResponse:
            return web.FileResponse(index)

        app.router.add_get("/", page)
        app.router.add_static("/assets", static / "assets")
    return app


def default_socket_url(switchboard_url: str) -> str:
    """Switchboard's WebSocket beside its REST API: http://h:p -> ws://h:p/ws."""
    base = switchboard_url.rstrip("/").removesuffix("/v1")
    return base.replace("http", "ws", 1) + "/ws"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    env = os.environ.get
    parser.add_argument(
        "--switchboard",
        default=env("SWITCHBOARD_URL", "http://127.0.0.1:4000"),
        help="Switchboard's base URL (env SWITCHBOARD_URL; default %(default)s)",
    )
    parser.add_argument(
        "--project-token",
        default=env("SWITCHBOARD_PROJECT_TOKEN"),
        help="a project token, ptk_… (env SWITCHBOARD_PROJECT_TOKEN)",
    )
    parser.add_argument(
        "--socket-url",
        default=env("CHAT_SOCKET_URL"),
        help="the WebSocket URL handed to browsers; may be relative to the page, e.g. /ws "
        "behind a reverse proxy (default: the Switchboard URL's /ws)",
    )
    parser.add_argument("--room", default="chat", help="the private channel (default: chat)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(env("CHAT_PORT", "8000")))
    parser.add_argument(
        "--static",
        type=Path,
        default=HERE / "dist",
        help="the built page to serve at / (default: dist/ beside this file, after npm run build)",
    )
    args = parser.parse_args(argv)
    if not args.project_token:
        parser.error("--project-token (or SWITCHBOARD_PROJECT_TOKEN) is required")
    return args


async def serve(args: argparse.Namespace) -> None:
    app = make_app(
        args.switchboard,
        args.project_token,
        room=args.room,
        socket_url=args.socket_url,
        static=args.static,
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    served = "the page and " if (args.static / "index.html").is_file() else ""
    # The tests wait for this line: print it only once the socket listens.
    print(f"Chat backend on http://{args.host}:{args.port} ({served}/api)", flush=True)
    try:
        await stopping.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
