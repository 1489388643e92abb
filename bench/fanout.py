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
import collections
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _cli import run_main
from _http_load import HttpPool, run_closed_loop
from _loadclient_driver import LoadClient
from _procs import cpu_seconds, machine_summary, runqueue_wait_seconds, write_syscalls
from _report import fmt_int, median, table
from _servers import HOST, Servers
from _targets import STARTERS, Target, missing_peer, payload, start_switchboard

PEERS = [
    "switchboard",
    "python-socketio",
    "socket.io-node",
    "soketi",
    "websockets",
    "floor",
    "floor-batched",
]
LABELS = {
    "switchboard": "Switchboard",
    "python-socketio": "python-socketio (room emit)",
    "socket.io-node": "Socket.IO on Node (room emit)",
    "soketi": "soketi 1.6.1 (uWS)",
    "websockets": "websockets broadcast()",
    "floor": "floor (pre-built frame)",
    "floor-batched": "floor, one write per turn",
    "switchboard-redis": "Switchboard on Redis (node + Redis CPU)",
    "switchboard-metrics": "Switchboard --metrics, scraped every 1 s",
}
TARGETS = {"python-socketio": 5.0, "websockets": 1.2, "floor": 0.7}
"""Issue 5: Switchboard's deliveries/s at least this many times the peer's."""
WRITES_UNCOUNTED = {"soketi"}
"""Servers whose socket writes are send()/sendmsg() calls, which /proc/<pid>/io's syscw
(write and writev only) does not count: uWebSockets sends with send()."""
NODE_TARGET = 1.3
"""Issue 5: at least 1.3x the better of soketi and Socket.IO on Node."""


# Metrics on (issue 11): a node with --metrics, and a scraper of its /metrics.

SCRAPE_INTERVAL_S = 1.0


@dataclass
class Scraper:
    """GETs ``/metrics`` every :data:`SCRAPE_INTERVAL_S`, as Prometheus would, and times it."""

    port: int
    seconds: list[float] = field(default_factory=list)
    failed: int = 0
    body_bytes: int = 0
    cpu_per_scrape: dict[int, float] = field(default_factory=dict)
    """Server CPU seconds per scrape with N sockets connected and no traffic, by N."""

    async def scrape(self) -> None:
        request = f"GET /metrics HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
        t0 = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection(HOST, self.port)
            writer.write(request.encode())
            answer = await reader.read()  # to the server's close
            writer.close()
        except OSError:
            self.failed += 1
            return
        if answer.startswith(b"HTTP/1.1 200"):
            self.seconds.append(time.perf_counter() - t0)
            self.body_bytes = len(answer)
        else:
            self.failed += 1

    async def run(self) -> None:
        while True:
            await asyncio.sleep(SCRAPE_INTERVAL_S)
            await self.scrape()

    async def measure_cpu(self, n: int, pids: list[int], count: int = 100) -> None:
        """The server's CPU per scrape, back to back, with its N sockets idle."""
        cpu0 = cpu_seconds(pids)
        for _ in range(count):
            await self.scrape()
        self.cpu_per_scrape[n] = (cpu_seconds(pids) - cpu0) / count


SCRAPERS: list[Scraper] = []
_SCRAPE_TASKS: list[asyncio.Task[None]] = []


async def start_switchboard_metrics(servers: Servers) -> Target:
    target = await start_switchboard(servers, extra=["--metrics"])
    target.name = "switchboard-metrics"
    scraper = Scraper(target.pub_port)
    SCRAPERS.append(scraper)
    _SCRAPE_TASKS.append(asyncio.create_task(scraper.run()))
    return target


STARTERS["switchboard-metrics"] = start_switchboard_metrics


@dataclass
class Rep:
    n: int
    k: int
    secs: float
    server_cpu: float
    client_cpu: float
    server_wait: float
    """Seconds the server's threads were runnable but not running (another process had the CPU)."""
    count: int
    done: bool
    errors: int
    close_codes: dict[str, int]
    writes: int = 0
    """write/writev system calls the server made over the repetition (its replies included)."""

    @property
    def deliveries(self) -> int:
        return self.n * self.k

    @property
    def rate(self) -> float:
        return self.count / self.secs

    @property
    def us_per_delivery(self) -> float:
        return self.server_cpu / max(1, self.count) * 1e6


@dataclass
class Live:
    """One server under test, with its own load client and publishing pool."""

    name: str
    target: Target
    client: LoadClient
    pool: HttpPool
    pids: list[int]
    have: int = 0
    k: int = 0
    nap_ms: float = 0.0
    reps: dict[int, list[Rep]] = field(default_factory=dict)
    discarded: dict[int, int] = field(default_factory=dict)
    """Repetitions re-run because the server waited too long for a CPU."""


async def one_rep(live: Live, n: int, k: int, window: int, timeout: float) -> Rep:
    client = live.client
    await client.send(
        {"cmd": "arm", "target": n * k, "timeout": timeout, "throttle_ms": live.nap_ms}
    )
    await client.read(30)
    cpu0, ccpu0 = cpu_seconds(live.pids), cpu_seconds([client.pid])
    wait0 = runqueue_wait_seconds(live.pids)
    writes0 = write_syscalls(live.pids)
    t0 = time.time()
    build = live.target.build_publish
    _, statuses = await run_closed_loop(live.pool, k, lambda seq: build(payload(seq)), window)
    done = await client.read(timeout + 30)
    cpu1, ccpu1 = cpu_seconds(live.pids), cpu_seconds([client.pid])
    wait1 = runqueue_wait_seconds(live.pids)
    writes1 = write_syscalls(live.pids)
    return Rep(
        n,
        k,
        done["t_done"] - t0,
        cpu1 - cpu0,
        ccpu1 - ccpu0,
        wait1 - wait0,
        done["count"],
        done["done"],
        sum(v for status, v in statuses.items() if status >= 300),
        done.get("close_codes", {}),
        writes1 - writes0,
    )


async def warm_up(live: Live, n: int, duration: float, window: int) -> Rep:
    """Warm JITs, caches and buffers; size K for about ``duration`` seconds a repetition."""
    warm = await one_rep(live, n, max(5, 20_000 // n), window, 60)
    live.k = max(6, min(3000, round(warm.rate * duration / n)))
    return warm


def summarize(reps: list[Rep]) -> dict[str, float]:
    good = [r for r in reps if r.done] or reps
    return {
        "rate": median([r.rate for r in good]),
        "rate_lo": min(r.rate for r in good),
        "rate_hi": max(r.rate for r in good),
        "us": median([r.us_per_delivery for r in good]),
        "server_util": median([r.server_cpu / r.secs for r in good]),
        "client_util": median([r.client_cpu / r.secs for r in good]),
        "server_wait": median([r.server_wait / r.secs for r in good]),
        "per_write": median([r.count / r.writes if r.writes else 0.0 for r in good]),
        "k": good[0].k,
        "reps": len(good),
    }


# Profiling (py-spy).


def start_py_spy(
    pid: int, seconds: float, out: Path, native: bool
) -> subprocess.Popen[bytes] | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("\n--profile: py-spy is not installed (.venv/bin/pip install py-spy)")
        return None
    argv = [
        py_spy,
        "record",
        "-p",
        str(pid),
        "-d",
        str(int(seconds)),
        "-r",
        "250",
        "-f",
        "raw",
        "--gil",
        "-o",
        str(out),
    ]
    if native:
        argv.append("--native")
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def profile_switchboard(live: Live, n: int, seconds: float, window: int, native: bool) -> str:
    """py-spy the server through a longer fan-out run; return the top frames as text."""
    raw = Path(tempfile.mkdtemp(prefix="sb-bench-profile-")) / "fanout.collapsed.txt"
    warm = await one_rep(live, n, max(5, 40_000 // n), window, 60)
    k = max(10, round(warm.rate * (seconds + 2) / n))
    proc = start_py_spy(live.target.server.pid, seconds, raw, native)
    if proc is None:
        return ""
    await asyncio.sleep(0.5)
    await one_rep(live, n, k, window, 120)
    while proc.poll() is None:
        await asyncio.sleep(0.2)
    if not raw.exists():
        assert proc.stderr is not None
        return f"\n--profile: py-spy failed: {proc.stderr.read().decode()[-500:]}"
    return profile_report(raw, f"fan-out to {n:,} sockets")


def profile_report(raw: Path, what: str) -> str:
    """The top frames of a py-spy ``raw`` (collapsed stacks) file, by own and inclusive time."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    total = max(1, total)
    lines = [f"\n## py-spy profile of Switchboard: {what} ({total:,} samples; stacks in {raw})"]
    lines.append("\nTop frames by own time (where the CPU is):")
    lines += [f"  {100 * count / total:5.1f}%  {frame}" for frame, count in own.most_common(15)]
    lines.append("\nTop frames by inclusive time:")
    lines += [
        f"  {100 * count / total:5.1f}%  {frame}" for frame, count in inclusive.most_common(25)
    ]
    return "\n".join(lines)


# Report.


def print_results(lives: list[Live], skipped: dict[str, str], sizes: list[int]) -> None:
    print("\n## Results (median of the repetitions; range of deliveries/s in brackets)\n")
    rows = []
    for n in sizes:
        for live in lives:
            reps = live.reps.get(n)
            if not reps:
                continue
            s = summarize(reps)
            loss = "none"
            bad = [r for r in reps if not r.done]
            if bad:
                r = bad[0]
                loss = f"LOST {r.deliveries - r.count:,} of {r.deliveries:,} (close codes {r.close_codes})"
            if live.discarded.get(n):
                loss += f" ({live.discarded[n]} contended runs re-run)"
            errors = sum(r.errors for r in reps)
            if errors:
                loss += f", {errors} publish errors"
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
                    loss,
                ]
            )
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
    print(table(headers, rows))
    for name, why in skipped.items():
        print(f"\nSkipped {LABELS[name]}: {why}")

    print("\n## Ratios: Switchboard ÷ peer, against issue 5's targets\n")
    by_name = {live.name: live for live in lives}
    rows = []
    for n in sizes:
        sb_live = by_name.get("switchboard")
        if sb_live is None or not sb_live.reps.get(n):
            continue
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
            lines.append(
                (
                    f"the better of soketi and Socket.IO on Node ({LABELS[best]})",
                    peers[best],
                    NODE_TARGET,
                )
            )
        for label, s_peer, goal in lines:
            by_rate = sb["rate"] / s_peer["rate"]
            by_cpu = s_peer["us"] / sb["us"]
            verdict = "—"
            if goal is not None:
                verdict = f"≥ {goal:g}: " + ("met" if by_rate >= goal else "NOT met")
            rows.append([f"{n:,}", label, f"{by_rate:.2f}", f"{by_cpu:.2f}", verdict])
    print(
        table(
            [
                "N",
                "Switchboard ÷",
                "by deliveries/s",
                "by CPU per delivery",
                "target (deliveries/s)",
            ],
            rows,
        )
    )
    print(
        "\n'by CPU per delivery' = peer µs ÷ Switchboard µs per delivery (above 1: Switchboard spends less CPU)."
        "\nIt is the steadier figure when the machine is shared or the client, not the server, set the pace."
    )


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
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="1,000 connections, one repetition (~20 s)"
    )
    parser.add_argument(
        "--sizes", default=None, help="connection counts, comma-separated (default 1000,5000)"
    )
    parser.add_argument(
        "--peers", default=",".join(PEERS), help=f"servers to run (default: {','.join(PEERS)})"
    )
    parser.add_argument(
        "--reps", type=int, default=None, help="repetitions per size (default 3; --quick 1)"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds per repetition (default 1.0; --quick 0.6)",
    )
    parser.add_argument(
        "--window", type=int, default=4, help="publish requests in flight (default 4)"
    )
    parser.add_argument(
        "--max-wait",
        type=float,
        default=0.15,
        help="re-run a repetition in which the server waited for a CPU more than this share of the time (default 0.15)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=1,
        help="re-runs allowed per repetition (default 1; 0 keeps every run)",
    )
    parser.add_argument(
        "--client-nap-ms",
        type=float,
        default=0.0,
        help="the load client sleeps this long per loop turn while counting, to batch reads (default 0)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy Switchboard at the largest N afterwards"
    )
    parser.add_argument(
        "--native", action="store_true", help="with --profile: include native (C) frames"
    )
    args = parser.parse_args()
    sizes = sorted(
        int(x) for x in (args.sizes or ("1000" if args.quick else "1000,5000")).split(",")
    )
    reps = args.reps or (1 if args.quick else 3)
    duration = args.duration or (0.6 if args.quick else 1.0)
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    for p in peers:
        if p not in STARTERS:
            parser.error(f"unknown peer {p!r}; choose from {', '.join(PEERS)}")

    print(f"# Fan-out benchmark — {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"Machine: {machine_summary()}")
    print(
        f"Sizes {sizes}, {reps} repetition(s) of ~{duration} s each, {args.window} publishes in flight, "
        "repetitions round-robin across servers.\n"
    )
    skipped: dict[str, str] = {}
    lives: list[Live] = []
    profile_text = ""
    with Servers() as servers:
        async with contextlib.AsyncExitStack() as stack:
            runnable = []
            for name in peers:
                why = missing_peer(name)
                if why:
                    skipped[name] = why
                    print(f"{LABELS[name]}: skipped ({why})")
                else:
                    runnable.append(name)
            # Starting servers and opening connections is not measured: do it concurrently.
            targets = await asyncio.gather(*(STARTERS[name](servers) for name in runnable))
            for name, target in zip(runnable, targets, strict=True):
                client = await stack.enter_async_context(LoadClient())
                pool = await stack.enter_async_context(HttpPool(target.pub_port, args.window))
                pids = target.server.pids()
                lives.append(Live(name, target, client, pool, pids, nap_ms=args.client_nap_ms))
            for n in sizes:

                async def connect(live: Live, n: int = n) -> float:
                    t0 = time.perf_counter()
                    await live.client.connect(live.target, n - live.have)
                    live.have = n
                    return time.perf_counter() - t0

                connect_secs = await asyncio.gather(*(connect(live) for live in lives))
                for live, connect_s in zip(lives, connect_secs, strict=True):
                    warm = await warm_up(live, n, duration, args.window)
                    live.reps[n] = []
                    print(
                        f"{LABELS[live.name]:30} N={n:>6,}: connected in {connect_s:4.1f} s (all servers at once), "
                        f"warm-up {fmt_int(warm.rate):>8} deliveries/s -> K={live.k}",
                        flush=True,
                    )
                for i in range(reps):
                    for live in lives:
                        runs = live.reps[n]
                        if runs and not runs[-1].done:
                            continue  # lost messages once: don't pile up more
                        for attempt in range(1 + args.retries):
                            rep = await one_rep(
                                live, n, live.k, args.window, max(20.0, 15 * duration)
                            )
                            contended = rep.server_wait / rep.secs > args.max_wait
                            last = attempt == args.retries
                            print(
                                f"  rep {i + 1} {LABELS[live.name]:30} {fmt_int(rep.rate):>9} deliveries/s, "
                                f"{rep.us_per_delivery:6.2f} CPU µs/delivery, "
                                f"server CPU {100 * rep.server_cpu / rep.secs:3.0f}% "
                                f"(waited {100 * rep.server_wait / rep.secs:3.0f}%), "
                                f"client CPU {100 * rep.client_cpu / rep.secs:3.0f}%"
                                + ("" if rep.done else f"  LOST {rep.deliveries - rep.count:,}")
                                + (
                                    " — contended, discarded"
                                    if contended and rep.done and not last
                                    else ""
                                ),
                                flush=True,
                            )
                            if not contended or not rep.done or last:
                                break
                            live.discarded[n] = live.discarded.get(n, 0) + 1
                        runs.append(rep)
                for live in lives:
                    if live.name == "switchboard-metrics":
                        await SCRAPERS[0].measure_cpu(n, live.pids)
            if args.profile:
                for live in lives:
                    if live.name == "switchboard":
                        profile_text = await profile_switchboard(
                            live, sizes[-1], 8.0, args.window, args.native
                        )
    for task in _SCRAPE_TASKS:
        task.cancel()
    print_results(lives, skipped, sizes)
    print_metrics_cost(lives, sizes)
    if profile_text:
        print(profile_text)
    return 0


if __name__ == "__main__":
    run_main(main)
