"""REST: publishes per second through the API, one channel with one subscriber.

    .venv/bin/python bench/rest.py [--quick] [--conns 8] [--seconds 4] [--reps 3]
                                   [--servers switchboard,floor] [--history SIZE] [--profile]

A load client in its own process holds one subscriber on the channel and runs a closed-loop
HTTP load on ``--conns`` keep-alive connections: each sends ``POST /v1/channels/bench/messages``
(``{"e","d"}``, a ~100-byte ``d``, ``Authorization: ptk_…``) and waits for the answer before
the next. Reported: requests per second, server CPU µs per request (utime + stime from
/proc/<pid>/stat; for ``switchboard-redis`` and ``switchboard-workers2``, ``serve --redis
--workers 2``, the node's or workers' and their own Redis's, and Redis's alone beside it),
and whether the subscriber got every message. Medians of the repetitions.

For scale, the same load runs against the aiohttp floor's ``POST /publish`` (bench/peers/
floor_server.py: read the body, write one pre-built frame to the one socket, answer "ok"),
which is what the HTTP stack alone costs; no auth, no validation, no store.

It ends with issue 21.3's two ratios, Switchboard ÷ the floor and the node on Redis ÷ the
SQLite node, by requests/s and by CPU per request (which does not count the time another
process had the core: the one to read on a busy machine).

``--history SIZE`` turns channel history on for the bench's channel (``PATCH
/v1/channels/bench {"history": {"size": SIZE}}``, docs/history.md) before the runs, so
every publish is also kept with its offset: run it beside a run without to read the cost.
"""

from __future__ import annotations

import argparse
import asyncio
import math

from _cli import Command, run_main
from _http_load import HttpPool
from _loadclient_driver import LoadClient
from _procs import cpu_seconds, process_tree
from _profile import profile_during
from _report import fmt_int, header, median, table
from _servers import Servers
from _targets import CHANNEL, LABELS, STARTERS, Target, payload


def command() -> Command:
    cmd = Command(__doc__, quick="one 2-second run per server (~10 s)")
    cmd.option("--conns", "keep-alive HTTP connections", 8, type=int)
    cmd.option("--seconds", "seconds per repetition", 4.0, quick=2.0, type=float)
    cmd.option("--reps", "repetitions", 3, quick=1, type=int)
    cmd.names(
        "--servers",
        "comma-separated; also switchboard-redis: one node on its own redis-server, its CPU"
        " counted with the node's",
        ["switchboard", "floor"],
        allowed=list(STARTERS),
        what="server",
    )
    cmd.history()
    cmd.profile("py-spy Switchboard through one more run")
    return cmd


async def one_run(
    target: Target, client: LoadClient, conns: int, seconds: float
) -> dict[str, float]:
    pids = target.server.pids()
    extra = [p for e in target.server.extra_pids for p in process_tree(e)]  # its Redis
    request = target.build_publish(payload(0))
    await client.send({"cmd": "arm", "target": 10**12, "timeout": 10**6})
    await client.read(30)
    await client.send(
        {
            "cmd": "http",
            "port": target.pub_port,
            "request": request.decode("latin-1"),
            "conns": conns,
            "duration": seconds,
        }
    )
    await client.read(30)  # started
    cpu0, extra0 = cpu_seconds(pids), cpu_seconds(extra)
    result = await client.read(seconds + 60)
    cpu1, extra1 = cpu_seconds(pids), cpu_seconds(extra)
    await asyncio.sleep(0.3)
    received = (await client.call({"cmd": "count"}))["count"]
    secs = result["t1"] - result["t0"]
    ok = sum(v for status, v in result["statuses"].items() if int(status) < 300)
    return {
        "rate": result["requests"] / secs,
        "us": (cpu1 - cpu0) / max(1, result["requests"]) * 1e6,
        "redis_us": (extra1 - extra0) / max(1, result["requests"]) * 1e6 if extra else math.nan,
        "util": (cpu1 - cpu0) / secs,
        "ok": ok,
        "errors": result["requests"] - ok,
        "missing": ok - received,
    }


async def keep_history(target: Target, size: int) -> None:
    """Turn history on for the bench's channel: every publish is kept from then on."""
    auth = {"Authorization": target.info["ptk"]}
    async with HttpPool(target.pub_port, 1) as pool:
        body = {"history": {"size": size, "ttl_s": 3600}}
        await pool.json("PATCH", f"/v1/channels/{CHANNEL}", body, auth)


async def measure(
    servers: Servers, name: str, args: argparse.Namespace
) -> tuple[list[dict[str, float]], str]:
    """One server: a warm-up, ``--reps`` runs, and with ``--profile`` a profiled run."""
    target = await STARTERS[name](servers)
    if args.history and name.startswith("switchboard"):
        await keep_history(target, args.history)
    profile_text = ""
    async with LoadClient() as client:
        await client.connect(target, 1)
        await one_run(target, client, args.conns, min(1.0, args.seconds))  # warm-up
        runs = []
        for i in range(args.reps):
            r = await one_run(target, client, args.conns, args.seconds)
            runs.append(r)
            print(
                f"  rep {i + 1} {LABELS[name]:25} {fmt_int(r['rate']):>7} requests/s, "
                f"{r['us']:6.1f} CPU µs/request, server CPU {100 * r['util']:.0f}%, "
                f"errors {r['errors']:.0f}, not delivered {r['missing']:.0f}",
                flush=True,
            )
        if args.profile and name.startswith("switchboard"):
            profile_text = await profile_during(
                target.server.pid,
                6,
                args.native,
                lambda: one_run(target, client, args.conns, 7),
                file_name="rest.collapsed.txt",
                what="REST publishes to a channel with one subscriber",
            )
    target.server.stop()
    return runs, profile_text


def print_targets(rates: dict[str, float], cpu: dict[str, float]) -> None:
    """Issue 21.3's two ratios, by requests/s and by CPU per request (the second does not
    count the time another process had the core: read it on a busy machine)."""
    pairs = [
        ("Switchboard ÷ aiohttp floor", "switchboard", "floor", "target 0.8"),
        ("node on Redis ÷ SQLite node", "switchboard-redis", "switchboard", "target 0.6"),
    ]
    for label, ours, theirs, target in pairs:
        if ours in rates and theirs in rates:
            print(
                f"\n{label}: {rates[ours] / rates[theirs]:.2f} by requests/s, "
                f"{cpu[theirs] / cpu[ours]:.2f} by CPU per request ({target})",
                end="",
            )
    print()


async def main() -> int:
    args = command().parse()
    header("REST publish benchmark")
    kept = f", history size {args.history}" if args.history else ", no history"
    print(
        f"One channel{kept}, one subscriber, {args.conns} keep-alive connections, "
        f"{args.reps} x {args.seconds:g} s.\n"
    )
    rows = []
    results: dict[str, float] = {}
    cpu: dict[str, float] = {}
    profile_text = ""
    with Servers() as servers:
        for name in args.servers:
            runs, profiled = await measure(servers, name, args)
            profile_text = profiled or profile_text
            results[name] = rate = median([r["rate"] for r in runs])
            cpu[name] = median([r["us"] for r in runs])
            rows.append(
                [
                    LABELS[name],
                    fmt_int(rate),
                    f"{median([r['us'] for r in runs]):.1f}",
                    f"{median([r['redis_us'] for r in runs]):.1f}".replace("nan", "—"),
                    f"{100 * median([r['util'] for r in runs]):.0f}%",
                    f"{sum(r['errors'] for r in runs):.0f}",
                    f"{sum(r['missing'] for r in runs):.0f}",
                ]
            )
    print("\n## Results (medians of the repetitions)\n")
    headers = ["server", "requests/s", "server CPU µs/request", "of which Redis", "server CPU"]
    print(table([*headers, "HTTP errors", "not delivered"], rows))
    print_targets(results, cpu)
    if profile_text:
        print(profile_text)
    return 0


if __name__ == "__main__":
    run_main(main)
