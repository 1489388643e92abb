"""Many users: N token connections, each with a personal channel and a group channel of 10;
publishes to groups and direct messages at half the measured maximum (issue 21, item 4).

    .venv/bin/python bench/many_users.py [--quick] [--users 20000] [--seconds 30]
        [--layouts sqlite,redis-2] [--fraction 0.5] [--dm-share 0.5] [--per-client 10000]

Layouts: ``sqlite``, one ``switchboard serve`` node on SQLite; ``redis-2``, two ``switchboard
serve --redis`` nodes on a ``redis-server`` the run starts on a free port (user ``u`` connects
to node ``u % 2``, so each group has members on both nodes, and requests alternate between the
nodes). For each layout:

1. Setup through the REST API (spread over the nodes): a token per user, a private channel
   ``u<u>`` granted to it, a private channel ``g<g>`` per group of ``--group-size`` users
   granted to each member (4.1 N calls).
2. The users connect, one token connection each (IDENTIFY with the token; INIT lists both
   channels), from load-client processes of ``--per-client`` connections each (this machine's
   hard open-file limit is 20,000 per process, ``ulimit -Hn``: a node holds its N sockets plus
   its own files, so one node takes at most ~19,800 users; the run says what it reached).
3. **Maximum**: requests closed loop (``--window`` in flight over all nodes) for about
   ``--max-seconds``: a share ``--dm-share`` of them direct messages
   (``POST /v1/channels/tokens/:token/messages``, one frame), the rest publishes to a group
   (``POST /v1/channels/g<g>/messages``, ten frames). Requests/s and deliveries/s.
4. **Paced**: the same mix at ``--fraction`` of that maximum's requests/s, evenly spaced, for
   ``--seconds``. Each message carries its *scheduled* send time; the load clients time every
   delivery to every connection against it (10 µs histograms, merged): p50 / p99 / max. CPU per
   delivery is the nodes' (and Redis's) utime + stime over the span ÷ frames delivered.

After each phase every connection's frame count is checked against what the schedule sent it
(none lost, none twice). Also reported: RSS per connection (each node's VmRSS with its users
connected less before, ÷ its connections) and how much of the two CPUs other processes took (the
machine is shared: figures from a busy machine are provisional).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from typing import Any

from _cli import Command, run_main
from _http_load import HttpPool
from _loadclient_driver import frame_check
from _many_users import Clients, Workload, connect, merge_latency, request_builder, setup, spread
from _procs import cpu_seconds, machine_busy_seconds, raise_nofile, runqueue_wait_seconds
from _report import fmt_int, header, table
from _servers import HOST, Servers, start_redis
from _targets import Target, join_switchboard, start_switchboard
from connects import settled_rss

LAYOUTS = {"sqlite": "one node, SQLite", "redis-2": "two nodes on one Redis"}
SPARE_FILES = 200
"""Files a node holds besides its users' sockets (listener, logs, SQLite, Redis, REST clients)."""


def command() -> Command:
    cmd = Command(__doc__, quick="2,000 users, 5 s paced, both layouts (~1.5 min)")
    cmd.option(
        "--users", "token connections (a multiple of --group-size)", 20_000, quick=2000, type=int
    )
    cmd.option("--seconds", "seconds of paced traffic", 30.0, quick=5.0, type=float)
    cmd.option("--max-seconds", "seconds of the closed-loop maximum", 5.0, quick=2.0, type=float)
    cmd.names("--layouts", "comma-separated", list(LAYOUTS), allowed=list(LAYOUTS), what="layout")
    cmd.option("--fraction", "of the maximum requests/s, paced", 0.5, type=float)
    cmd.option("--dm-share", "share of requests that are direct messages", 0.5, type=float)
    cmd.option("--group-size", "users per group", 10, type=int)
    cmd.option("--per-client", "connections per load-client process", 10_000, type=int)
    cmd.option("--window", "requests in flight, closed loop and setup (per node)", 16, type=int)
    cmd.option("--pool", "publisher connections per node, paced", 64, type=int)
    return cmd


async def start_layout(servers: Servers, layout: str) -> tuple[list[Target], list[int]]:
    """The layout's nodes, and the pids whose CPU is the server's (nodes and Redis)."""
    if layout == "sqlite":
        node = await start_switchboard(servers)
        return [node], node.server.pids()
    redis = await start_redis(servers)
    url = f"redis://{HOST}:{redis.port}/0"
    first = await start_switchboard(servers, extra=["--redis", url])
    second = await join_switchboard(servers, first, url, "switchboard-b")
    return [first, second], [*first.server.pids(), *second.server.pids(), redis.pid]


class Run:
    """One layout's live parts: nodes, load clients, the workload and its requests."""

    def __init__(
        self,
        nodes: list[Target],
        pids: list[int],
        clients: Clients,
        work: Workload,
        tokens: list[str],
    ):
        self.nodes, self.pids, self.clients, self.work = nodes, pids, clients, work
        self.build = request_builder(work, nodes, tokens)

    def cpu(self) -> tuple[float, float, float]:
        """CPU seconds so far: the server (nodes + Redis), the load clients, this process."""
        own = os.times()
        return cpu_seconds(self.pids), cpu_seconds(self.clients.pids), own.user + own.system

    async def check(self, requests: int) -> dict[str, int]:
        await asyncio.sleep(0.3)  # a frame sent twice would arrive about now
        return frame_check(await self.clients.counts(self.work.users), self.work.expected(requests))


async def closed_loop(run: Run, requests: int, window: int) -> dict[str, Any]:
    """``requests`` requests, ``window`` in flight per node; rates and the frame check."""
    expected = run.work.expected(requests)
    await run.clients.arm(expected, 300)
    statuses: dict[int, int] = {}
    todo = iter(range(requests))
    pools = [HttpPool(n.pub_port, window) for n in run.nodes]
    c0, t0 = run.cpu(), time.time()
    async with contextlib.AsyncExitStack() as stack:
        for pool in pools:
            await stack.enter_async_context(pool)

        async def worker() -> None:
            for j in todo:
                status, _ = await pools[j % len(pools)].request(run.build(j, None))
                statuses[status] = statuses.get(status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(window * len(pools))))
    answers = await run.clients.done(330)
    c1 = run.cpu()
    secs = max(a["t_done"] for a in answers) - t0
    delivered = sum(a["count"] for a in answers)
    return {
        "requests": requests,
        "req_rate": requests / secs,
        "rate": delivered / secs,
        "us": (c1[0] - c0[0]) / max(1, delivered) * 1e6,
        "errors": sum(v for s, v in statuses.items() if s >= 300),
        **(await run.check(requests)),
    }


async def paced(run: Run, rate: float, seconds: float, pool_size: int) -> dict[str, Any]:
    """``rate`` requests/s for ``seconds``, evenly spaced; latency of every delivery."""
    count = max(1, round(rate * seconds))
    expected = run.work.expected(count)
    await run.clients.arm(expected, seconds + 120, latency=True, hist=True)
    interval_ns = 1e9 / rate
    async with contextlib.AsyncExitStack() as stack:
        pools = [
            await stack.enter_async_context(HttpPool(n.pub_port, pool_size)) for n in run.nodes
        ]
        c0, busy0, wait0 = run.cpu(), machine_busy_seconds(), runqueue_wait_seconds(run.pids)
        start_ns = time.time_ns() + 20_000_000
        pending = []
        lag_max = 0.0
        for j in range(count):
            when = start_ns + int(j * interval_ns)
            delay = (when - time.time_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lag_max = max(lag_max, -delay)
            pending.append(asyncio.ensure_future(pools[j % len(pools)].request(run.build(j, when))))
        statuses = await asyncio.gather(*pending)
        answers = await run.clients.done(seconds + 180)
    c1, busy1, wait1 = run.cpu(), machine_busy_seconds(), runqueue_wait_seconds(run.pids)
    secs = max(a["t_done"] for a in answers) - start_ns / 1e9
    delivered = sum(a["count"] for a in answers)
    used = [b - a for a, b in zip(c0, c1, strict=True)]
    return {
        "requests": count,
        "req_rate": rate,
        "rate": delivered / secs,
        "delivered": delivered,
        "us": used[0] / max(1, delivered) * 1e6,
        "server_util": used[0] / secs,
        "server_wait": (wait1 - wait0) / secs,
        "clients_util": used[1] / secs,
        "publisher_util": used[2] / secs,
        "others_util": max(0.0, (busy1 - busy0) - sum(used)) / secs,
        "lag_ms": lag_max * 1000,
        "errors": sum(1 for s, _ in statuses if s >= 300),
        "latency": merge_latency(answers),
        **(await run.check(count)),
    }


def users_for(layout: str, args: argparse.Namespace, limit: int) -> int:
    """The users a layout can hold: each node at most its open-file limit less its own files."""
    nodes = 1 if layout == "sqlite" else 2
    most = (limit - SPARE_FILES) * nodes
    users = min(args.users, most)
    return users - users % args.group_size


async def measure(
    servers: Servers, layout: str, args: argparse.Namespace, limit: int
) -> dict[str, Any]:
    users = users_for(layout, args, limit)
    work = Workload(users, args.group_size, args.dm_share)
    nodes, pids = await start_layout(servers, layout)
    print(
        f"\n{LAYOUTS[layout]}: {users:,} users, {work.groups:,} groups of {args.group_size}",
        flush=True,
    )
    if users < args.users:
        print(
            f"  ({args.users:,} asked: a node holds at most its open-file limit {limit:,} less "
            f"{SPARE_FILES} of its own files per process)",
            flush=True,
        )
    tokens, setup_rate = await setup(nodes, work, args.window)
    print(
        f"  setup: {fmt_int(4.1 * users)} REST calls at {fmt_int(setup_rate)} requests/s",
        flush=True,
    )
    clients = Clients()
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(lambda: asyncio.gather(*(c.__aexit__() for c in clients.procs)))
        rss = await connect_all(nodes, clients, users, tokens, args)
        run = Run(nodes, pids, clients, work, tokens)
        warm = await closed_loop(run, 200 * len(nodes), args.window)
        top = await closed_loop(
            run, max(100, round(warm["req_rate"] * args.max_seconds)), args.window
        )
        print(
            f"  max: {fmt_int(top['req_rate'])} requests/s = {fmt_int(top['rate'])} deliveries/s, "
            f"{top['us']:.1f} server CPU µs/delivery; lost {top['lost']}, twice {top['extra']}, errors {top['errors']}",
            flush=True,
        )
        rate = args.fraction * top["req_rate"]
        result = await paced(run, rate, args.seconds, args.pool)
    print_paced(result)
    return {
        "layout": layout,
        "users": users,
        "rss": rss,
        "top": top,
        "paced": result,
        "nodes": len(nodes),
    }


async def connect_all(
    nodes: list[Target], clients: Clients, users: int, tokens: list[str], args: argparse.Namespace
) -> float:
    """Every user's token connection; RSS per connection over the nodes."""
    before = [await settled_rss(n.server.pid) for n in nodes]
    groups = spread(users, len(nodes))
    secs = max(
        await asyncio.gather(
            *(
                connect(clients, n, ids, tokens, args.per_client)
                for n, ids in zip(nodes, groups, strict=True)
            )
        )
    )
    after = [await settled_rss(n.server.pid) for n in nodes]
    rss = (sum(after) - sum(before)) / users
    print(
        f"  connected {users:,} token connections in {secs:.1f} s ({fmt_int(users / secs)}/s) from "
        f"{len(clients.procs)} load-client processes; {rss / 1024:.1f} KiB RSS per connection",
        flush=True,
    )
    return rss


def print_paced(r: dict[str, Any]) -> None:
    lat = r["latency"]
    print(
        f"  paced: {r['req_rate']:.0f} requests/s = {fmt_int(r['rate'])} deliveries/s for {r['requests']:,} requests; "
        f"p50 {lat.get('p50', float('nan')):.2f} ms, p99 {lat.get('p99', float('nan')):.2f} ms, max {lat.get('max', float('nan')):.2f} ms; "
        f"{r['us']:.1f} server CPU µs/delivery; CPU: server {100 * r['server_util']:.0f}% (waited for a CPU "
        f"{100 * r['server_wait']:.0f}%), load clients "
        f"{100 * r['clients_util']:.0f}%, publisher {100 * r['publisher_util']:.0f}%, others {100 * r['others_util']:.0f}%; "
        f"publisher lag up to {r['lag_ms']:.0f} ms; lost {r['lost']}, twice {r['extra']}, errors {r['errors']}",
        flush=True,
    )


def row(m: dict[str, Any]) -> list[str]:
    top, p = m["top"], m["paced"]
    lat = p["latency"]
    return [
        LAYOUTS[m["layout"]],
        f"{m['users']:,}",
        f"{fmt_int(top['req_rate'])} ({fmt_int(top['rate'])})",
        f"{p['req_rate']:,.0f} ({fmt_int(p['rate'])})",
        f"{lat.get('p50', float('nan')):.2f}",
        f"{lat.get('p99', float('nan')):.2f}",
        f"{lat.get('max', float('nan')):.2f}",
        f"{p['us']:.1f}",
        f"{m['rss'] / 1024:.1f}",
        f"{top['lost'] + p['lost']} / {top['extra'] + p['extra']}",
        f"{100 * p['others_util']:.0f}% ({100 * p['server_wait']:.0f}%)",
    ]


async def main() -> int:
    args = command().parse()
    limit = raise_nofile()
    header("Many users: personal channels, groups of 10, direct messages")
    print(
        f"{args.users:,} users asked; open-file limit {limit:,} per process; {args.dm_share:g} of requests "
        f"direct messages; paced at {args.fraction:g} of the max for {args.seconds:g} s.",
        flush=True,
    )
    results = []
    with Servers() as servers:
        for layout in args.layouts:
            results.append(await measure(servers, layout, args, limit))
            servers.stop_all()
    print("\n## Results\n")
    headers = [
        "layout",
        "users",
        "max requests/s (deliveries/s)",
        "paced requests/s (deliveries/s)",
    ]
    headers += [
        "p50 ms",
        "p99 ms",
        "max ms",
        "server CPU µs/delivery (paced)",
        "KiB RSS/connection",
    ]
    print(
        table([*headers, "lost / twice", "others' CPU (server waited)"], [row(m) for m in results])
    )
    return 0


if __name__ == "__main__":
    run_main(main)
