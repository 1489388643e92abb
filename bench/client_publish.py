"""Client MESSAGEs: what one published from a socket costs, on SQLite or on Redis.

    .venv/bin/python bench/client_publish.py [--servers switchboard,switchboard-redis]
                                             [--senders 4] [--messages 5000] [--reps 3]
                                             [--history SIZE]

One public channel; ``--senders`` token connections, each with its own token and
subscribed, each sending ``--messages`` Leap ``MESSAGE`` dispatches (~100-byte ``d``) as
fast as the socket takes them, and reading what the others send. The server's
per-connection limits are raised out of the way. Reported: client messages per second
(from the first send to the last delivery at every sender) and the server's CPU µs per
message (node, and Redis's with ``switchboard-redis``). ``--history SIZE`` turns the
channel's history on (every message is then kept: one store write each).

This is the path a channel without history skips the store on (docs/history.md, "Cost
per publish"): run it beside the code of before to see the round trip it saves.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import websockets
from _cli import Command, run_main
from _http_load import HttpPool
from _procs import cpu_seconds
from _report import fmt_int, header, median, table
from _servers import HOST, Servers, start_redis
from _targets import Target, payload, start_switchboard

SERVERS = ["switchboard", "switchboard-redis"]
LIMITS = ["--client-messages-per-second", "1000000", "--client-frames-per-second", "1000000"]


async def start(servers: Servers, name: str) -> Target:
    extra = list(LIMITS)
    redis = None
    if name == "switchboard-redis":
        redis = await start_redis(servers)
        extra += ["--redis", f"redis://{HOST}:{redis.port}/0"]
    target = await start_switchboard(servers, extra=extra)
    if redis is not None:
        target.server.extra_pids.append(redis.pid)
    return target


async def setup(target: Target, senders: int, history: int) -> list[str]:
    auth = {"Authorization": target.info["ptk"]}
    body: dict[str, Any] = {"type": "public"}
    if history:
        body["history"] = {"size": history, "ttl_s": 3600}
    async with HttpPool(target.pub_port, 1) as pool:
        await pool.json("PUT", "/v1/channels/room", body, auth)
        answers = [await pool.json("POST", "/v1/channels/tokens", {}, auth) for _ in range(senders)]
    return [a["data"]["token"]["id"] for a in answers]


async def connect(target: Target, token: str) -> Any:
    ws = await websockets.connect(
        f"ws://{HOST}:{target.pub_port}/ws?encoding=json", max_size=None, compression=None
    )
    await ws.recv()  # HELLO
    await ws.send(
        json.dumps({"op": 2, "d": {"project_id": target.info["project_id"], "token": token}})
    )
    await ws.recv()  # INIT
    await ws.send(json.dumps({"op": 0, "d": {"c": "room", "e": "SUBSCRIBE", "d": None}}))
    while '"AVAILABLE"' not in await ws.recv():
        pass
    return ws


async def one_run(target: Target, sockets: list[Any], messages: int) -> dict[str, float]:
    expected = messages * (len(sockets) - 1)
    frames = [
        json.dumps(
            {
                "op": 0,
                "d": {"c": "room", "e": "MESSAGE", "d": {"e": "m", "d": json.loads(payload(n))}},
            }
        )
        for n in range(messages)
    ]

    async def read(ws: Any) -> None:
        got = 0
        while got < expected:
            if '"MESSAGE"' in await ws.recv():
                got += 1

    async def send(ws: Any) -> None:
        for frame in frames:
            await ws.send(frame)

    pids = target.server.pids()
    cpu0, t0 = cpu_seconds(pids), time.perf_counter()
    readers = [asyncio.ensure_future(read(ws)) for ws in sockets]
    await asyncio.gather(*(send(ws) for ws in sockets))
    await asyncio.wait_for(asyncio.gather(*readers), 120)
    secs, cpu1 = time.perf_counter() - t0, cpu_seconds(pids)
    total = messages * len(sockets)
    return {"rate": total / secs, "us": (cpu1 - cpu0) / total * 1e6}


def command() -> Command:
    cmd = Command(__doc__)
    cmd.names("--servers", "comma-separated", SERVERS, allowed=SERVERS, what="server")
    cmd.option("--senders", "token connections", 4, type=int)
    cmd.option("--messages", "messages per sender per repetition", 5000, type=int)
    cmd.option("--reps", "repetitions", 3, type=int)
    cmd.history()
    return cmd


async def main() -> int:
    args = command().parse()
    header("Client MESSAGE benchmark")
    kept = f"history size {args.history}" if args.history else "no history"
    print(
        f"One public channel ({kept}), {args.senders} senders x {args.messages} messages, "
        f"{args.reps} reps.\n"
    )
    rows = []
    with Servers() as servers:
        for name in args.servers:
            target = await start(servers, name)
            tokens = await setup(target, args.senders, args.history)
            sockets = [await connect(target, t) for t in tokens]
            try:
                await one_run(target, sockets, min(500, args.messages))  # warm-up
                runs = []
                for i in range(args.reps):
                    r = await one_run(target, sockets, args.messages)
                    runs.append(r)
                    print(
                        f"  rep {i + 1} {name:18} {fmt_int(r['rate']):>7} messages/s, "
                        f"{r['us']:6.1f} CPU µs/message",
                        flush=True,
                    )
            finally:
                for ws in sockets:
                    await ws.close()
            target.server.stop()
            rows.append(
                [
                    name,
                    fmt_int(median([r["rate"] for r in runs])),
                    f"{median([r['us'] for r in runs]):.1f}",
                ]
            )
    print("\n## Results (medians)\n")
    print(table(["server", "client messages/s", "server CPU µs/message"], rows))
    return 0


if __name__ == "__main__":
    run_main(main)
