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

from _cli import Command, run_main
from _http_load import HttpPool, http_request, run_closed_loop
from _loadclient_driver import LoadClient
from _procs import cpu_seconds, rss_bytes
from _report import fmt_int, header, median, table
from _servers import Servers
from _targets import Target, payload, start_switchboard

Results = dict[str, list[dict[str, float]]]
"""Runs by publish kind ("channel messages", "direct messages")."""


def command() -> Command:
    cmd = Command(__doc__, quick="1,000 connections, one repetition (~15 s)")
    cmd.option("--connections", "token connections", 10_000, quick=1000, type=int)
    cmd.option("--reps", "repetitions", 3, quick=1, type=int)
    cmd.option("--window", "requests in flight", 8, type=int)
    return cmd


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


def publishers(target: Target, tokens: list[str]) -> dict[str, Callable[[int], bytes]]:
    """Request ``i`` of each publish kind: to channel ``p<i>``, or to token ``i`` directly."""
    port = target.pub_port
    auth = {"Authorization": target.info["ptk"]}

    def channel_message(i: int) -> bytes:
        body = b'{"e":"m","d":' + payload(i) + b"}"
        return http_request("POST", f"/v1/channels/p{i}/messages", port, body, auth)

    def direct_message(i: int) -> bytes:
        body = b'{"e":"m","d":' + payload(i) + b"}"
        return http_request("POST", f"/v1/channels/tokens/{tokens[i]}/messages", port, body, auth)

    return {"channel messages": channel_message, "direct messages": direct_message}


async def connect_and_publish(
    target: Target, tokens: list[str], args: argparse.Namespace
) -> tuple[float, Results]:
    """One connection per token, then the repetitions; the RSS the connections added, per
    connection, and the runs."""
    n = args.connections
    builds = publishers(target, tokens)
    rss0 = rss_bytes(target.server.pid)
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
        for build in builds.values():
            await phase(target, client, max(1, n // 10), args.window, build)
        results: Results = {kind: [] for kind in builds}
        for i in range(args.reps):
            for kind, build in builds.items():
                r = await phase(target, client, n, args.window, build)
                results[kind].append(r)
                print(
                    f"  rep {i + 1} {kind:16}: {fmt_int(r['rate']):>7} deliveries/s, {r['us']:6.1f} CPU µs/delivery, "
                    f"server CPU {100 * r['util']:.0f}%, lost {r['lost']:.0f}, errors {r['errors']:.0f}",
                    flush=True,
                )
    return rss1 - rss0, results


async def main() -> int:
    args = command().parse()
    n = args.connections
    header("Many-channels benchmark")
    print(
        f"{n:,} token connections, each on its own private channel; {args.reps} repetition(s), window {args.window}.\n"
    )
    with Servers() as servers:
        target = await start_switchboard(servers)
        tokens, setup_rate = await setup(target, n, args.window)
        print(
            f"setup: {3 * n:,} REST calls (tokens, channels, grants) at {fmt_int(setup_rate)} requests/s",
            flush=True,
        )
        rss, results = await connect_and_publish(target, tokens, args)
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
    headers = ["publish kind", "connections", "deliveries/s", "server CPU µs/delivery"]
    print(table([*headers, "server CPU", "lost", "errors"], rows))
    print(f"\nRSS per token connection (with its private channel): {rss / n / 1024:.1f} KiB")
    print(
        f"Setup through the REST API: {fmt_int(setup_rate)} requests/s (token create, channel create, grant)"
    )
    return 0


if __name__ == "__main__":
    run_main(main)
