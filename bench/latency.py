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

from _cli import run_main
from _http_load import HttpPool
from _loadclient_driver import LoadClient
from _procs import cpu_seconds, machine_summary
from _report import fmt_int, median, table
from _servers import Servers
from _targets import STARTERS, missing_peer, payload

from fanout import LABELS, Live, one_rep, summarize, warm_up

P99_TARGET_MS = 25.0


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


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="500 connections, one short repetition (~15 s)"
    )
    parser.add_argument(
        "--connections", type=int, default=None, help="subscribers (default 1000; --quick 500)"
    )
    parser.add_argument(
        "--fraction", type=float, default=0.5, help="fraction of the max rate (default 0.5)"
    )
    parser.add_argument(
        "--seconds", type=float, default=None, help="seconds per repetition (default 5; --quick 3)"
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3; --quick 1)")
    parser.add_argument(
        "--servers", default="switchboard", help="comma-separated (default switchboard)"
    )
    parser.add_argument(
        "--pool", type=int, default=16, help="publisher HTTP connections (default 16)"
    )
    args = parser.parse_args()
    n = args.connections or (500 if args.quick else 1000)
    seconds = args.seconds or (3.0 if args.quick else 5.0)
    reps = args.reps or (1 if args.quick else 3)
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    for name in names:
        if name not in STARTERS:
            parser.error(f"unknown server {name!r}; choose from {', '.join(STARTERS)}")

    print(f"# Latency benchmark — {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"Machine: {machine_summary()}")
    print(
        f"{n:,} subscribers, {args.fraction:g} of the max fan-out rate, {reps} x {seconds:g} s.\n"
    )
    rows = []
    verdicts = []
    with Servers() as servers:
        for name in names:
            why = missing_peer(name)
            if why:
                print(f"{name}: skipped ({why})")
                continue
            target = await STARTERS[name](servers)
            async with contextlib.AsyncExitStack() as stack:
                client = await stack.enter_async_context(LoadClient())
                pool = await stack.enter_async_context(HttpPool(target.pub_port, 4))
                live = Live(name, target, client, pool, target.server.pids())
                await client.connect(target, n)
                await warm_up(live, n, 1.0, 4)
                max_reps = [
                    await one_rep(live, n, live.k, 4, 30) for _ in range(1 if args.quick else 3)
                ]
                s = summarize(max_reps)
                max_pubs = s["rate"] / n
                rate = args.fraction * max_pubs
                print(
                    f"{LABELS[name]}: max fan-out {fmt_int(s['rate'])} deliveries/s = {max_pubs:.1f} publishes/s "
                    f"to {n:,}; pacing at {rate:.1f} publishes/s",
                    flush=True,
                )
                paced_pool = await stack.enter_async_context(HttpPool(target.pub_port, args.pool))
                runs = []
                for i in range(reps):
                    run = await paced_run(live, n, rate, seconds, paced_pool)
                    runs.append(run)
                    print(
                        f"  rep {i + 1}: p50 {run.get('p50', float('nan')):.2f} ms, p99 {run.get('p99', float('nan')):.2f} ms, "
                        f"max {run.get('max', float('nan')):.2f} ms, {run['deliveries']:,}/{run['expected']:,} delivered, "
                        f"server CPU {100 * run['cpu_util']:.0f}%, "
                        f"load client CPU {100 * run['client_cpu_util']:.0f}%",
                        flush=True,
                    )
            target.server.stop()
            lost = sum(r["expected"] - r["deliveries"] for r in runs)
            p99 = median([r["p99"] for r in runs if "p99" in r])
            rows.append(
                [
                    LABELS[name],
                    f"{n:,}",
                    fmt_int(s["rate"]),
                    f"{rate:.1f} ({fmt_int(rate * n)} deliveries/s)",
                    f"{median([r['p50'] for r in runs if 'p50' in r]):.2f}",
                    f"{median([r['p90'] for r in runs if 'p90' in r]):.2f}",
                    f"{p99:.2f}",
                    f"{median([r['p999'] for r in runs if 'p999' in r]):.2f}",
                    f"{max(r.get('max', 0.0) for r in runs):.2f}",
                    f"{lost:,}",
                ]
            )
            verdicts.append(
                f"{LABELS[name]}: p99 {p99:.2f} ms at {args.fraction:g} of max "
                f"— target < {P99_TARGET_MS:g} ms: {'met' if p99 < P99_TARGET_MS else 'NOT met'}"
            )
    print("\n## Results (ms; medians of the repetitions, max of the maxima)\n")
    print(
        table(
            [
                "server",
                "N",
                "max deliveries/s",
                "paced publishes/s",
                "p50",
                "p90",
                "p99",
                "p99.9",
                "max",
                "lost",
            ],
            rows,
        )
    )
    print()
    for line in verdicts:
        print(line)
    return 0


if __name__ == "__main__":
    run_main(main)
