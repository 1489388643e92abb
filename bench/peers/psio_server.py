"""python-socketio peer: a room broadcast, published through a small HTTP route.

``python bench/peers/psio_server.py --port P``: python-socketio's ``AsyncServer`` on
aiohttp (uvloop when installed, like Switchboard). A client emits ``join``; the server
puts it in the room ``bench`` and answers ``joined``. ``POST /publish`` with a JSON body
emits it as event ``m`` to the room (``await sio.emit(..., room=...)``).
"""

from __future__ import annotations

import argparse
import asyncio
import json

import socketio
from aiohttp import web

ROOM = "bench"


def build_app() -> web.Application:
    sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*")
    app = web.Application()
    sio.attach(app)

    @sio.on("join")  # type: ignore[untyped-decorator]
    async def join(sid: str, *args: object) -> None:
        await sio.enter_room(sid, ROOM)
        await sio.emit("joined", to=sid)

    async def publish(request: web.Request) -> web.Response:
        data = json.loads(await request.read())
        await sio.emit("m", data, room=ROOM)
        return web.Response(text="ok")

    app.router.add_post("/publish", publish)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    web.run_app(
        build_app(), host="127.0.0.1", port=args.port, access_log=None, print=None, backlog=4096
    )


if __name__ == "__main__":
    main()
