"""Many channels: N token connections, each on its own private channel, plus direct messages.

    .venv/bin/python bench/channels.py [--quick] [--connections 10000] [--reps 3] [--window 8]

Setup through the REST API: N tokens (``POST /v1/channels/tokens``), N private channels
(``PUT /v1/channels/:id``) and N grants (``PUT /v1/channels/:id/subscribers/:token``). A load
client in its own process connects once per token; each connection's INIT already lists its
channel (durable token subscriptions), so nobody SUBSCRIBEs. Then, per repetition:

- channel messages: one ``POST /v1/channels/:id/messages`` to each of the N channels;
- direct messages: one ``POST /v1/channels/tokens/:token/messages`` to each of the N tokens;

with ``--window`` requests in flight, each publish delivering one frame to one connection.
Reported: deliveries (= publishes) per second, server CPU µs per delivery (utime + stime from
/proc/<pid>/stat), and the server's RSS per token connection. Medians of the repetitions.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable

from _cli import run_main
from _http_load import HttpPool, http_request, run_closed_loop
from _loadclient_driver import LoadClient
from _procs import cpu_seconds, machine_summary, rss_bytes
from _report import fmt_int, median, table
from _servers import Servers
from _targets import Target, payload, start_switchboard


async def setup(target: Target, n: int, window: int) -> tuple[list[str], float]:
    """Create N tokens, N private channels and N grants; return the tokens and requests/s."""
    auth = {"Authorization": target.info["ptk"]}
    tokens: list[str] = []
    t0 = time.perf_counter()
    async with HttpPool(target.pub_port, window) as pool:
        sem = asyncio.Semaphore(window)

        async def token(i: int) -> None:
            async with sem:
                answer = await pool.json(
                    "POST", "/v1/channels/tokens", {"state": {"user": i}}, auth
                )
                tokens.append(answer["data"]["token"]["id"])

        async def channel(i: int) -> None:
            async with sem:
                await pool.json("PUT", f"/v1/channels/p{i}", {"type": "private"}, auth)
                await pool.json("PUT", f"/v1/channels/p{i}/subscribers/{tokens[i]}", None, auth)

        await asyncio.gather(*(token(i) for i in range(n)))
        await asyncio.gather(*(channel(i) for i in range(n)))
    return tokens, 3 * n / (time.perf_counter() - t0)


async def phase(
    target: Target, client: LoadClient, n: int, window: int, build: Callable[[int], bytes]
) -> dict[str, float]:
    pids = target.server.pids()
    async with HttpPool(target.pub_port, window) as pool:
        await client.send({"cmd": "arm", "target": n, "timeout": 120})
        await client.read(30)
        cpu0 = cpu_seconds(pids)
        t0 = time.time()
        _, statuses = await run_closed_loop(pool, n, build, window)
        done = await client.read(180)
        cpu1 = cpu_seconds(pids)
    secs = done["t_done"] - t0
    return {
        "rate": done["count"] / secs,
        "us": (cpu1 - cpu0) / max(1, done["count"]) * 1e6,
        "util": (cpu1 - cpu0) / secs,
        "lost": n - done["count"],
        "errors": sum(v for status, v in statuses.items() if status >= 300),
    }


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="1,000 connections, one repetition (~15 s)"
    )
    parser.add_argument(
        "--connections", type=int, default=None, help="token connections (default 10000)"
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3; --quick 1)")
    parser.add_argument("--window", type=int, default=8, help="requests in flight (default 8)")
    args = parser.parse_args()
    n = args.connections or (1000 if args.quick else 10_000)
    reps = args.reps or (1 if args.quick else 3)

    print(f"# Many-channels benchmark — {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"Machine: {machine_summary()}")
    print(
        f"{n:,} token connections, each on its own private channel; {reps} repetition(s), window {args.window}.\n"
    )
    with Servers() as servers:
        target = await start_switchboard(servers)
        tokens, setup_rate = await setup(target, n, args.window)
        print(
            f"setup: {3 * n:,} REST calls (tokens, channels, grants) at {fmt_int(setup_rate)} requests/s",
            flush=True,
        )
        rss0 = rss_bytes(target.server.pid)
        port = target.pub_port
        auth = {"Authorization": target.info["ptk"]}

        def channel_message(i: int) -> bytes:
            body = b'{"e":"m","d":' + payload(i) + b"}"
            return http_request("POST", f"/v1/channels/p{i}/messages", port, body, auth)

        def direct_message(i: int) -> bytes:
            body = b'{"e":"m","d":' + payload(i) + b"}"
            return http_request(
                "POST", f"/v1/channels/tokens/{tokens[i]}/messages", port, body, auth
            )

        async with LoadClient() as client:
            t0 = time.perf_counter()
            await client.connect(target, n, channel=None, tokens=tokens, expect_channels=1)
            connect_s = time.perf_counter() - t0
            await asyncio.sleep(1.0)
            rss1 = rss_bytes(target.server.pid)
            print(
                f"connected {n:,} token connections in {connect_s:.1f} s; "
                f"RSS {rss0 / 2**20:.1f} -> {rss1 / 2**20:.1f} MiB = {(rss1 - rss0) / n / 1024:.1f} KiB per connection",
                flush=True,
            )
            # Warm-up: a tenth of a round of each kind.
            await phase(target, client, max(1, n // 10), args.window, channel_message)
            await phase(target, client, max(1, n // 10), args.window, direct_message)
            results: dict[str, list[dict[str, float]]] = {
                "channel messages": [],
                "direct messages": [],
            }
            for i in range(reps):
                for kind, build in (
                    ("channel messages", channel_message),
                    ("direct messages", direct_message),
                ):
                    r = await phase(target, client, n, args.window, build)
                    results[kind].append(r)
                    print(
                        f"  rep {i + 1} {kind:16}: {fmt_int(r['rate']):>7} deliveries/s, {r['us']:6.1f} CPU µs/delivery, "
                        f"server CPU {100 * r['util']:.0f}%, lost {r['lost']:.0f}, errors {r['errors']:.0f}",
                        flush=True,
                    )
    print("\n## Results (medians of the repetitions)\n")
    rows = []
    for kind, runs in results.items():
        rows.append(
            [
                kind,
                f"{n:,}",
                fmt_int(median([r["rate"] for r in runs])),
                f"{median([r['us'] for r in runs]):.1f}",
                f"{100 * median([r['util'] for r in runs]):.0f}%",
                f"{sum(r['lost'] for r in runs):.0f}",
                f"{sum(r['errors'] for r in runs):.0f}",
            ]
        )
    print(
        table(
            [
                "publish kind",
                "connections",
                "deliveries/s",
                "server CPU µs/delivery",
                "server CPU",
                "lost",
                "errors",
            ],
            rows,
        )
    )
    print(
        f"\nRSS per token connection (with its private channel): {(rss1 - rss0) / n / 1024:.1f} KiB"
    )
    print(
        f"Setup through the REST API: {fmt_int(setup_rate)} requests/s (token create, channel create, grant)"
    )
    return 0


if __name__ == "__main__":
    run_main(main)
