"""Fan-out across nodes: publish through node A, subscribers on nodes B and C, beside one node.

    .venv/bin/python bench/cluster.py [--quick] [--sizes 1000,5000] [--configs single,redis,cluster]
                                      [--reps 3] [--duration 1.0] [--window 4] [--pace 0.5]
                                      [--paced-duration 2.0] [--max-others 0.25] [--retries 1]
    .venv/bin/python bench/cluster.py --layout spread [--channels 3000] [--before-src PATH] [--rate R]
                                      [--redis-shards N]
                                      [--subscribers-per-channel 1] [the phases' options above]

``--layout spread`` (issue 20.1) measures what each node of a cluster hears instead: three nodes,
3,000 channels whose subscribers sit on one node each, publishes spread evenly over the channels
and the nodes' REST APIs; events each node decoded (its /metrics) against messages published,
topics per node, node and Redis CPU per published message; ``--before-src`` runs the same on a
second set of nodes from an older source tree, alternating repetitions, and prints after ÷
before. Its details are in ``_spread.py``. With ``--redis-shards N`` (issue 19) the measured nodes run
on a Redis Cluster of N masters (``redis+cluster://``: sharded pub/sub) and the same code beside them
on one Redis, alternating: Redis CPU per message per master, events decoded per node, the rate, and
the cluster ÷ one Redis. The rest of this text is the default layout, fanout.

Three configurations are started in this run, side by side, each with its own load client(s):

- ``single``: one ``switchboard serve`` with the embedded SQLite store (as in fanout.py), N
  subscribers on one channel, messages published through its REST API;
- ``redis``: one ``switchboard serve --redis`` on its own ``redis-server``: the cluster's code
  path (every publish goes out to Redis pub/sub and comes back to the node), no second node;
- ``cluster``: three ``switchboard serve --redis`` nodes on one more ``redis-server``; N/2
  subscribers on B and N/2 on C (one load client process each), every message published
  through A's REST API (A has no subscribers). The clock stops when both load clients have
  counted all their frames.

Each ``redis-server`` is started here on a free port (``--save '' --appendonly no``) and killed at
the end; the machine's own Redis is never used. The nodes of the cluster share the project and its
token: node A makes them on the empty Redis (its banner shows them), B and C join.

Two phases per N, each in repetitions run round-robin across the configurations:

1. Closed loop (the maximum): a warm-up sizes K for about ``--duration`` seconds; a repetition
   publishes K ~100-byte messages with ``--window`` requests in flight and counts N*K frames (or
   reports the loss after a timeout). A single node answers a publish after it has queued the
   fan-out, so it sets the pace; node A answers once Redis has the message, so in the cluster
   messages pile up in Redis and B and C write several per socket write when behind (the hub
   coalesces writes per loop turn). "deliveries per socket write" shows how much.
2. Paced (the cost at the same load): every configuration gets the same message rate, ``--pace``
   times the lowest closed-loop rate of the three at that N, evenly spaced, for
   ``--paced-duration`` seconds. Server CPU per delivery here compares like with like.

A repetition during which processes other than this benchmark's used more than ``--max-others``
of a CPU (machine busy time from /proc/stat minus this run's processes) is re-run, up to
``--retries`` times, and counted.

Reported per configuration, N and phase, medians of the repetitions: deliveries per second (first
publish to last frame counted), server CPU microseconds per delivery summed over every node of
the configuration (utime + stime from /proc/<pid>/stat), Redis's CPU per delivery in its own
column (INFO cpu), the messages per second that went through Redis (and Redis's own count of
commands per message, INFO commandstats), then the ratios cluster / single node and cluster /
single node on Redis.

On a machine with few cores the three nodes, Redis, the load clients and the publisher share
them: the cluster figure then measures what the cross-node hop costs, not scale-out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import time

import _spread as spread
import _spread_report as spread_report
from _cli import Command, comma_ints, run_main
from _cluster import (
    CONFIGS,
    LABELS,
    PHASES,
    Config,
    closed_loop,
    commands_per_message,
    one_rep,
    paced,
    run_phase,
    summarize,
)
from _http_load import HttpPool
from _loadclient_driver import LoadClient
from _report import fmt_int, header, loss_note, pct, table
from _servers import HOST, ServerProc, Servers, start_redis
from _targets import join_switchboard, start_switchboard

CONNECT_CONCURRENCY = 32
"""Handshakes in flight per load client. Nodes on Redis used to refuse a burst of more than ~100
IDENTIFY/SUBSCRIBE at once (redis-py's default pool); they now queue it on a blocking pool, but a
smaller burst still keeps the set-up phase gentle on this 2-core machine."""


def command() -> Command:
    cmd = Command(__doc__, quick="400 subscribers, two short repetitions (~15 s)")
    cmd.option(
        "--sizes",
        "total subscribers per configuration, comma-separated",
        [1000, 5000],
        quick=[400],
        type=comma_ints,
    )
    cmd.names("--configs", "configurations to run", CONFIGS, allowed=CONFIGS, what="configuration")
    cmd.option("--reps", "repetitions per size and phase", 3, quick=2, type=int)
    cmd.option("--duration", "seconds per closed-loop repetition", 1.0, quick=0.5, type=float)
    cmd.option("--window", "publish requests in flight", 4, type=int)
    cmd.option(
        "--pace",
        "paced phase: this share of the lowest closed-loop message rate at that N",
        0.5,
        type=float,
        note="0 skips the phase",
    )
    cmd.option("--paced-duration", "seconds per paced repetition", 2.0, quick=1.0, type=float)
    cmd.option(
        "--max-others",
        "re-run a repetition in which other processes used more than this share of a CPU",
        0.25,
        type=float,
    )
    cmd.retries()
    cmd.option("--redis-server", "the redis-server binary to start", "redis-server")
    cmd.parser.add_argument(
        "--layout",
        choices=["fanout", "spread"],
        default="fanout",
        help="fanout: the configurations above; spread: many channels over three nodes, each"
        " node's events decoded (default fanout)",
    )
    spread.add_options(cmd)
    return cmd


# Servers.


async def make_config(
    name: str,
    servers: Servers,
    stack: contextlib.AsyncExitStack,
    redis_bin: str | None,
    window: int,
) -> Config:
    """Start one configuration's Redis and nodes; open its load clients and publishing pool."""
    import redis.asyncio as aioredis

    rds: ServerProc | None = None
    if name == "single":
        nodes = [await start_switchboard(servers)]
        subscribe_on = nodes
    else:
        assert redis_bin is not None
        rds = await start_redis(servers, redis_bin)
        url = f"redis://{HOST}:{rds.port}/0"
        first = await start_switchboard(servers, extra=["--redis", url])
        if name == "redis":
            nodes = [first]
            subscribe_on = nodes
        else:
            others = await asyncio.gather(
                join_switchboard(servers, first, url, "switchboard B"),
                join_switchboard(servers, first, url, "switchboard C"),
            )
            nodes = [first, *others]
            subscribe_on = list(others)
    clients = [await stack.enter_async_context(LoadClient()) for _ in subscribe_on]
    pool = await stack.enter_async_context(HttpPool(nodes[0].pub_port, window))
    cfg = Config(name, nodes[0], nodes, subscribe_on, clients, pool, rds)
    cfg.have = [0] * len(subscribe_on)
    if rds is not None:
        cfg.redis_client = aioredis.Redis(host=HOST, port=rds.port)
        stack.push_async_callback(cfg.redis_client.aclose)
    return cfg


def our_pids(cfgs: list[Config]) -> list[int]:
    """This benchmark's processes: what "others' CPU" leaves out."""
    ours = [os.getpid()]
    for cfg in cfgs:
        for pids in cfg.node_pids():
            ours += pids
        ours += cfg.redis_pids() + [c.pid for c in cfg.clients]
    return ours


# Running.


async def connect_and_warm(
    cfgs: list[Config], n: int, args: argparse.Namespace, ours: list[int]
) -> None:
    """Bring every configuration to ``n`` subscribers (all at once), then warm each up and size K."""

    async def connect(cfg: Config) -> float:
        t0 = time.perf_counter()
        await asyncio.gather(
            *(
                client.connect(node, share - have, concurrency=CONNECT_CONCURRENCY)
                for client, node, share, have in zip(
                    cfg.clients, cfg.subscribe_on, cfg.shares(n), cfg.have, strict=True
                )
                if share > have
            )
        )
        cfg.have = cfg.shares(n)
        return time.perf_counter() - t0

    connect_secs = await asyncio.gather(*(connect(cfg) for cfg in cfgs))
    closed = closed_loop(args.window)
    for cfg, connect_s in zip(cfgs, connect_secs, strict=True):
        # Warm caches and buffers; size K for about `duration` seconds a repetition.
        warm = await one_rep(cfg, n, max(5, 20_000 // n), closed, 60, ours)
        cfg.k = max(6, min(3000, round(warm.rate * args.duration / n)))
        print(
            f"{LABELS[cfg.name]:22} N={n:>6,}: connected in {connect_s:4.1f} s "
            f"(all configurations at once), warm-up {fmt_int(warm.rate):>8} "
            f"deliveries/s -> K={cfg.k}"
            + ("" if warm.done else f"  LOST {warm.deliveries - warm.count:,}"),
            flush=True,
        )


async def run_size(cfgs: list[Config], n: int, args: argparse.Namespace, ours: list[int]) -> None:
    """Both phases at ``n`` subscribers: the closed loop, then paced at ``--pace`` of the lowest."""
    await connect_and_warm(cfgs, n, args, ours)
    timeout = max(20.0, 15 * args.duration)
    await run_phase(cfgs, "closed", n, closed_loop(args.window), None, timeout, args, ours)
    if args.pace <= 0:
        return
    lowest = min(
        summarize(cfg.reps[("closed", n)])["publish_rate"]
        for cfg in cfgs
        if cfg.reps.get(("closed", n))
    )
    rate = args.pace * lowest
    k_paced = max(10, round(rate * args.paced_duration))
    print(
        f"paced at {rate:,.1f} messages/s ({args.pace:g} x {lowest:,.1f}), "
        f"{rate * n:,.0f} deliveries/s, K={k_paced}",
        flush=True,
    )
    await run_phase(cfgs, "paced", n, paced(rate), k_paced, args.paced_duration + 30, args, ours)


# Report.


def print_results(cfgs: list[Config], sizes: list[int]) -> None:
    cpus = os.cpu_count() or 0
    headers = [
        "configuration",
        "N",
        "subscribers per node",
        "K x reps",
        "messages/s",
        "deliveries/s",
        "server CPU µs/delivery (all nodes)",
        "Redis CPU µs/delivery",
        "deliveries per socket write",
        "server CPU",
        "servers waited for a CPU",
        "Redis CPU",
        "client CPU",
        "machine CPU",
        "others' CPU",
        "last message: sent → last frame counted (ms)",
        "loss (notes)",
    ]
    for phase, title in PHASES.items():
        print(f"\n## {title[0].upper() + title[1:]}: medians, range of deliveries/s in brackets\n")
        rows = [
            phase_row(cfg, phase, n, cpus)
            for n in sizes
            for cfg in cfgs
            if cfg.reps.get((phase, n))
        ]
        print(table(headers, rows))
    print(
        "\n'server CPU' and 'servers waited' sum every node of the configuration (above 100%: more"
        " than one core); 'machine CPU' is the whole machine's busy time, 'others' CPU' the part of"
        " it not spent by this benchmark's processes. 'deliveries per socket write': frames counted"
        " ÷ write system calls of the nodes with subscribers (/proc/<pid>/io syscw; REST answers"
        " and Redis commands count as writes too)."
    )
    print_through_redis(cfgs, sizes)
    print_ratios(cfgs, sizes)
    print(
        f"\nThis machine has {cpus} CPUs: the three nodes, Redis, the load clients and the"
        " publisher share them, so the cluster's deliveries/s here measure the cost of the"
        " cross-node hop, not scale-out. CPU per delivery at the same rate (paced) is the figure"
        " that carries over: on separate machines each subscribing node does its share of the"
        " fan-out on its own core(s)."
    )


def phase_row(cfg: Config, phase: str, n: int, cpus: int) -> list[str]:
    """One configuration at ``n`` in one phase: medians of its repetitions, and loss notes."""
    s = summarize(cfg.reps[(phase, n)])
    return [
        LABELS[cfg.name],
        f"{n:,}",
        " + ".join(f"{x:,}" for x in cfg.shares(n)),
        f"{s['k']:.0f} x {s['reps']:.0f}",
        fmt_int(s["publish_rate"]),
        f"{fmt_int(s['rate'])} [{fmt_int(s['rate_lo'])}–{fmt_int(s['rate_hi'])}]",
        f"{s['us']:.2f}",
        "—" if cfg.redis is None else f"{s['redis_us']:.3f}",
        f"{s['per_write']:.1f}",
        pct(s["server_util"]),
        pct(s["server_wait"]),
        "—" if cfg.redis is None else pct(s["redis_util"]),
        pct(s["client_util"]),
        f"{pct(s['machine_util'])} of {100 * cpus}%",
        pct(s["others_util"]),
        f"{s['lag_ms']:.1f}",
        loss_note(cfg.reps[(phase, n)], cfg.discarded.get((phase, n), 0), "disturbed"),
    ]


def print_through_redis(cfgs: list[Config], sizes: list[int]) -> None:
    """What went through Redis, for the configurations on Redis: messages, commands, CPU."""
    rows = []
    for phase in PHASES:
        for n in sizes:
            for cfg in cfgs:
                reps = cfg.reps.get((phase, n))
                if cfg.redis is None or not reps:
                    continue
                s = summarize(reps)
                nodes = len(cfg.nodes)
                rows.append(
                    [
                        PHASES[phase],
                        LABELS[cfg.name],
                        f"{n:,}",
                        fmt_int(s["publish_rate"]),
                        fmt_int(s["publish_rate"] * len(cfg.subscribe_on)),
                        f"{s['commands']:.2f} ({commands_per_message(reps)})",
                        f"{s['redis_us_per_message']:.1f}",
                        f"{s['first_node_us_per_message']:.0f}" if nodes > 1 else "—",
                        f"{s['other_nodes_us']:.2f}" if nodes > 1 else "—",
                    ]
                )
    if rows:
        print("\n## Through Redis\n")
        print(
            table(
                [
                    "phase",
                    "configuration",
                    "N",
                    "messages/s published through Redis",
                    "events/s out of Redis (one per node with subscribers)",
                    "Redis commands per message",
                    "Redis CPU µs per message",
                    "node A CPU µs per message",
                    "nodes B+C CPU µs/delivery",
                ],
                rows,
            )
        )
        print(
            "\nRedis sends each message to the nodes with sockets on its channel (B and C; since"
            " the topic per channel of issue 20.1 not to A, which used to decode its own copy and"
            " drop it). Node A's CPU per message is its REST handler, the store reads and the"
            " PUBLISH."
            " Commands are Redis's own counts (INFO commandstats) over the repetitions."
        )


def print_ratios(cfgs: list[Config], sizes: list[int]) -> None:
    """The cluster ÷ each single node, by rate and by CPU per delivery, per phase and N."""
    by_name = {cfg.name: cfg for cfg in cfgs}
    cluster = by_name.get("cluster")
    rows = []
    for phase in PHASES:
        for n in sizes:
            if cluster is None or not cluster.reps.get((phase, n)):
                continue
            c = summarize(cluster.reps[(phase, n)])
            for other in ("single", "redis"):
                if other not in by_name or not by_name[other].reps.get((phase, n)):
                    continue
                o = summarize(by_name[other].reps[(phase, n)])
                rows.append(
                    [
                        PHASES[phase],
                        f"{n:,}",
                        LABELS[other],
                        f"{c['rate'] / o['rate']:.2f}" if phase == "closed" else "(same rate)",
                        f"{c['us'] / o['us']:.2f}",
                        f"{c['total_us'] / o['total_us']:.2f}",
                    ]
                )
    if rows:
        print("\n## Ratios: cluster A→B,C ÷ one node\n")
        print(
            table(
                [
                    "phase",
                    "N",
                    "cluster ÷",
                    "by deliveries/s (below 1: slower)",
                    "by server CPU per delivery (above 1: costs more)",
                    "by server + Redis CPU per delivery",
                ],
                rows,
            )
        )


async def main() -> int:
    cmd = command()
    args = cmd.parse()
    names = args.configs
    redis_bin = shutil.which(args.redis_server)
    if redis_bin is None and any(name != "single" for name in names):
        print(f"{args.redis_server} not found: only the single node is measured")
        names = [name for name in names if name == "single"]
    # The nodes get exactly the flags below, not a Redis URL or a data dir from the environment.
    for key in [k for k in os.environ if k.startswith("SWITCHBOARD_")]:
        del os.environ[key]
    if args.layout == "spread":
        if redis_bin is None:
            print(f"{args.redis_server} not found: the spread layout needs it")
            return 1
        header("Cluster benchmark: many channels, each on one node")
        spread_report.print_spread(await spread.run_spread(args, redis_bin), args)
        return 0

    cpus = os.cpu_count() or 0
    header("Cross-node fan-out benchmark")
    print(
        f"Sizes {args.sizes} subscribers in total; closed loop: {args.reps} repetition(s) of ~{args.duration} s,"
        f" {args.window} publishes in flight; paced: {args.reps} repetition(s) of {args.paced_duration} s at"
        f" {args.pace:g} x the lowest closed-loop rate; round-robin across configurations."
    )
    if cpus <= 4:
        print(
            f"Note: {cpus} CPUs. The cluster's three nodes, its Redis, two load clients and the"
            " publisher share them: its figure measures the cross-node overhead, not scale-out."
        )
    print()

    cfgs: list[Config] = []
    with Servers() as servers:
        async with contextlib.AsyncExitStack() as stack:
            # Starting servers and opening connections is not measured: do it concurrently.
            cfgs = list(
                await asyncio.gather(
                    *(make_config(name, servers, stack, redis_bin, args.window) for name in names)
                )
            )
            ours = our_pids(cfgs)
            for n in args.sizes:
                await run_size(cfgs, n, args, ours)
    print_results(cfgs, args.sizes)
    return 0


if __name__ == "__main__":
    run_main(main)
