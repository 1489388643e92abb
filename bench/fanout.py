"""Fan-out: N connections on one channel, ~100-byte messages published through each server's API.

    .venv/bin/python bench/fanout.py [--quick] [--sizes 1000,5000] [--peers switchboard,floor,...]
                                     [--reps 3] [--duration 1.0] [--window 4] [--max-wait 0.15]
                                     [--retries 1] [--profile [--native]]

The cost of metrics (issue 11): ``--peers switchboard,switchboard-metrics`` runs a second node
with ``--metrics`` whose ``/metrics`` this process scrapes every second during the run; the
repetitions alternate (off, on, off, on) and a last table gives on ÷ off, paired per round.

Every server (Switchboard and its peers) is started in this run and gets its own load client,
a separate process that opens N connections and subscribes them. A warm-up sizes K (messages
per repetition) for about ``--duration`` seconds; then each repetition publishes K messages
through the server's HTTP API with ``--window`` requests in flight (a closed loop: the server
sets the pace) and stops the clock when the client has counted N*K frames (or reports the
loss after a timeout). Repetitions run round-robin across the servers, so a change in the
machine's background load hits every server alike, and a repetition in which the server
spent more than ``--max-wait`` of the time runnable but waiting for a CPU (another process
had it; from /proc/<pid>/task/*/schedstat) is re-run, up to ``--retries`` times, and counted.

Reported per server and N, medians of the repetitions: deliveries per second (wall clock,
first publish to last frame counted), server CPU microseconds per delivery (utime + stime of
the server's processes from /proc/<pid>/stat over the same span), the server's and the load
client's CPU use (who was the bottleneck), deliveries per write system call (frames counted ÷
the server's write/writev calls from /proc/<pid>/io, its HTTP answers included: how much
write coalescing happened; n/a for servers that send with send()), then the ratios of issue
5's targets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

from _cli import Command, comma_ints, run_main
from _fanout import Live, Rep, one_rep, summarize, warm_up
from _http_load import HttpPool
from _loadclient_driver import LoadClient
from _metrics_scraper import SCRAPE_INTERVAL_S, SCRAPERS, stop_scraping
from _profile import profile_during
from _report import fmt_int, header, loss_note, median, table
from _servers import Servers
from _targets import LABELS, STARTERS, missing_peer

PEERS = [
    "switchboard",
    "python-socketio",
    "socket.io-node",
    "soketi",
    "websockets",
    "floor",
    "floor-batched",
]
TARGETS = {"python-socketio": 5.0, "websockets": 1.2, "floor": 0.7}
"""Issue 5: Switchboard's deliveries/s at least this many times the peer's."""
WRITES_UNCOUNTED = {"soketi"}
"""Servers whose socket writes are send()/sendmsg() calls, which /proc/<pid>/io's syscw
(write and writev only) does not count: uWebSockets sends with send()."""
NODE_TARGET = 1.3
"""Issue 5: at least 1.3x the better of soketi and Socket.IO on Node."""


def command() -> Command:
    cmd = Command(__doc__, quick="1,000 connections, one repetition (~20 s)")
    cmd.option(
        "--sizes",
        "connection counts, comma-separated",
        [1000, 5000],
        quick=[1000],
        type=comma_ints,
    )
    cmd.names(
        "--peers",
        "servers to run, comma-separated",
        PEERS,
        allowed=list(STARTERS),
        what="peer",
    )
    cmd.option("--reps", "repetitions per size", 3, quick=1, type=int)
    cmd.option("--duration", "seconds per repetition", 1.0, quick=0.6, type=float)
    cmd.option("--window", "publish requests in flight", 4, type=int)
    cmd.option(
        "--max-wait",
        "re-run a repetition in which the server waited for a CPU more than this share of the time",
        0.15,
        type=float,
    )
    cmd.retries()
    cmd.option(
        "--client-nap-ms",
        "the load client sleeps this long per loop turn while counting, to batch reads",
        0.0,
        type=float,
    )
    cmd.profile("py-spy Switchboard at the largest N afterwards")
    return cmd


# Running.


async def start_lives(
    servers: Servers,
    stack: contextlib.AsyncExitStack,
    args: argparse.Namespace,
    skipped: dict[str, str],
) -> list[Live]:
    """Every server that can run here, with its own load client and publishing pool."""
    runnable = []
    for name in args.peers:
        why = missing_peer(name)
        if why:
            skipped[name] = why
            print(f"{LABELS[name]}: skipped ({why})")
        else:
            runnable.append(name)
    # Starting servers and opening connections is not measured: do it concurrently.
    targets = await asyncio.gather(*(STARTERS[name](servers) for name in runnable))
    lives = []
    for name, target in zip(runnable, targets, strict=True):
        client = await stack.enter_async_context(LoadClient())
        pool = await stack.enter_async_context(HttpPool(target.pub_port, args.window))
        pids = target.server.pids()
        lives.append(Live(name, target, client, pool, pids, nap_ms=args.client_nap_ms))
    return lives


async def connect_and_warm(lives: list[Live], n: int, args: argparse.Namespace) -> None:
    """Bring every server to ``n`` connections (all at once), then warm each up and size K."""

    async def connect(live: Live) -> float:
        t0 = time.perf_counter()
        await live.client.connect(live.target, n - live.have)
        live.have = n
        return time.perf_counter() - t0

    connect_secs = await asyncio.gather(*(connect(live) for live in lives))
    for live, connect_s in zip(lives, connect_secs, strict=True):
        warm = await warm_up(live, n, args.duration, args.window)
        live.reps[n] = []
        print(
            f"{LABELS[live.name]:30} N={n:>6,}: connected in {connect_s:4.1f} s (all servers at once), "
            f"warm-up {fmt_int(warm.rate):>8} deliveries/s -> K={live.k}",
            flush=True,
        )


async def run_reps(lives: list[Live], n: int, args: argparse.Namespace) -> None:
    """``--reps`` rounds, one repetition of every server per round; a contended one is re-run."""
    for i in range(args.reps):
        for live in lives:
            runs = live.reps[n]
            if runs and not runs[-1].done:
                continue  # lost messages once: don't pile up more
            for attempt in range(1 + args.retries):
                rep = await one_rep(live, n, live.k, args.window, max(20.0, 15 * args.duration))
                contended = rep.server_wait / rep.secs > args.max_wait
                last = attempt == args.retries
                print_rep(i, live, rep, discarded=contended and rep.done and not last)
                if not contended or not rep.done or last:
                    break
                live.discarded[n] = live.discarded.get(n, 0) + 1
            runs.append(rep)


def print_rep(i: int, live: Live, rep: Rep, *, discarded: bool) -> None:
    print(
        f"  rep {i + 1} {LABELS[live.name]:30} {fmt_int(rep.rate):>9} deliveries/s, "
        f"{rep.us_per_delivery:6.2f} CPU µs/delivery, "
        f"server CPU {100 * rep.server_cpu / rep.secs:3.0f}% "
        f"(waited {100 * rep.server_wait / rep.secs:3.0f}%), "
        f"client CPU {100 * rep.client_cpu / rep.secs:3.0f}%"
        + ("" if rep.done else f"  LOST {rep.deliveries - rep.count:,}")
        + (" — contended, discarded" if discarded else ""),
        flush=True,
    )


async def profile_switchboard(live: Live, n: int, seconds: float, window: int, native: bool) -> str:
    """py-spy the server through a longer fan-out run; return the top frames as text."""
    warm = await one_rep(live, n, max(5, 40_000 // n), window, 60)
    k = max(10, round(warm.rate * (seconds + 2) / n))
    return await profile_during(
        live.target.server.pid,
        seconds,
        native,
        lambda: one_rep(live, n, k, window, 120),
        file_name="fanout.collapsed.txt",
        what=f"fan-out to {n:,} sockets",
    )


# Report.


def print_results(lives: list[Live], skipped: dict[str, str], sizes: list[int]) -> None:
    print("\n## Results (median of the repetitions; range of deliveries/s in brackets)\n")
    headers = [
        "server",
        "N",
        "K x reps",
        "deliveries/s",
        "server CPU µs/delivery",
        "deliveries per server CPU-s",
        "server CPU",
        "server waited for a CPU",
        "client CPU",
        "deliveries per write",
        "frame bytes",
        "loss (notes)",
    ]
    print(table(headers, [row for n in sizes for row in result_rows(lives, n)]))
    for name, why in skipped.items():
        print(f"\nSkipped {LABELS[name]}: {why}")

    print("\n## Ratios: Switchboard ÷ peer, against issue 5's targets\n")
    headers = [
        "N",
        "Switchboard ÷",
        "by deliveries/s",
        "by CPU per delivery",
        "target (deliveries/s)",
    ]
    print(table(headers, [row for n in sizes for row in ratio_rows(lives, n)]))
    print(
        "\n'by CPU per delivery' = peer µs ÷ Switchboard µs per delivery (above 1: Switchboard spends less CPU)."
        "\nIt is the steadier figure when the machine is shared or the client, not the server, set the pace."
    )


def result_rows(lives: list[Live], n: int) -> list[list[str]]:
    """One row per server at ``n`` connections: medians and the loss notes."""
    rows = []
    for live in lives:
        reps = live.reps.get(n)
        if not reps:
            continue
        s = summarize(reps)
        rows.append(
            [
                LABELS[live.name],
                f"{n:,}",
                f"{s['k']:.0f} x {s['reps']:.0f}",
                f"{fmt_int(s['rate'])} [{fmt_int(s['rate_lo'])}–{fmt_int(s['rate_hi'])}]",
                f"{s['us']:.2f}",
                fmt_int(1e6 / s["us"]),
                f"{100 * s['server_util']:.0f}%",
                f"{100 * s['server_wait']:.0f}%",
                f"{100 * s['client_util']:.0f}%",
                "n/a"
                if live.name in WRITES_UNCOUNTED or not s["per_write"]
                else f"{s['per_write']:.1f}",
                str(live.target.wire_bytes),
                loss_note(reps, live.discarded.get(n, 0), "contended"),
            ]
        )
    return rows


def ratio_rows(lives: list[Live], n: int) -> list[list[str]]:
    """Switchboard ÷ every peer at ``n`` connections, by rate and by CPU, against the targets."""
    by_name = {live.name: live for live in lives}
    sb_live = by_name.get("switchboard")
    if sb_live is None or not sb_live.reps.get(n):
        return []
    sb = summarize(sb_live.reps[n])
    peers = {
        p: summarize(by_name[p].reps[n])
        for p in PEERS[1:]
        if p in by_name and by_name[p].reps.get(n)
    }
    lines: list[tuple[str, dict[str, float], float | None]] = [
        (LABELS[p], s, TARGETS.get(p)) for p, s in peers.items()
    ]
    node = [(peers[p]["rate"], p) for p in ("socket.io-node", "soketi") if p in peers]
    if node:
        best = max(node)[1]
        label = f"the better of soketi and Socket.IO on Node ({LABELS[best]})"
        lines.append((label, peers[best], NODE_TARGET))
    rows = []
    for label, s_peer, goal in lines:
        by_rate = sb["rate"] / s_peer["rate"]
        by_cpu = s_peer["us"] / sb["us"]
        verdict = "—"
        if goal is not None:
            verdict = f"≥ {goal:g}: " + ("met" if by_rate >= goal else "NOT met")
        rows.append([f"{n:,}", label, f"{by_rate:.2f}", f"{by_cpu:.2f}", verdict])
    return rows


def print_metrics_cost(lives: list[Live], sizes: list[int]) -> None:
    """On ÷ off for the node with --metrics, if both ran: overall medians, and per round."""
    by_name = {live.name: live for live in lives}
    off, on = by_name.get("switchboard"), by_name.get("switchboard-metrics")
    if off is None or on is None:
        return
    print("\n## Cost of metrics: --metrics (scraped every 1 s) ÷ off\n")
    rows = []
    for n in sizes:
        reps_off = [r for r in off.reps.get(n, []) if r.done]
        reps_on = [r for r in on.reps.get(n, []) if r.done]
        if not reps_off or not reps_on:
            continue
        # Round i ran off then on, back to back: their ratio cancels slow drifts of the
        # machine's background load.
        pairs = [b.rate / a.rate for a, b in zip(reps_off, reps_on, strict=False)]
        cpu_pairs = [
            b.us_per_delivery / a.us_per_delivery for a, b in zip(reps_off, reps_on, strict=False)
        ]
        rate_off, rate_on = median([r.rate for r in reps_off]), median([r.rate for r in reps_on])
        us_off = median([r.us_per_delivery for r in reps_off])
        us_on = median([r.us_per_delivery for r in reps_on])
        rows.append(
            [
                f"{n:,}",
                f"{fmt_int(rate_off)} / {fmt_int(rate_on)}",
                f"{rate_on / rate_off:.3f}",
                f"{median(pairs):.3f} [{min(pairs):.3f}–{max(pairs):.3f}]",
                f"{us_off:.2f} / {us_on:.2f}",
                f"{us_on / us_off:.3f}",
                f"{median(cpu_pairs):.3f} [{min(cpu_pairs):.3f}–{max(cpu_pairs):.3f}]",
                str(len(pairs)),
            ]
        )
    headers = [
        "N",
        "deliveries/s off / on (medians)",
        "on ÷ off",
        "per round: median [range]",
        "CPU µs/delivery off / on",
        "on ÷ off",
        "per round: median [range]",
        "rounds",
    ]
    print(table(headers, rows))
    for scraper in SCRAPERS:
        times = sorted(scraper.seconds)
        if times:
            print(
                f"\n/metrics scraped {len(times)} times ({scraper.failed} failed), "
                f"median {1000 * median(times):.1f} ms, max {1000 * times[-1]:.1f} ms, "
                f"{scraper.body_bytes:,} bytes"
            )
        for n, cpu in scraper.cpu_per_scrape.items():
            print(
                f"Server CPU per scrape with {n:,} idle sockets: {1000 * cpu:.2f} ms "
                f"(scraped every {SCRAPE_INTERVAL_S:g} s: {100 * cpu / SCRAPE_INTERVAL_S:.2f}% "
                "of one core)"
            )


async def main() -> int:
    args = command().parse()
    header("Fan-out benchmark")
    print(
        f"Sizes {args.sizes}, {args.reps} repetition(s) of ~{args.duration} s each, {args.window} publishes in flight, "
        "repetitions round-robin across servers.\n"
    )
    skipped: dict[str, str] = {}
    lives: list[Live] = []
    profile_text = ""
    with Servers() as servers:
        async with contextlib.AsyncExitStack() as stack:
            lives = await start_lives(servers, stack, args, skipped)
            for n in args.sizes:
                await connect_and_warm(lives, n, args)
                await run_reps(lives, n, args)
                for live in lives:
                    if live.name == "switchboard-metrics":
                        await SCRAPERS[0].measure_cpu(n, live.pids)
            if args.profile:
                for live in lives:
                    if live.name == "switchboard":
                        profile_text = await profile_switchboard(
                            live, args.sizes[-1], 8.0, args.window, args.native
                        )
    stop_scraping()
    print_results(lives, skipped, args.sizes)
    print_metrics_cost(lives, args.sizes)
    if profile_text:
        print(profile_text)
    return 0


if __name__ == "__main__":
    run_main(main)
