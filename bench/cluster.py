"""Fan-out across nodes: publish through node A, subscribers on nodes B and C, beside one node.

    .venv/bin/python bench/cluster.py [--quick] [--sizes 1000,5000] [--configs single,redis,cluster]
                                      [--reps 3] [--duration 1.0] [--window 4] [--pace 0.5]
                                      [--paced-duration 2.0] [--max-others 0.25] [--retries 1]

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from _cli import run_main
from _http_load import HttpPool
from _loadclient_driver import LoadClient
from _procs import (
    cpu_seconds,
    machine_busy_seconds,
    machine_summary,
    runqueue_wait_seconds,
    write_syscalls,
)
from _report import fmt_int, median, table
from _servers import HOST, ServerProc, Servers, start_redis
from _targets import Target, leap_publish_builder, payload, start_switchboard, switchboard_proc

CONFIGS = ["single", "redis", "cluster"]
LABELS = {
    "single": "single node",
    "redis": "single node on Redis",
    "cluster": "cluster A→B,C",
}
PHASES = {"closed": "closed loop (max)", "paced": "paced (same rate)"}
CONNECT_CONCURRENCY = 32
"""Handshakes in flight per load client. Nodes on Redis used to refuse a burst of more than ~100
IDENTIFY/SUBSCRIBE at once (redis-py's default pool); they now queue it on a blocking pool, but a
smaller burst still keeps the set-up phase gentle on this 2-core machine."""


# Servers.


async def join_node(servers: Servers, first: Target, url: str, name: str) -> Target:
    """Another ``switchboard serve`` on ``first``'s Redis: same project and token, its own port."""
    # "Store:" ends the banner of a node that joins: it makes no project of its own.
    server = await servers.start(
        switchboard_proc(name, extra=["--redis", url], ready_text="Store:")
    )
    build = leap_publish_builder(server.port, {"Authorization": first.info["ptk"]})
    return Target(
        name,
        server,
        {**first.ws, "port": server.port},
        server.port,
        build,
        first.wire_bytes,
        first.info,
    )


@dataclass
class Config:
    """One configuration under test: its nodes, its Redis, its load clients, its publishing pool."""

    name: str
    publish_to: Target
    nodes: list[Target]
    """Every node of the configuration, the one published to first."""
    subscribe_on: list[Target]
    clients: list[LoadClient]
    """One load client per node in ``subscribe_on``."""
    pool: HttpPool
    redis: ServerProc | None
    redis_client: Any = None
    have: list[int] = field(default_factory=list)
    k: int = 0
    reps: dict[tuple[str, int], list[Rep]] = field(default_factory=dict)
    """Repetitions by (phase, N)."""
    discarded: dict[tuple[str, int], int] = field(default_factory=dict)
    """Repetitions re-run because other work on the machine took too much CPU."""

    def node_pids(self) -> list[list[int]]:
        return [node.server.pids() for node in self.nodes]

    def subscriber_node_pids(self) -> list[int]:
        return [p for node in self.subscribe_on for p in node.server.pids()]

    def redis_pids(self) -> list[int]:
        return self.redis.pids() if self.redis is not None else []

    def shares(self, n: int) -> list[int]:
        """How many of the ``n`` subscribers each subscribing node gets."""
        m = len(self.subscribe_on)
        return [n // m + (1 if i < n % m else 0) for i in range(m)]

    async def redis_cpu(self) -> float:
        """Redis's own CPU time so far (INFO cpu: getrusage, microsecond resolution)."""
        if self.redis_client is None:
            return 0.0
        info = await self.redis_client.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    async def redis_calls(self) -> dict[str, int]:
        """Calls of every command but INFO served so far by this Redis, by name."""
        if self.redis_client is None:
            return {}
        stats = await self.redis_client.info("commandstats")
        return {
            k.removeprefix("cmdstat_"): int(v["calls"])
            for k, v in stats.items()
            if k.startswith("cmdstat_") and k != "cmdstat_info"
        }


@dataclass
class Rep:
    n: int
    k: int
    secs: float
    lag: float
    """Seconds from sending the last message to counting the last frame."""
    node_cpu: list[float]
    """CPU seconds of each node (``Config.nodes`` order)."""
    redis_cpu: float
    client_cpu: float
    server_wait: float
    machine_cpu: float
    others_cpu: float
    """Machine busy time not spent by this benchmark's processes."""
    writes: int
    """write/writev system calls of the nodes with subscribers."""
    count: int
    done: bool
    errors: int
    close_codes: dict[str, int]
    redis_calls: dict[str, int]
    """Redis commands served during the repetition, by name (INFO commandstats)."""

    @property
    def deliveries(self) -> int:
        return self.n * self.k

    @property
    def server_cpu(self) -> float:
        return sum(self.node_cpu)

    @property
    def rate(self) -> float:
        return self.count / self.secs

    @property
    def publish_rate(self) -> float:
        return self.k / self.secs

    @property
    def us_per_delivery(self) -> float:
        return self.server_cpu / max(1, self.count) * 1e6

    @property
    def redis_us_per_delivery(self) -> float:
        return self.redis_cpu / max(1, self.count) * 1e6


Publisher = Callable[[Config, int], Awaitable[tuple[dict[int, int], float]]]
"""Sends K messages to a configuration's publishing node; returns the HTTP statuses seen and
the time (``time.time()``) the last message was sent."""


def closed_loop(window: int) -> Publisher:
    """``window`` requests in flight: the next is sent when an answer comes back."""

    async def publish(cfg: Config, k: int) -> tuple[dict[int, int], float]:
        build = cfg.publish_to.build_publish
        statuses: dict[int, int] = {}
        next_seq = 0
        t_last = 0.0

        async def worker() -> None:
            nonlocal next_seq, t_last
            while next_seq < k:
                seq = next_seq
                next_seq += 1
                if seq == k - 1:
                    t_last = time.time()
                status, _ = await cfg.pool.request(build(payload(seq)))
                statuses[status] = statuses.get(status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(window)))
        return statuses, t_last

    return publish


def paced(rate: float) -> Publisher:
    """``rate`` messages per second, evenly spaced (open loop: the server does not set the pace)."""

    async def publish(cfg: Config, k: int) -> tuple[dict[int, int], float]:
        build = cfg.publish_to.build_publish
        loop = asyncio.get_running_loop()
        statuses: dict[int, int] = {}
        t_last = 0.0

        async def one(seq: int) -> None:
            nonlocal t_last
            if seq == k - 1:
                t_last = time.time()
            status, _ = await cfg.pool.request(build(payload(seq)))
            statuses[status] = statuses.get(status, 0) + 1

        tasks = []
        t0 = loop.time()
        for seq in range(k):
            delay = t0 + seq / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(seq)))
        await asyncio.gather(*tasks)
        return statuses, t_last

    return publish


async def one_rep(
    cfg: Config, n: int, k: int, publish: Publisher, timeout: float, ours: list[int]
) -> Rep:
    for client, share in zip(cfg.clients, cfg.shares(n), strict=True):
        await client.send({"cmd": "arm", "target": share * k, "timeout": timeout})
    for client in cfg.clients:
        await client.read(30)
    node_pids = cfg.node_pids()
    flat = [p for pids in node_pids for p in pids]
    writers = cfg.subscriber_node_pids()
    client_pids = [c.pid for c in cfg.clients]
    calls0 = await cfg.redis_calls()
    rcpu0 = await cfg.redis_cpu()
    ncpu0 = [cpu_seconds(p) for p in node_pids]
    ccpu0, wait0, writes0 = (
        cpu_seconds(client_pids),
        runqueue_wait_seconds(flat),
        write_syscalls(writers),
    )
    busy0, ours0 = machine_busy_seconds(), cpu_seconds(ours)
    t0 = time.time()
    statuses, t_sent = await publish(cfg, k)
    dones = await asyncio.gather(*(c.read(timeout + 30) for c in cfg.clients))
    busy1, ours1 = machine_busy_seconds(), cpu_seconds(ours)
    ncpu1 = [cpu_seconds(p) for p in node_pids]
    ccpu1, wait1, writes1 = (
        cpu_seconds(client_pids),
        runqueue_wait_seconds(flat),
        write_syscalls(writers),
    )
    rcpu1 = await cfg.redis_cpu()
    calls1 = await cfg.redis_calls()
    close_codes: dict[str, int] = {}
    for done in dones:
        for code, count in done.get("close_codes", {}).items():
            close_codes[code] = close_codes.get(code, 0) + count
    t_done = max(d["t_done"] for d in dones)
    return Rep(
        n,
        k,
        t_done - t0,
        t_done - t_sent,
        [b - a for a, b in zip(ncpu0, ncpu1, strict=True)],
        rcpu1 - rcpu0,
        ccpu1 - ccpu0,
        wait1 - wait0,
        busy1 - busy0,
        max(0.0, (busy1 - busy0) - (ours1 - ours0)),
        writes1 - writes0,
        sum(d["count"] for d in dones),
        all(d["done"] for d in dones),
        sum(v for status, v in statuses.items() if status >= 300),
        close_codes,
        {k: v - calls0.get(k, 0) for k, v in calls1.items() if v > calls0.get(k, 0)},
    )


def summarize(reps: list[Rep]) -> dict[str, float]:
    good = [r for r in reps if r.done] or reps
    return {
        "rate": median([r.rate for r in good]),
        "rate_lo": min(r.rate for r in good),
        "rate_hi": max(r.rate for r in good),
        "us": median([r.us_per_delivery for r in good]),
        "redis_us": median([r.redis_us_per_delivery for r in good]),
        "total_us": median([r.us_per_delivery + r.redis_us_per_delivery for r in good]),
        "first_node_us_per_message": median([r.node_cpu[0] / r.k * 1e6 for r in good]),
        "other_nodes_us": median([sum(r.node_cpu[1:]) / max(1, r.count) * 1e6 for r in good]),
        "server_util": median([r.server_cpu / r.secs for r in good]),
        "redis_util": median([r.redis_cpu / r.secs for r in good]),
        "client_util": median([r.client_cpu / r.secs for r in good]),
        "server_wait": median([r.server_wait / r.secs for r in good]),
        "machine_util": median([r.machine_cpu / r.secs for r in good]),
        "others_util": median([r.others_cpu / r.secs for r in good]),
        "per_write": median([r.count / max(1, r.writes) for r in good]),
        "lag_ms": median([r.lag * 1e3 for r in good]),
        "publish_rate": median([r.publish_rate for r in good]),
        "commands": median([sum(r.redis_calls.values()) / r.k for r in good]),
        "redis_us_per_message": median([r.redis_cpu / r.k * 1e6 for r in good]),
        "k": good[0].k,
        "reps": len(good),
    }


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def commands_per_message(reps: list[Rep]) -> str:
    """Redis commands per published message, by name, over the repetitions without loss."""
    good = [r for r in reps if r.done] or reps
    messages = sum(r.k for r in good)
    calls: dict[str, int] = {}
    for r in good:
        for name, count in r.redis_calls.items():
            calls[name] = calls.get(name, 0) + count
    return ", ".join(
        f"{name.upper()} {count / messages:.2f}"
        for name, count in sorted(calls.items(), key=lambda kv: -kv[1])
        if count / messages >= 0.005
    )


def loss_note(cfg: Config, key: tuple[str, int]) -> str:
    reps = cfg.reps[key]
    loss = "none"
    bad = [r for r in reps if not r.done]
    if bad:
        r = bad[0]
        loss = f"LOST {r.deliveries - r.count:,} of {r.deliveries:,} (close codes {r.close_codes})"
    if cfg.discarded.get(key):
        loss += f" ({cfg.discarded[key]} disturbed runs re-run)"
    errors = sum(r.errors for r in reps)
    if errors:
        loss += f", {errors} publish errors"
    return loss


# Report.


def print_results(cfgs: list[Config], sizes: list[int]) -> None:
    cpus = os.cpu_count() or 0
    for phase, title in PHASES.items():
        print(f"\n## {title[0].upper() + title[1:]}: medians, range of deliveries/s in brackets\n")
        rows = []
        for n in sizes:
            for cfg in cfgs:
                reps = cfg.reps.get((phase, n))
                if not reps:
                    continue
                s = summarize(reps)
                rows.append(
                    [
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
                        loss_note(cfg, (phase, n)),
                    ]
                )
        print(
            table(
                [
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
                ],
                rows,
            )
        )
    print(
        "\n'server CPU' and 'servers waited' sum every node of the configuration (above 100%: more"
        " than one core); 'machine CPU' is the whole machine's busy time, 'others' CPU' the part of"
        " it not spent by this benchmark's processes. 'deliveries per socket write': frames counted"
        " ÷ write system calls of the nodes with subscribers (/proc/<pid>/io syscw; REST answers"
        " and Redis commands count as writes too)."
    )

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
                        fmt_int(s["publish_rate"] * nodes),
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
                    "events/s out of Redis (one per node)",
                    "Redis commands per message",
                    "Redis CPU µs per message",
                    "node A CPU µs per message",
                    "nodes B+C CPU µs/delivery",
                ],
                rows,
            )
        )
        print(
            "\nEvery node subscribes to the one events topic, so Redis sends each message to every"
            " node (A too, which decodes and drops it: none of its sockets care). Node A's CPU per"
            " message is its REST handler, the store reads, the PUBLISH and its own copy of the"
            " event. Commands are Redis's own counts (INFO commandstats) over the repetitions."
        )

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
    print(
        f"\nThis machine has {cpus} CPUs: the three nodes, Redis, the load clients and the"
        " publisher share them, so the cluster's deliveries/s here measure the cost of the"
        " cross-node hop, not scale-out. CPU per delivery at the same rate (paced) is the figure"
        " that carries over: on separate machines each subscribing node does its share of the"
        " fan-out on its own core(s)."
    )


async def run_phase(
    cfgs: list[Config],
    phase: str,
    n: int,
    reps: int,
    publish: Publisher,
    k: int | None,
    timeout: float,
    args: argparse.Namespace,
    ours: list[int],
) -> None:
    """Repetitions of one phase at one N, round-robin across the configurations (K: ``k`` or each
    configuration's own from its warm-up)."""
    for i in range(reps):
        for cfg in cfgs:
            runs = cfg.reps.setdefault((phase, n), [])
            if runs and not runs[-1].done:
                continue  # lost messages once: don't pile up more
            for attempt in range(1 + args.retries):
                rep = await one_rep(cfg, n, k or cfg.k, publish, timeout, ours)
                disturbed = rep.others_cpu / rep.secs > args.max_others
                last = attempt == args.retries
                print(
                    f"  {phase} rep {i + 1} {LABELS[cfg.name]:22} {fmt_int(rep.publish_rate):>6} msg/s "
                    f"{fmt_int(rep.rate):>9} deliveries/s, "
                    f"{rep.us_per_delivery:5.2f} server CPU µs/delivery"
                    + (
                        f" + {rep.redis_us_per_delivery:5.3f} Redis"
                        if cfg.redis is not None
                        else ""
                    )
                    + f", {rep.count / max(1, rep.writes):4.1f} per write, "
                    f"servers {100 * rep.server_cpu / rep.secs:3.0f}% "
                    f"(waited {100 * rep.server_wait / rep.secs:3.0f}%), "
                    f"clients {100 * rep.client_cpu / rep.secs:3.0f}%, "
                    f"others {100 * rep.others_cpu / rep.secs:3.0f}%"
                    + ("" if rep.done else f"  LOST {rep.deliveries - rep.count:,}")
                    + (" — disturbed, discarded" if disturbed and rep.done and not last else ""),
                    flush=True,
                )
                if not disturbed or not rep.done or last:
                    break
                cfg.discarded[(phase, n)] = cfg.discarded.get((phase, n), 0) + 1
            runs.append(rep)


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="400 subscribers, two short repetitions (~15 s)"
    )
    parser.add_argument(
        "--sizes",
        default=None,
        help="total subscribers per configuration, comma-separated (default 1000,5000)",
    )
    parser.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help=f"configurations to run (default: {','.join(CONFIGS)})",
    )
    parser.add_argument(
        "--reps",
        type=int,
        default=None,
        help="repetitions per size and phase (default 3; --quick 2)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds per closed-loop repetition (default 1.0; --quick 0.5)",
    )
    parser.add_argument(
        "--window", type=int, default=4, help="publish requests in flight (default 4)"
    )
    parser.add_argument(
        "--pace",
        type=float,
        default=0.5,
        help="paced phase: this share of the lowest closed-loop message rate at that N (default 0.5; 0 skips the phase)",
    )
    parser.add_argument(
        "--paced-duration",
        type=float,
        default=None,
        help="seconds per paced repetition (default 2.0; --quick 1.0)",
    )
    parser.add_argument(
        "--max-others",
        type=float,
        default=0.25,
        help="re-run a repetition in which other processes used more than this share of a CPU (default 0.25)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=1,
        help="re-runs allowed per repetition (default 1; 0 keeps every run)",
    )
    parser.add_argument(
        "--redis-server", default="redis-server", help="the redis-server binary to start"
    )
    args = parser.parse_args()
    sizes = sorted(
        int(x) for x in (args.sizes or ("400" if args.quick else "1000,5000")).split(",")
    )
    reps = args.reps or (2 if args.quick else 3)
    duration = args.duration or (0.5 if args.quick else 1.0)
    paced_duration = args.paced_duration or (1.0 if args.quick else 2.0)
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    for name in names:
        if name not in CONFIGS:
            parser.error(f"unknown configuration {name!r}; choose from {', '.join(CONFIGS)}")
    redis_bin = shutil.which(args.redis_server)
    if redis_bin is None and any(name != "single" for name in names):
        print(f"{args.redis_server} not found: only the single node is measured")
        names = [name for name in names if name == "single"]
    # The nodes get exactly the flags below, not a Redis URL or a data dir from the environment.
    for key in [k for k in os.environ if k.startswith("SWITCHBOARD_")]:
        del os.environ[key]

    cpus = os.cpu_count() or 0
    print(f"# Cross-node fan-out benchmark — {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"Machine: {machine_summary()}")
    print(
        f"Sizes {sizes} subscribers in total; closed loop: {reps} repetition(s) of ~{duration} s,"
        f" {args.window} publishes in flight; paced: {reps} repetition(s) of {paced_duration} s at"
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
            import redis.asyncio as aioredis

            async def make(name: str) -> Config:
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
                            join_node(servers, first, url, "switchboard B"),
                            join_node(servers, first, url, "switchboard C"),
                        )
                        nodes = [first, *others]
                        subscribe_on = list(others)
                clients = [await stack.enter_async_context(LoadClient()) for _ in subscribe_on]
                pool = await stack.enter_async_context(HttpPool(nodes[0].pub_port, args.window))
                cfg = Config(name, nodes[0], nodes, subscribe_on, clients, pool, rds)
                cfg.have = [0] * len(subscribe_on)
                if rds is not None:
                    cfg.redis_client = aioredis.Redis(host=HOST, port=rds.port)
                    stack.push_async_callback(cfg.redis_client.aclose)
                return cfg

            # Starting servers and opening connections is not measured: do it concurrently.
            cfgs = list(await asyncio.gather(*(make(name) for name in names)))
            ours = [os.getpid()]
            for cfg in cfgs:
                for pids in cfg.node_pids():
                    ours += pids
                ours += cfg.redis_pids() + [c.pid for c in cfg.clients]
            for n in sizes:

                async def connect(cfg: Config, n: int = n) -> float:
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
                    cfg.k = max(6, min(3000, round(warm.rate * duration / n)))
                    print(
                        f"{LABELS[cfg.name]:22} N={n:>6,}: connected in {connect_s:4.1f} s "
                        f"(all configurations at once), warm-up {fmt_int(warm.rate):>8} "
                        f"deliveries/s -> K={cfg.k}"
                        + ("" if warm.done else f"  LOST {warm.deliveries - warm.count:,}"),
                        flush=True,
                    )
                await run_phase(
                    cfgs,
                    "closed",
                    n,
                    reps,
                    closed,
                    None,
                    max(20.0, 15 * duration),
                    args,
                    ours,
                )
                if args.pace <= 0:
                    continue
                lowest = min(
                    summarize(cfg.reps[("closed", n)])["publish_rate"]
                    for cfg in cfgs
                    if cfg.reps.get(("closed", n))
                )
                rate = args.pace * lowest
                k_paced = max(10, round(rate * paced_duration))
                print(
                    f"paced at {rate:,.1f} messages/s ({args.pace:g} x {lowest:,.1f}), "
                    f"{rate * n:,.0f} deliveries/s, K={k_paced}",
                    flush=True,
                )
                await run_phase(
                    cfgs,
                    "paced",
                    n,
                    reps,
                    paced(rate),
                    k_paced,
                    paced_duration + 30,
                    args,
                    ours,
                )
    print_results(cfgs, sizes)
    return 0


if __name__ == "__main__":
    run_main(main)
