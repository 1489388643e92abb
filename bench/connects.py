"""Connecting at scale on Redis: N token connections to one node, in waves (issue 20, item 4).

    .venv/bin/python bench/connects.py [--quick] [--connections 10000,50000] [--waves 10]
                                       [--window 16] [--concurrency 128] [--before-src PATH]

For each N: a fresh ``redis-server`` and one ``switchboard serve --redis`` node on it; N tokens
created through the REST API (``POST /v1/channels/tokens``, ``--window`` requests in flight);
the node's VmRSS once it settles; then a load client in its own process opens the N token
connections (HELLO -> IDENTIFY with the token -> INIT, no channel) in ``--waves`` waves of N ÷
waves, ``--concurrency`` connecting at a time within a wave. Per wave: connections per second,
CPU per connect of the node (utime + stime of its process tree) and of Redis, the others'
CPU (the machine's busy time less the node's, Redis's and the load client's: how disturbed
the wave was). Reported per N: the overall connect rate, CPU per connect in the first and the
last wave (the first and last tenth with 10 waves: flat means a connect costs the same at any
number of sockets), and RSS per connection ((VmRSS connected - VmRSS before) ÷ N, the node
alone; kernel socket buffers are not in it).

File descriptors: N sockets on each side, so the benchmark raises its hard RLIMIT_NOFILE to
N + 4096 when it may (CAP_SYS_RESOURCE) before starting anything, and every process of the
run inherits it; where it may not, N is bounded by the hard limit (the node holds N sockets
plus its Redis connections). Ports: one client address has ~28k ephemeral ports towards one
server port (``/proc/sys/net/ipv4/ip_local_port_range``), and the kernel finds a free one
more slowly as the range fills, so the load client binds its sockets round robin to
127.0.0.1, 127.0.0.2, ... (one address per 5,000 connections; all of 127/8 is loopback).

``--before-src PATH`` measures an older source tree's node after this one's, at every N (the
same steps, a fresh Redis): ``git worktree add /tmp/sb-pre-presence <commit>``; ``--after-src``
runs the measured node from another tree than this checkout (as ``cluster.py``'s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import time
from typing import Any

from _cli import Command, comma_ints, run_main
from _http_load import HttpPool
from _loadclient_driver import LoadClient
from _procs import cpu_seconds, machine_busy_seconds, raise_nofile, rss_bytes
from _report import fmt_int, header, table
from _servers import HOST, Servers, start_redis
from _spread import revision, source_dir
from _targets import Target, start_switchboard

PER_SOURCE = 5_000
"""Connections per client source address."""


def command() -> Command:
    cmd = Command(__doc__, quick="1,000 connections, 5 waves (~15 s)")
    cmd.option(
        "--connections", "numbers of connections", [10_000, 50_000], quick=[1000], type=comma_ints
    )
    cmd.option("--waves", "waves per N", 10, quick=5, type=int)
    cmd.option("--window", "token-creating REST requests in flight", 16, type=int)
    cmd.option("--concurrency", "connections opening at once", 128, type=int)
    cmd.option("--before-src", "an older source tree, measured after this one", "", note="none")
    cmd.option("--after-src", "run the measured node from this tree, not this checkout", "")
    return cmd


def raise_nofile_to(n: int) -> int:
    """Raise the hard and soft open-file limits to ``n`` if allowed; the soft limit after."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < n:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return raise_nofile()


async def create_tokens(target: Target, n: int, window: int) -> tuple[list[str], float]:
    """N tokens through the REST API; the tokens and the requests per second."""
    auth = {"Authorization": target.info["ptk"]}
    tokens: list[str] = []
    t0 = time.perf_counter()
    async with HttpPool(target.pub_port, window) as pool:
        sem = asyncio.Semaphore(window)

        async def token(i: int) -> None:
            async with sem:
                answer = await pool.json("POST", "/v1/channels/tokens", {"state": {"u": i}}, auth)
                tokens.append(answer["data"]["token"]["id"])

        await asyncio.gather(*(token(i) for i in range(n)))
    return tokens, n / (time.perf_counter() - t0)


async def settled_rss(pid: int, seconds: float = 5.0) -> int:
    """VmRSS once five readings 0.2 s apart differ by under 64 KiB (or after ``seconds``)."""
    readings: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        readings.append(rss_bytes(pid))
        if len(readings) >= 5 and max(readings[-5:]) - min(readings[-5:]) < 64 * 1024:
            break
        await asyncio.sleep(0.2)
    return sorted(readings[-5:])[len(readings[-5:]) // 2]


async def one_wave(
    target: Target, client: LoadClient, redis_pid: int, tokens: list[str], args: argparse.Namespace
) -> dict[str, float]:
    """Open one connection per token; its rate, CPU per connect and the machine's other CPU."""
    node = target.server.pids()
    sources = [f"127.0.0.{1 + i}" for i in range(max(1, -(-args.total // PER_SOURCE)))]
    spec: dict[str, Any] = {"host": HOST, **target.ws, "channel": None, "tokens": tokens}
    spec.update(sources=sources, concurrency=args.concurrency)
    c0 = (cpu_seconds(node), cpu_seconds([redis_pid]), cpu_seconds([client.pid]))
    busy0, t0 = machine_busy_seconds(), time.perf_counter()
    answer = await client.call({"cmd": "connect", "spec": spec, "n": len(tokens)}, timeout=900)
    secs = time.perf_counter() - t0
    c1 = (cpu_seconds(node), cpu_seconds([redis_pid]), cpu_seconds([client.pid]))
    used = [b - a for a, b in zip(c0, c1, strict=True)]
    ok = max(1, answer["ready"])
    return {
        "n": len(tokens),
        "ready": answer["ready"],
        "failed": answer["failed"],
        "errors": answer["errors"],
        "secs": secs,
        "rate": answer["ready"] / secs,
        "node_us": used[0] / ok * 1e6,
        "redis_us": used[1] / ok * 1e6,
        "node_util": used[0] / secs,
        "client_util": used[2] / secs,
        "others_util": max(0.0, (machine_busy_seconds() - busy0) - sum(used)) / secs,
    }


def print_wave(i: int, before: int, w: dict[str, Any]) -> None:
    print(
        f"  wave {i + 1:2} ({fmt_int(before)} -> {fmt_int(before + w['ready'])} open): "
        f"{fmt_int(w['rate']):>6} connects/s, node {w['node_us']:7.0f} µs + Redis "
        f"{w['redis_us']:5.0f} µs CPU per connect; node {100 * w['node_util']:3.0f}%, "
        f"client {100 * w['client_util']:3.0f}%, others {100 * w['others_util']:3.0f}%"
        + (f"; FAILED {w['failed']}: {w['errors'][:2]}" if w["failed"] else ""),
        flush=True,
    )


async def measure(
    servers: Servers, n: int, src: str | None, args: argparse.Namespace
) -> dict[str, Any]:
    """One node on a fresh Redis, N tokens, N connections in waves; the figures of the run."""
    redis = await start_redis(servers)
    url = f"redis://{HOST}:{redis.port}/0"
    target = await start_switchboard(servers, extra=["--redis", url], src=src)
    tokens, token_rate = await create_tokens(target, n, args.window)
    print(
        f"  {n:,} tokens created through the REST API at {fmt_int(token_rate)} requests/s",
        flush=True,
    )
    args.total = n
    rss0 = await settled_rss(target.server.pid)
    waves: list[dict[str, Any]] = []
    size = -(-n // args.waves)
    async with LoadClient() as client:
        t0 = time.perf_counter()
        for i, start in enumerate(range(0, n, size)):
            w = await one_wave(target, client, redis.pid, tokens[start : start + size], args)
            print_wave(i, start, w)
            waves.append(w)
        secs = time.perf_counter() - t0
        rss1 = await settled_rss(target.server.pid)
        status = await client.call({"cmd": "status"})
    target.server.stop()
    redis.stop()
    ready = sum(w["ready"] for w in waves)
    return {
        "n": n,
        "ready": ready,
        "open": status["open"],
        "rate": ready / secs,
        "secs": secs,
        "slope": slope_per_10k(waves),
        "first": waves[0],
        "last": waves[-1],
        "rss0": rss0,
        "rss1": rss1,
        "rss_per": (rss1 - rss0) / max(1, ready),
    }


def slope_per_10k(waves: list[dict[str, Any]]) -> float:
    """Least-squares slope of the node's CPU per connect (µs) against the sockets open at each
    wave's middle, per 10,000 sockets: 0 when a connect costs the same at any number."""
    xs, open_ = [], 0
    for w in waves:
        xs.append(open_ + w["ready"] / 2)
        open_ += w["ready"]
    ys = [w["node_us"] for w in waves]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return (
        0.0
        if var == 0
        else sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var * 1e4
    )


def result_row(code: str, r: dict[str, Any]) -> list[str]:
    first, last = r["first"], r["last"]
    return [
        code,
        f"{r['n']:,}",
        f"{r['ready']:,} ({r['open']:,} open at the end)",
        f"{fmt_int(r['rate'])} ({r['secs']:.1f} s)",
        f"{first['node_us']:.0f} + {first['redis_us']:.0f}",
        f"{last['node_us']:.0f} + {last['redis_us']:.0f}",
        f"{last['node_us'] / first['node_us']:.2f}",
        f"{r['slope']:+.0f}",
        f"{r['rss0'] / 2**20:.0f} -> {r['rss1'] / 2**20:.0f}",
        f"{r['rss_per'] / 1024:.1f}",
    ]


async def main() -> int:
    args = command().parse()
    limit = raise_nofile_to(max(args.connections) + 4096)
    if max(args.connections) + 200 > limit:
        print(f"open-file limit {limit:,}: too low for {max(args.connections):,} connections")
        return 1
    header("Connecting at scale on Redis")
    print(
        f"N = {', '.join(f'{n:,}' for n in args.connections)} token connections to one node on a fresh "
        f"redis-server, {args.waves} waves each, {args.concurrency} connecting at once; open-file limit {limit:,}.\n"
    )
    codes: dict[str, str | None] = {"after": source_dir(args.after_src)}
    if args.before_src:
        codes["before"] = source_dir(args.before_src)
    for code, src in codes.items():
        print(f"{code}: {revision(src)}")
    rows = []
    with Servers() as servers:
        for n in args.connections:
            for code, src in codes.items():
                print(f"\n{code}, N={n:,}:", flush=True)
                rows.append(result_row(code, await measure(servers, n, src, args)))
    print("\n## Results\n")
    headers = [
        "code",
        "N",
        "connected",
        "connects/s (all waves)",
        "first wave: node + Redis µs CPU per connect",
    ]
    headers += [
        "last wave: node + Redis µs",
        "last ÷ first (node)",
        "node µs per 10k open (fit)",
        "node RSS MiB",
        "KiB per connection",
    ]
    print(table(headers, rows))
    return 0


if __name__ == "__main__":
    run_main(main)
