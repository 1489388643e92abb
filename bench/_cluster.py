"""The cross-node fan-out's measuring parts: configurations, repetitions, publishers, medians.

``cluster.py`` starts the configurations and reports; here is what one configuration is
(``Config``: its nodes, its Redis, its load clients, its publishing pool), what one repetition
measured (``Rep``), how messages are published (``closed_loop``, ``paced``), one repetition
(``one_rep``), the repetitions of a phase round-robin with re-runs (``run_phase``) and their
medians (``summarize``).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from _http_load import HttpPool
from _loadclient_driver import LoadClient
from _procs import cpu_seconds, machine_busy_seconds, runqueue_wait_seconds, write_syscalls
from _report import fmt_int, median
from _servers import ServerProc
from _targets import Target, payload

CONFIGS = ["single", "redis", "cluster"]
LABELS = {
    "single": "single node",
    "redis": "single node on Redis",
    "cluster": "cluster A→B,C",
}
PHASES = {"closed": "closed loop (max)", "paced": "paced (same rate)"}


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

    async def send(self, seq: int) -> tuple[int, bytes]:
        """Publish message ``seq`` through the publishing node's REST API."""
        return await self.pool.request(self.publish_to.build_publish(payload(seq)))

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
    """What one repetition measured: K messages to N subscribers of one configuration."""

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


Send = Callable[[int], Awaitable[tuple[int, bytes]]]
"""Publishes message ``seq`` (a REST call) and returns its HTTP status and body."""
Publisher = Callable[[Send, int], Awaitable[tuple[dict[int, int], float]]]
"""Sends K messages with ``Send`` (``Config.send``: to a configuration's publishing node);
returns the HTTP statuses seen and the time (``time.time()``) the last message was sent."""


def closed_loop(window: int) -> Publisher:
    """``window`` requests in flight: the next is sent when an answer comes back."""

    async def publish(send: Send, k: int) -> tuple[dict[int, int], float]:
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
                status, _ = await send(seq)
                statuses[status] = statuses.get(status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(window)))
        return statuses, t_last

    return publish


def paced(rate: float) -> Publisher:
    """``rate`` messages per second, evenly spaced (open loop: the server does not set the pace)."""

    async def publish(send: Send, k: int) -> tuple[dict[int, int], float]:
        loop = asyncio.get_running_loop()
        statuses: dict[int, int] = {}
        t_last = 0.0

        async def one(seq: int) -> None:
            nonlocal t_last
            if seq == k - 1:
                t_last = time.time()
            status, _ = await send(seq)
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
    """Publish ``k`` messages with ``publish`` and wait for every load client's frames; CPU of
    the nodes, Redis and the clients, the machine's busy time and Redis's commands over the span."""
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
    statuses, t_sent = await publish(cfg.send, k)
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
    """Medians of the repetitions without loss (of all of them if every one lost frames)."""
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


async def run_phase(
    cfgs: list[Config],
    phase: str,
    n: int,
    publish: Publisher,
    k: int | None,
    timeout: float,
    args: argparse.Namespace,
    ours: list[int],
) -> None:
    """``--reps`` repetitions of one phase at one N, round-robin across the configurations (K:
    ``k`` or each configuration's own from its warm-up); a disturbed one is re-run."""
    for i in range(args.reps):
        for cfg in cfgs:
            runs = cfg.reps.setdefault((phase, n), [])
            if runs and not runs[-1].done:
                continue  # lost messages once: don't pile up more
            for attempt in range(1 + args.retries):
                rep = await one_rep(cfg, n, k or cfg.k, publish, timeout, ours)
                disturbed = rep.others_cpu / rep.secs > args.max_others
                last = attempt == args.retries
                print_rep(phase, i, cfg, rep, discarded=disturbed and rep.done and not last)
                if not disturbed or not rep.done or last:
                    break
                cfg.discarded[(phase, n)] = cfg.discarded.get((phase, n), 0) + 1
            runs.append(rep)


def print_rep(phase: str, i: int, cfg: Config, rep: Rep, *, discarded: bool) -> None:
    print(
        f"  {phase} rep {i + 1} {LABELS[cfg.name]:22} {fmt_int(rep.publish_rate):>6} msg/s "
        f"{fmt_int(rep.rate):>9} deliveries/s, "
        f"{rep.us_per_delivery:5.2f} server CPU µs/delivery"
        + (f" + {rep.redis_us_per_delivery:5.3f} Redis" if cfg.redis is not None else "")
        + f", {rep.count / max(1, rep.writes):4.1f} per write, "
        f"servers {100 * rep.server_cpu / rep.secs:3.0f}% "
        f"(waited {100 * rep.server_wait / rep.secs:3.0f}%), "
        f"clients {100 * rep.client_cpu / rep.secs:3.0f}%, "
        f"others {100 * rep.others_cpu / rep.secs:3.0f}%"
        + ("" if rep.done else f"  LOST {rep.deliveries - rep.count:,}")
        + (" — disturbed, discarded" if discarded else ""),
        flush=True,
    )
