"""Latency: REST publish -> receipt at every subscriber, at half the maximum fan-out rate.

    .venv/bin/python bench/latency.py [--quick] [--connections 1000] [--fraction 0.5]
                                      [--seconds 5] [--reps 3] [--servers switchboard]

One run: start the server, subscribe N connections (a load client in its own process), and
measure the maximum fan-out rate as bench/fanout.py does (closed loop, median of three).
Then publish at ``--fraction`` of that rate, evenly spaced, for ``--seconds`` per
repetition. Each message's ``d`` carries the time it was *scheduled* to be sent (so a
publisher that falls behind shows up as latency, not as fewer samples); the client
compares it with the time it read the frame, for every delivery to every connection.
Reports p50 / p90 / p99 / p99.9 / max (medians of the repetitions; max of the maxima)
against issue 5's target: p99 under 25 ms at half the maximum rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

from _cli import Command, run_main
from _fanout import Live, one_rep, summarize, warm_up
from _http_load import HttpPool
from _loadclient_driver import LoadClient
from _procs import cpu_seconds
from _report import fmt_int, header, median, table
from _servers import Servers
from _targets import LABELS, STARTERS, missing_peer, payload

P99_TARGET_MS = 25.0


def command() -> Command:
    cmd = Command(__doc__, quick="500 connections, one short repetition (~15 s)")
    cmd.option("--connections", "subscribers", 1000, quick=500, type=int)
    cmd.option("--fraction", "fraction of the max rate", 0.5, type=float)
    cmd.option("--seconds", "seconds per repetition", 5.0, quick=3.0, type=float)
    cmd.option("--reps", "repetitions", 3, quick=1, type=int)
    cmd.names(
        "--servers", "comma-separated", ["switchboard"], allowed=list(STARTERS), what="server"
    )
    cmd.option("--pool", "publisher HTTP connections", 16, type=int)
    return cmd


async def paced_run(
    live: Live, n: int, rate: float, seconds: float, pool: HttpPool
) -> dict[str, float]:
    """Publish ``rate`` messages per second for ``seconds``; return latency percentiles (ms)."""
    count = max(1, round(rate * seconds))
    client = live.client
    await client.send({"cmd": "arm", "target": n * count, "timeout": seconds + 30, "latency": True})
    await client.read(30)
    build = live.target.build_publish
    interval_ns = 1e9 / rate
    cpu0 = cpu_seconds(live.pids)
    client_cpu0 = cpu_seconds([client.pid])
    start_ns = time.time_ns() + 20_000_000
    pending: list[asyncio.Future[tuple[int, bytes]]] = []
    lag_max = 0.0
    for i in range(count):
        when = start_ns + int(i * interval_ns)
        delay = (when - time.time_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            lag_max = max(lag_max, -delay)
        pending.append(asyncio.ensure_future(pool.request(build(payload(i, when)))))
    statuses = await asyncio.gather(*pending)
    done = await client.read(seconds + 60)
    cpu1 = cpu_seconds(live.pids)
    client_cpu1 = cpu_seconds([client.pid])
    errors = sum(1 for status, _ in statuses if status >= 300)
    lat = done.get("latency_ms", {})
    return {
        "published": count,
        "rate": rate,
        "deliveries": done["count"],
        "expected": n * count,
        "errors": errors,
        "cpu_util": (cpu1 - cpu0) / ((done["t_done"] - start_ns / 1e9) or 1),
        "client_cpu_util": (client_cpu1 - client_cpu0) / ((done["t_done"] - start_ns / 1e9) or 1),
        "publisher_lag_ms": lag_max * 1000,
        **lat,
    }


async def measure(
    servers: Servers, name: str, args: argparse.Namespace
) -> tuple[float, float, list[dict[str, float]]]:
    """One server: its maximum fan-out rate, the rate paced at, and the paced runs."""
    n = args.connections
    target = await STARTERS[name](servers)
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(LoadClient())
        pool = await stack.enter_async_context(HttpPool(target.pub_port, 4))
        live = Live(name, target, client, pool, target.server.pids())
        await client.connect(target, n)
        await warm_up(live, n, 1.0, 4)
        max_reps = [await one_rep(live, n, live.k, 4, 30) for _ in range(1 if args.quick else 3)]
        max_rate = summarize(max_reps)["rate"]
        max_pubs = max_rate / n
        rate = args.fraction * max_pubs
        print(
            f"{LABELS[name]}: max fan-out {fmt_int(max_rate)} deliveries/s = {max_pubs:.1f} publishes/s "
            f"to {n:,}; pacing at {rate:.1f} publishes/s",
            flush=True,
        )
        paced_pool = await stack.enter_async_context(HttpPool(target.pub_port, args.pool))
        runs = []
        for i in range(args.reps):
            run = await paced_run(live, n, rate, args.seconds, paced_pool)
            runs.append(run)
            print(
                f"  rep {i + 1}: p50 {run.get('p50', float('nan')):.2f} ms, p99 {run.get('p99', float('nan')):.2f} ms, "
                f"max {run.get('max', float('nan')):.2f} ms, {run['deliveries']:,}/{run['expected']:,} delivered, "
                f"server CPU {100 * run['cpu_util']:.0f}%, "
                f"load client CPU {100 * run['client_cpu_util']:.0f}%",
                flush=True,
            )
    target.server.stop()
    return max_rate, rate, runs


def result_row(
    name: str, n: int, max_rate: float, rate: float, runs: list[dict[str, float]]
) -> list[str]:
    lost = sum(r["expected"] - r["deliveries"] for r in runs)
    return [
        LABELS[name],
        f"{n:,}",
        fmt_int(max_rate),
        f"{rate:.1f} ({fmt_int(rate * n)} deliveries/s)",
        f"{median([r['p50'] for r in runs if 'p50' in r]):.2f}",
        f"{median([r['p90'] for r in runs if 'p90' in r]):.2f}",
        f"{median([r['p99'] for r in runs if 'p99' in r]):.2f}",
        f"{median([r['p999'] for r in runs if 'p999' in r]):.2f}",
        f"{max(r.get('max', 0.0) for r in runs):.2f}",
        f"{lost:,}",
    ]


async def main() -> int:
    args = command().parse()
    n = args.connections
    header("Latency benchmark")
    print(
        f"{n:,} subscribers, {args.fraction:g} of the max fan-out rate, {args.reps} x {args.seconds:g} s.\n"
    )
    rows = []
    verdicts = []
    with Servers() as servers:
        for name in args.servers:
            why = missing_peer(name)
            if why:
                print(f"{name}: skipped ({why})")
                continue
            max_rate, rate, runs = await measure(servers, name, args)
            rows.append(result_row(name, n, max_rate, rate, runs))
            p99 = median([r["p99"] for r in runs if "p99" in r])
            verdicts.append(
                f"{LABELS[name]}: p99 {p99:.2f} ms at {args.fraction:g} of max "
                f"— target < {P99_TARGET_MS:g} ms: {'met' if p99 < P99_TARGET_MS else 'NOT met'}"
            )
    print("\n## Results (ms; medians of the repetitions, max of the maxima)\n")
    headers = ["server", "N", "max deliveries/s", "paced publishes/s"]
    print(table([*headers, "p50", "p90", "p99", "p99.9", "max", "lost"], rows))
    print()
    for line in verdicts:
        print(line)
    return 0


if __name__ == "__main__":
    run_main(main)
