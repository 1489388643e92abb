"""Idle connections: resident memory per identified connection at 10,000 connections.

    .venv/bin/python bench/memory.py [--quick] [--connections 10000] [--reps 3]
                                     [--peers websockets,floor]

Switchboard, ``--reps`` times (a fresh server each time): warm the server up (one REST call,
100 connections opened and closed), let it settle and read VmRSS from /proc/<pid>/status;
open N connections from a load client in its own process, each doing HELLO -> IDENTIFY
(no token) -> INIT, and read VmRSS again once it stops moving; then send every connection a
SUBSCRIBE to one shared channel, wait for the N AVAILABLE answers, read VmRSS a third time.

    per identified connection = (RSS identified - RSS before) / N
    per subscription          = (RSS subscribed - RSS identified) / N

Kernel socket buffers are not in RSS and are not counted (for the peers either). For scale,
the ``websockets`` server and the aiohttp floor (bench/peers/) hold N plain idle WebSockets,
once each. Target (issue 5): at most 16 KiB per idle identified connection (Centrifugo
publishes 27 KiB by default). Medians of the repetitions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from _cli import Command, run_main
from _loadclient_driver import LoadClient
from _procs import rss_bytes
from _report import header, median, table
from _servers import Servers
from _targets import CHANNEL, STARTERS, Target, missing_peer

TARGET_KIB = 16.0
PEER_LABELS = {
    "websockets": "websockets server, plain idle socket",
    "floor": "aiohttp floor, plain idle socket",
    "python-socketio": "python-socketio, connected + in a room",
    "socket.io-node": "Socket.IO on Node, connected + in a room",
    "soketi": "soketi, subscribed to a channel",
}


async def settle_rss(pid: int, seconds: float) -> int:
    """VmRSS once it stops moving (or after ``seconds``): the median of the last readings."""
    readings: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        readings.append(rss_bytes(pid))
        if len(readings) >= 5 and max(readings[-5:]) - min(readings[-5:]) < 64 * 1024:
            break
        await asyncio.sleep(0.2)
    return int(median(readings[-5:]))


async def baseline(target: Target, **extra: object) -> int:
    """Warm the server up (code paths, allocator pools), then its settled RSS."""
    async with LoadClient() as warm:
        await warm.connect(target, 100, **extra)
        await warm.call({"cmd": "close"})
    await asyncio.sleep(1.0)
    return await settle_rss(target.server.pid, 3.0)


async def measure_switchboard(servers: Servers, n: int) -> dict[str, float]:
    target = await STARTERS["switchboard"](servers)
    try:
        pid = target.server.pid
        before = await baseline(target, channel=None)
        async with LoadClient() as client:
            t0 = time.perf_counter()
            await client.connect(target, n, channel=None)
            connect_s = time.perf_counter() - t0
            identified = await settle_rss(pid, 5.0)
            await client.send({"cmd": "arm", "target": n, "timeout": 120})
            await client.read(30)
            sub = {"op": 0, "d": {"c": CHANNEL, "e": "SUBSCRIBE", "d": None}}
            await client.call({"cmd": "send_all", "text": json.dumps(sub)})
            done = await client.read(150)
            if not done["done"]:
                raise RuntimeError(f"only {done['count']} of {n} SUBSCRIBEs were answered")
            subscribed = await settle_rss(pid, 5.0)
    finally:
        target.server.stop()
    return {
        "before": before,
        "identified": identified,
        "subscribed": subscribed,
        "per_conn": (identified - before) / n,
        "per_sub": (subscribed - identified) / n,
        "connect_s": connect_s,
    }


async def measure_peer(servers: Servers, name: str, n: int) -> dict[str, float]:
    target = await STARTERS[name](servers)
    try:
        before = await baseline(target)
        async with LoadClient() as client:
            await client.connect(target, n)
            after = await settle_rss(target.server.pid, 5.0)
    finally:
        target.server.stop()
    return {"before": before, "after": after, "per_conn": (after - before) / n}


def kib(x: float) -> str:
    return f"{x / 1024:.2f}"


def command() -> Command:
    cmd = Command(__doc__, quick="2,000 connections, one Switchboard run (~15 s)")
    cmd.option("--connections", "connections", 10_000, quick=2000, type=int)
    cmd.option("--reps", "Switchboard repetitions", 3, quick=1, type=int)
    cmd.names(
        "--peers",
        f"peers for scale, comma-separated from {','.join(PEER_LABELS)}",
        ["websockets", "floor"],
        quick=[],
        allowed=list(PEER_LABELS),
        what="peer",
    )
    return cmd


async def measure_all(
    args: argparse.Namespace,
) -> tuple[list[dict[str, float]], dict[str, dict[str, float]]]:
    """Switchboard ``--reps`` times, then every peer once: their RSS figures."""
    n = args.connections
    runs: list[dict[str, float]] = []
    peer_results: dict[str, dict[str, float]] = {}
    with Servers() as servers:
        for i in range(args.reps):
            r = await measure_switchboard(servers, n)
            runs.append(r)
            print(
                f"  rep {i + 1} Switchboard: {r['before'] / 2**20:.1f} MiB -> identified {r['identified'] / 2**20:.1f} MiB "
                f"-> subscribed {r['subscribed'] / 2**20:.1f} MiB: {kib(r['per_conn'])} KiB per identified connection, "
                f"+{kib(r['per_sub'])} KiB per subscription (connected in {r['connect_s']:.1f} s)",
                flush=True,
            )
        for name in args.peers:
            why = missing_peer(name)
            if why:
                print(f"{PEER_LABELS[name]}: skipped ({why})")
                continue
            peer_results[name] = r = await measure_peer(servers, name, n)
            print(f"  {PEER_LABELS[name]}: {kib(r['per_conn'])} KiB per connection", flush=True)
    return runs, peer_results


def rss_row(label: str, n: int, before: float, after: float, per_conn: float) -> list[str]:
    return [
        label,
        f"{n:,}",
        f"{before / 2**20:.1f}",
        f"{after / 2**20:.1f}",
        kib(per_conn),
        f"{2**30 / per_conn / 1000:,.0f}k",
    ]


async def main() -> int:
    args = command().parse()
    n = args.connections
    header("Idle-connection memory benchmark")
    print(f"{n:,} connections; Switchboard {args.reps} time(s), each on a fresh server.\n")
    runs, peer_results = await measure_all(args)

    per_conn = median([r["per_conn"] for r in runs])
    per_sub = median([r["per_sub"] for r in runs])
    before = median([r["before"] for r in runs])
    rows = [
        rss_row(
            "Switchboard, identified (IDENTIFY without a token, no subscription)",
            n,
            before,
            median([r["identified"] for r in runs]),
            per_conn,
        ),
        rss_row(
            "Switchboard, identified + subscribed to one channel",
            n,
            before,
            median([r["subscribed"] for r in runs]),
            per_conn + per_sub,
        ),
    ]
    for name, r in peer_results.items():
        rows.append(rss_row(PEER_LABELS[name], n, r["before"], r["after"], r["per_conn"]))
    print("\n## Results (Switchboard: medians of the repetitions)\n")
    headers = ["server", "connections", "RSS before (MiB)", "RSS after (MiB)"]
    print(table([*headers, "KiB per connection", "per GiB"], rows))
    verdict = "met" if per_conn / 1024 <= TARGET_KIB else "NOT met"
    print(
        f"\nSwitchboard: {kib(per_conn)} KiB per idle identified connection "
        f"(range {kib(min(r['per_conn'] for r in runs))}–{kib(max(r['per_conn'] for r in runs))}) "
        f"— target ≤ {TARGET_KIB:g} KiB: {verdict}; a subscription adds {kib(per_sub)} KiB"
    )
    return 0


if __name__ == "__main__":
    run_main(main)
