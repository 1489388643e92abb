"""Many channels: N token connections, each on its own private channel; channel messages, direct
messages one request each and in bulk, against the DM floor in the same run.

    .venv/bin/python bench/channels.py [--quick] [--connections 10000] [--reps 3]
        [--servers switchboard,switchboard-redis] [--paths channel,direct,broadcast,batch]
        [--window 8] [--bulk-window 4] [--per-request 1000] [--duration 4] [--profile]

Per Switchboard server (``switchboard``: one node on SQLite; ``switchboard-redis``: one node on
its own fresh ``redis-server``, node + Redis CPU): N tokens (``POST /v1/channels/tokens``), N
private channels (``PUT /v1/channels/:id``) and N grants (``PUT .../subscribers/:token``) through
the REST API; a load client in its own process connects once per token (each INIT already lists
its channel: durable token subscriptions). Beside them, the **DM floor**: ``peers/floor_server.py``
(aiohttp + uvloop) with N sockets from its own load client, writing one pre-built frame (the bytes
of a Switchboard ``DIRECT_MESSAGE``) to each of its N sockets per ``POST /publish``.

Paths (``_dm_paths.py``), each giving every connection one message per *round*:

- ``channel``: ``POST /v1/channels/p<i>/messages``, one request per message (``--window`` in flight);
- ``direct``: ``POST /v1/channels/tokens/<token>/messages``, one request per message;
- ``broadcast``: ``POST /v1/broadcast`` ``{tokens: [...], e, d}``, ``--per-request`` tokens each;
- ``batch``: ``POST /v1/batch`` ``{requests: [{op: "direct", token, e, d}, ...]}``, as many items;
- and the DM floor, one request per round.

One request per message runs one round per repetition; the bulk paths and the floor run K rounds
(K sized by a warm-up round for about ``--duration`` seconds of work; ``--bulk-window`` requests
in flight). A bulk route the server answers 404 to (not on its code yet) is skipped and said so.
Repetitions go round robin over the floor and every server's paths, so that drifts in background
load hit all alike. After each, the load client reports **every connection's frame count**: a
connection that got fewer frames than rounds lost some, one that got more got one twice.

Reported: deliveries per second, server CPU µs per delivery (utime + stime of the server's process
tree, and of its Redis), the server's RSS per token connection, medians of the repetitions, and
each path ÷ the DM floor (issue 21's targets: ``broadcast`` ≥ 0.7 of it on one node on SQLite,
≥ 0.4 on a node on Redis). ``--profile`` adds a py-spy profile of each Switchboard server during
one more repetition of its ``broadcast`` (else ``direct``) path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from _cli import Command, run_main
from _dm_paths import Path, available, bulk_paths, floor_path, single_paths
from _http_load import HttpPool
from _loadclient_driver import LoadClient, frame_check
from _procs import cpu_seconds, machine_busy_seconds, rss_bytes, runqueue_wait_seconds
from _profile import profile_during
from _report import fmt_int, header, median, table
from _servers import Servers
from _targets import LABELS, Target, start_floor, start_switchboard, start_switchboard_redis

SERVERS = {"switchboard": start_switchboard, "switchboard-redis": start_switchboard_redis}
PATHS = {"channel": "channel messages", "direct": "direct messages", "broadcast": "broadcast"}
PATHS["batch"] = "batch"
TARGETS = {"switchboard": 0.7, "switchboard-redis": 0.4}
"""Issue 21: ``broadcast`` ÷ the DM floor, by deliveries/s."""


def command() -> Command:
    cmd = Command(__doc__, quick="1,000 connections, one repetition, SQLite only (~30 s)")
    cmd.option("--connections", "token connections per server", 10_000, quick=1000, type=int)
    cmd.option("--reps", "repetitions", 3, quick=1, type=int)
    cmd.names(
        "--servers",
        "comma-separated",
        list(SERVERS),
        allowed=list(SERVERS),
        what="server",
        quick=["switchboard"],
    )
    cmd.names("--paths", "comma-separated", list(PATHS), allowed=list(PATHS), what="path")
    cmd.option("--window", "requests in flight, one request per message", 8, type=int)
    cmd.option("--bulk-window", "requests in flight, bulk paths and the floor", 4, type=int)
    cmd.option(
        "--per-request", "tokens per bulk request (the routes take up to 1,000)", 1000, type=int
    )
    cmd.option(
        "--duration", "seconds of work per repetition of a bulk path", 4.0, quick=0.5, type=float
    )
    cmd.option("--concurrency", "token connections opening at once", 16, type=int)
    cmd.option(
        "--client-nap-ms",
        "the load clients sleep this long per loop turn while counting, to batch reads",
        0.0,
        type=float,
    )
    cmd.profile("py-spy each Switchboard server through one more broadcast (or direct) repetition")
    return cmd


@dataclass
class Live:
    """A server with its N connections: what a repetition needs."""

    name: str
    label: str
    target: Target
    client: LoadClient
    paths: list[Path]
    rounds: dict[str, int] = field(default_factory=dict)
    """Rounds per repetition, by path (1 for one request per message)."""
    skipped: dict[str, str] = field(default_factory=dict)
    rss_per_conn: float = 0.0
    nap_ms: float = 0.0
    """The load client's nap per loop turn while counting (``--client-nap-ms``)."""


async def setup(target: Target, n: int, window: int) -> tuple[list[str], float]:
    """Create N tokens, N private channels and N grants; return the tokens and requests/s."""
    auth = {"Authorization": target.info["ptk"]}
    tokens: list[str] = [""] * n
    t0 = time.perf_counter()
    async with HttpPool(target.pub_port, window) as pool:
        sem = asyncio.Semaphore(window)

        async def token(i: int) -> None:
            async with sem:
                answer = await pool.json(
                    "POST", "/v1/channels/tokens", {"state": {"user": i}}, auth
                )
                tokens[i] = answer["data"]["token"]["id"]

        async def channel(i: int) -> None:
            async with sem:
                await pool.json("PUT", f"/v1/channels/p{i}", {"type": "private"}, auth)
                await pool.json("PUT", f"/v1/channels/p{i}/subscribers/{tokens[i]}", None, auth)

        await asyncio.gather(*(token(i) for i in range(n)))
        await asyncio.gather(*(channel(i) for i in range(n)))
    return tokens, 3 * n / (time.perf_counter() - t0)


FAILED_ITEM = b'"success":false'
"""An item's result in a bulk answer that says it was not done."""


async def send_rounds(port: int, path: Path, rounds: int, window: int) -> dict[int, int]:
    """``rounds`` rounds of ``path``, ``window`` requests in flight; the answers' statuses, and
    under -1 the items a 200 answer of a bulk path says failed."""
    statuses: dict[int, int] = {}
    todo = iter([(r, i) for r in range(rounds) for i in range(path.requests)])
    async with HttpPool(port, window) as pool:

        async def worker() -> None:
            for r, i in todo:
                status, body = await pool.request(path.build(r, i))
                statuses[status] = statuses.get(status, 0) + 1
                if path.route and status < 300:
                    statuses[-1] = statuses.get(-1, 0) + body.count(FAILED_ITEM)

        await asyncio.gather(*(worker() for _ in range(window)))
    return statuses


async def phase(live: Live, n: int, path: Path, rounds: int, window: int) -> dict[str, float]:
    """One repetition of one path: ``rounds`` frames to each of the N connections, counted."""
    pids = live.target.server.pids()
    client = live.client
    await client.arm(n * rounds, 300, throttle_ms=live.nap_ms)
    cpu0, ccpu0, busy0 = cpu_seconds(pids), cpu_seconds([client.pid]), machine_busy_seconds()
    wait0 = runqueue_wait_seconds(pids)
    t0 = time.time()
    statuses = await send_rounds(live.target.pub_port, path, rounds, window)
    done = await client.done(330)
    cpu1, ccpu1, busy1 = cpu_seconds(pids), cpu_seconds([client.pid]), machine_busy_seconds()
    wait1 = runqueue_wait_seconds(pids)
    await asyncio.sleep(0.2)  # a frame sent twice would arrive about now
    check = frame_check(await client.per_conn(), rounds)
    secs = max(1e-6, done["t_done"] - t0)
    return {
        "rounds": rounds,
        "requests": rounds * path.requests,
        "rate": done["count"] / secs,
        "us": (cpu1 - cpu0) / max(1, done["count"]) * 1e6,
        "util": (cpu1 - cpu0) / secs,
        "client_util": (ccpu1 - ccpu0) / secs,
        "wait": (wait1 - wait0) / secs,
        "busy": (busy1 - busy0) / secs,
        "secs": secs,
        "errors": sum(v for status, v in statuses.items() if status >= 300 or status < 0),
        **check,
    }


async def start_live(
    servers: Servers, name: str, n: int, args: argparse.Namespace, stack: contextlib.AsyncExitStack
) -> Live:
    """A Switchboard server with N token connections on N private channels, or the DM floor."""
    client = await stack.enter_async_context(LoadClient())
    if name == "floor":
        target = await start_floor(servers)
        await client.connect(target, n)
        label = "DM floor (aiohttp, one pre-built frame per socket)"
        paths = [floor_path(target.pub_port)]
        return Live(name, label, target, client, paths, nap_ms=args.client_nap_ms)
    target = await SERVERS[name](servers)
    tokens, setup_rate = await setup(target, n, args.window)
    print(
        f"{name}: {3 * n:,} REST calls (tokens, channels, grants) at {fmt_int(setup_rate)} requests/s",
        flush=True,
    )
    live = Live(name, LABELS[name], target, client, [], nap_ms=args.client_nap_ms)
    await choose_paths(live, tokens, args)
    rss0 = rss_bytes(target.server.pid)
    t0 = time.perf_counter()
    spec = {"channel": None, "tokens": tokens, "expect_channels": 1, "retries": 2}
    await client.connect(target, n, concurrency=args.concurrency, **spec)
    connect_s = time.perf_counter() - t0
    await asyncio.sleep(1.0)
    rss1 = rss_bytes(target.server.pid)
    live.rss_per_conn = (rss1 - rss0) / n
    print(
        f"{name}: connected {n:,} token connections in {connect_s:.1f} s; RSS {rss0 / 2**20:.1f} -> "
        f"{rss1 / 2**20:.1f} MiB = {live.rss_per_conn / 1024:.1f} KiB per connection",
        flush=True,
    )
    return live


async def choose_paths(live: Live, tokens: list[str], args: argparse.Namespace) -> None:
    """The ``--paths`` asked for; a bulk route the server answers 404 to is skipped, said why."""
    port = live.target.pub_port
    auth = {"Authorization": live.target.info["ptk"]}
    paths = single_paths(port, auth, tokens) + bulk_paths(port, auth, tokens, args.per_request)
    for path in paths:
        if path.name not in [PATHS[p] for p in args.paths]:
            continue
        why = await available(port, auth, path.route) if path.route else None
        if why:
            live.skipped[path.name] = why
            print(f"{live.name}: {path.name} skipped: {why}", flush=True)
        else:
            live.paths.append(path)


async def warm_up(live: Live, n: int, args: argparse.Namespace) -> None:
    """A round of each path (a tenth of one for one request per message); sizes the bulk paths'
    rounds per repetition for about ``--duration`` seconds."""
    for path in live.paths:
        if path.bulk:
            r = await phase(live, n, path, 1, args.bulk_window)
            live.rounds[path.name] = max(1, min(200, round(args.duration / r["secs"])))
        else:
            tenth = Path(path.name, max(1, path.requests // 10), path.build)
            await send_rounds(live.target.pub_port, tenth, 1, args.window)
            live.rounds[path.name] = 1


def print_rep(i: int, live: Live, path: Path, r: dict[str, float]) -> None:
    check = (
        "every frame once"
        if not r["bad_conns"]
        else (
            f"{r['bad_conns']:.0f} connections off: {r['lost']:.0f} frames lost, {r['extra']:.0f} twice"
        )
    )
    print(
        f"  rep {i + 1} {live.name:18} {path.name:16}: {fmt_int(r['rate']):>7} deliveries/s, "
        f"{r['us']:6.2f} CPU µs/delivery, server CPU {100 * r['util']:3.0f}% (waited for a CPU "
        f"{100 * r['wait']:.0f}%), load client {100 * r['client_util']:.0f}%, machine "
        f"{100 * r['busy']:.0f}% of 200%, {r['requests']:.0f} requests, "
        f"errors {r['errors']:.0f}; {check}",
        flush=True,
    )


Results = dict[tuple[str, str], list[dict[str, float]]]


async def repetitions(lives: list[Live], n: int, args: argparse.Namespace) -> Results:
    results: Results = {}
    for i in range(args.reps):
        for live in lives:
            for path in live.paths:
                window = args.bulk_window if path.bulk else args.window
                r = await phase(live, n, path, live.rounds[path.name], window)
                results.setdefault((live.name, path.name), []).append(r)
                print_rep(i, live, path, r)
    return results


async def profile(live: Live, n: int, args: argparse.Namespace) -> str:
    path = next((p for p in live.paths if p.name == "broadcast"), None) or next(
        (p for p in live.paths if p.name == "direct messages"), live.paths[0]
    )
    window = args.bulk_window if path.bulk else args.window
    rounds = live.rounds[path.name]
    return await profile_during(
        live.target.server.pid,
        max(2.0, args.duration * 2),
        args.native,
        lambda: phase(live, n, path, rounds, window),
        file_name=f"channels-{live.name}.txt",
        what=f"{live.name}, {path.name} to {n:,} token connections",
    )


def report(lives: list[Live], results: Results, n: int) -> None:
    print("\n## Results (medians of the repetitions)\n")
    floor = results.get(("floor", "DM floor"), [])
    floor_rate = median([r["rate"] for r in floor])
    floor_us = median([r["us"] for r in floor])
    rows = []
    for live in lives:
        for path in live.paths:
            runs = results[(live.name, path.name)]
            rate, us = median([r["rate"] for r in runs]), median([r["us"] for r in runs])
            rows.append(
                [
                    live.label,
                    path.name,
                    f"{n:,}",
                    f"{median([r['requests'] for r in runs]):,.0f}",
                    fmt_int(rate),
                    f"{us:.2f}",
                    f"{100 * median([r['util'] for r in runs]):.0f}%",
                    f"{rate / floor_rate:.2f} ({floor_us / us:.2f})"
                    if floor and live.name != "floor"
                    else "—",
                    f"{sum(r['lost'] for r in runs):.0f} / {sum(r['extra'] for r in runs):.0f}",
                    f"{sum(r['errors'] for r in runs):.0f}",
                ]
            )
        for name, why in live.skipped.items():
            short = "404: not on this code yet" if "404" in why else why[:60]
            rows.append([live.label, name, f"{n:,}", "—", f"skipped ({short})", "", "", "", "", ""])
    headers = [
        "server",
        "path",
        "connections",
        "requests/rep",
        "deliveries/s",
        "server CPU µs/delivery",
    ]
    headers += ["server CPU", "÷ DM floor (by CPU)", "lost / twice", "errors"]
    print(table(headers, rows))
    for live in lives:
        if live.name == "floor":
            continue
        print(
            f"RSS per token connection on {live.name} (with its private channel): {live.rss_per_conn / 1024:.1f} KiB"
        )
        runs = results.get((live.name, "broadcast"))
        if runs and floor:
            ratio = median([r["rate"] for r in runs]) / floor_rate
            goal = TARGETS[live.name]
            verdict = "met" if ratio >= goal else f"NOT met, by {goal - ratio:.2f}"
            print(f"{live.label}: broadcast ÷ DM floor {ratio:.2f}, target ≥ {goal}: {verdict}")


async def main() -> int:
    args = command().parse()
    n = args.connections
    header("Many-channels benchmark")
    print(
        f"{n:,} token connections per server, each on its own private channel; {args.reps} repetition(s); "
        f"window {args.window} (one request per message), {args.bulk_window} (bulk, floor); "
        f"{args.per_request:,} tokens per bulk request.\n"
    )
    with Servers() as servers:
        async with contextlib.AsyncExitStack() as stack:
            lives = [
                await start_live(servers, name, n, args, stack) for name in ["floor", *args.servers]
            ]
            for live in lives:
                await warm_up(live, n, args)
            results = await repetitions(lives, n, args)
            profiles = [await profile(live, n, args) for live in lives[1:]] if args.profile else []
    report(lives, results, n)
    for text in profiles:
        print(text)
    return 0


if __name__ == "__main__":
    run_main(main)
