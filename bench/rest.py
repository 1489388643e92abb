"""REST: publishes per second through the API, one channel with one subscriber.

    .venv/bin/python bench/rest.py [--quick] [--conns 8] [--seconds 4] [--reps 3]
                                   [--servers switchboard,floor] [--history SIZE] [--profile]

A load client in its own process holds one subscriber on the channel and runs a closed-loop
HTTP load on ``--conns`` keep-alive connections: each sends ``POST /v1/channels/bench/messages``
(``{"e","d"}``, a ~100-byte ``d``, ``Authorization: ptk_…``) and waits for the answer before
the next. Reported: requests per second, server CPU µs per request (utime + stime from
/proc/<pid>/stat), and whether the subscriber got every message. Medians of the repetitions.

For scale, the same load runs against the aiohttp floor's ``POST /publish`` (bench/peers/
floor_server.py: read the body, write one pre-built frame to the one socket, answer "ok"),
which is what the HTTP stack alone costs; no auth, no validation, no store.

``--history SIZE`` turns channel history on for the bench's channel (``PATCH
/v1/channels/bench {"history": {"size": SIZE}}``, docs/history.md) before the runs, so
every publish is also kept with its offset: run it beside a run without to read the cost.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from _cli import run_main
from _http_load import HttpPool
from _loadclient_driver import LoadClient
from _procs import cpu_seconds, machine_summary
from _report import fmt_int, median, table
from _servers import Servers
from _targets import CHANNEL, STARTERS, Target, payload

from fanout import LABELS, profile_report, start_py_spy


async def one_run(
    target: Target, client: LoadClient, conns: int, seconds: float
) -> dict[str, float]:
    pids = target.server.pids()
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
    cpu0 = cpu_seconds(pids)
    result = await client.read(seconds + 60)
    cpu1 = cpu_seconds(pids)
    await asyncio.sleep(0.3)
    received = (await client.call({"cmd": "count"}))["count"]
    secs = result["t1"] - result["t0"]
    ok = sum(v for status, v in result["statuses"].items() if int(status) < 300)
    return {
        "rate": result["requests"] / secs,
        "us": (cpu1 - cpu0) / max(1, result["requests"]) * 1e6,
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


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one 2-second run per server (~10 s)")
    parser.add_argument(
        "--conns", type=int, default=8, help="keep-alive HTTP connections (default 8)"
    )
    parser.add_argument(
        "--seconds", type=float, default=None, help="seconds per repetition (default 4; --quick 2)"
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3; --quick 1)")
    parser.add_argument(
        "--servers",
        default="switchboard,floor",
        help="comma-separated (default switchboard,floor; also switchboard-redis: one node on "
        "its own redis-server, its CPU counted with the node's)",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        metavar="SIZE",
        help="keep the last SIZE messages of the Switchboard channel (default 0: no history)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy Switchboard through one more run"
    )
    parser.add_argument(
        "--native", action="store_true", help="with --profile: include native (C) frames"
    )
    args = parser.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 4.0)
    reps = args.reps or (1 if args.quick else 3)
    names = [s.strip() for s in args.servers.split(",") if s.strip()]

    print(f"# REST publish benchmark — {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"Machine: {machine_summary()}")
    kept = f", history size {args.history}" if args.history else ", no history"
    print(
        f"One channel{kept}, one subscriber, {args.conns} keep-alive connections, "
        f"{reps} x {seconds:g} s.\n"
    )
    rows = []
    results: dict[str, float] = {}
    profile_text = ""
    with Servers() as servers:
        for name in names:
            target = await STARTERS[name](servers)
            if args.history and name.startswith("switchboard"):
                await keep_history(target, args.history)
            async with LoadClient() as client:
                await client.connect(target, 1)
                await one_run(target, client, args.conns, min(1.0, seconds))  # warm-up
                runs = []
                for i in range(reps):
                    r = await one_run(target, client, args.conns, seconds)
                    runs.append(r)
                    print(
                        f"  rep {i + 1} {LABELS[name]:25} {fmt_int(r['rate']):>7} requests/s, "
                        f"{r['us']:6.1f} CPU µs/request, server CPU {100 * r['util']:.0f}%, "
                        f"errors {r['errors']:.0f}, not delivered {r['missing']:.0f}",
                        flush=True,
                    )
                if args.profile and name.startswith("switchboard"):
                    raw = Path(tempfile.mkdtemp(prefix="sb-bench-profile-")) / "rest.collapsed.txt"
                    proc = start_py_spy(target.server.pid, 6, raw, native=args.native)
                    if proc is not None:
                        await asyncio.sleep(0.5)
                        await one_run(target, client, args.conns, 7)
                        while proc.poll() is None:
                            await asyncio.sleep(0.2)
                        profile_text = profile_report(
                            raw, "REST publishes to a channel with one subscriber"
                        )
            target.server.stop()
            rate = median([r["rate"] for r in runs])
            results[name] = rate
            rows.append(
                [
                    LABELS[name],
                    fmt_int(rate),
                    f"{median([r['us'] for r in runs]):.1f}",
                    f"{100 * median([r['util'] for r in runs]):.0f}%",
                    f"{sum(r['errors'] for r in runs):.0f}",
                    f"{sum(r['missing'] for r in runs):.0f}",
                ]
            )
    print("\n## Results (medians of the repetitions)\n")
    print(
        table(
            [
                "server",
                "requests/s",
                "server CPU µs/request",
                "server CPU",
                "HTTP errors",
                "not delivered",
            ],
            rows,
        )
    )
    if "switchboard" in results and "floor" in results:
        print(
            f"\nSwitchboard ÷ aiohttp floor: {results['switchboard'] / results['floor']:.2f} by requests/s"
        )
    if profile_text:
        print(profile_text)
    return 0


if __name__ == "__main__":
    run_main(main)
