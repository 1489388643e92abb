"""``cluster.py --layout spread`` (issue 20.1): many channels, each heard on one node, publishes everywhere.

Three ``switchboard serve --redis --metrics`` nodes on one fresh ``redis-server``; ``--channels``
channels dealt evenly over them (channel ``c`` has its ``--subscribers-per-channel`` tokenless
subscribers all on node ``c mod 3``; one load client process holds every socket of a set), and
REST publishes spread evenly over the channels and over the three nodes' REST APIs: message
``i`` goes to channel ``i mod C`` through node ``(i div 3) mod 3``, so every pair of channel's
node and publishing node comes equally often (a third of the publishes land on the node of the
channel's subscribers). A repetition goes on through the channels where the last one stopped.

With per-channel topics a node hears only its sockets' channels, so it decodes about a third
of the events; with one topic for the cluster every node decoded every event. ``--before-src
PATH`` starts a second set of three nodes, on its own Redis, from another source tree (a ``git
worktree`` of the commit before the topics: ``PYTHONPATH=PATH/src python -m
switchboard.server.cli serve``), and the repetitions alternate between the sets, in turn first;
``--after-src`` runs the measured code from a tree other than this checkout.

Measured over each repetition: each node's ``switchboard_broker_events_received_total`` (the
delta; ``/metrics`` is read just outside the CPU window) and ``switchboard_broker_topics``, the
CPU of each node (utime + stime from /proc) and of Redis (INFO cpu), the frames the load client
counted. Phases as in the fan-out layout: closed loop (``--window`` publishes in flight), then
paced at ``--rate`` (default ``--pace`` times the lowest closed-loop rate) for
``--paced-duration`` seconds; a repetition in which other processes took more than
``--max-others`` of a CPU is re-run. Medians of the repetitions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _cli import Command
from _cluster import Publisher, Send, closed_loop, paced
from _http_load import HttpPool, http_request
from _loadclient_driver import LoadClient
from _procs import REPO_DIR, cpu_seconds, machine_busy_seconds
from _report import fmt_int, median
from _servers import HOST, ServerProc, Servers, free_port, start_redis
from _targets import Target, join_switchboard, payload, start_switchboard

NODES = 3
CHANNEL_PREFIX = "spread-"
EVENTS = "switchboard_broker_events_received_total"
TOPICS = "switchboard_broker_topics"
CONNECT_CONCURRENCY = 32
PHASES = {"closed": "closed loop (max)", "paced": "paced (same rate)"}
RATIOS = [
    ("events decoded per node ÷ published", "share_decoded", "{:.3f}"),
    ("node CPU µs per message (3 nodes)", "us_per_message", "{:.1f}"),
    ("Redis CPU µs per message", "redis_us_per_message", "{:.1f}"),
    ("nodes + Redis CPU µs per message", "total_us_per_message", "{:.1f}"),
]
"""The after ÷ before table: what, the ``SpreadRep`` property, its format."""


def add_options(cmd: Command) -> None:
    """The spread layout's own options (the phases' options are the fan-out layout's)."""
    cmd.option(
        "--channels", "spread: channels, dealt evenly over three nodes", 3000, quick=300, type=int
    )
    cmd.option(
        "--subscribers-per-channel",
        "spread: tokenless subscribers of each channel, all on the channel's node",
        1,
        type=int,
    )
    cmd.option(
        "--rate",
        "spread: messages/s of the paced phase",
        0.0,
        type=float,
        note="0: --pace x the lowest closed-loop rate",
    )
    cmd.option(
        "--before-src",
        "spread: also run three nodes from this source tree (the code before), alternating",
        "",
        metavar="PATH",
    )
    cmd.option(
        "--after-src", "spread: run the measured nodes from this tree, not this checkout", ""
    )
    cmd.option(
        "--redis-shards",
        "spread: run the nodes on a Redis Cluster of this many masters (sharded pub/sub), "
        "beside the same nodes on one Redis, alternating",
        0,
        type=int,
        note="0: off",
    )


def source_dir(path: str) -> str | None:
    """The directory to put on PYTHONPATH for a tree (its ``src`` if it has one); None: ours."""
    if not path:
        return None
    root = Path(path).resolve()
    src = root / "src" if (root / "src" / "switchboard").is_dir() else root
    if not (src / "switchboard").is_dir():
        raise SystemExit(f"{path}: no switchboard package in it")
    return str(src)


def revision(src: str | None) -> str:
    """The commit a tree is at, and whether its src/ has changes not committed."""
    tree = str(REPO_DIR) if src is None else src

    def git(*argv: str) -> str:
        run = subprocess.run(["git", "-C", tree, *argv], capture_output=True, text=True)
        return run.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git(
        "status", "--porcelain", "--", str(Path(git("rev-parse", "--show-toplevel")) / "src")
    )
    return head + (" + uncommitted changes in src/" if dirty else "")


@dataclass
class SpreadRep:
    """What one repetition measured on one set of nodes: K messages, one channel each."""

    k: int
    secs: float
    node_cpu: list[float]
    events: list[float]
    """Events each node's broker reader decoded (``Node`` order)."""
    topics: list[float | None]
    """Topics each node wanted at the end (None: the code has no such metric)."""
    shard_cpu: list[float]
    """Redis CPU of each master (one entry on a single Redis)."""
    shard_calls: list[dict[str, int]]
    """Commands each master served, by name (INFO commandstats; INFO left out)."""
    client_cpu: float
    others_cpu: float
    count: int
    expected: int
    done: bool
    errors: int
    close_codes: dict[str, int]

    @property
    def deliveries(self) -> int:
        return self.expected

    @property
    def publish_rate(self) -> float:
        return self.k / self.secs

    @property
    def us_per_message(self) -> float:
        return sum(self.node_cpu) / self.k * 1e6

    @property
    def redis_cpu(self) -> float:
        return sum(self.shard_cpu)

    @property
    def redis_us_per_message(self) -> float:
        return self.redis_cpu / self.k * 1e6

    @property
    def total_us_per_message(self) -> float:
        return self.us_per_message + self.redis_us_per_message

    @property
    def share_decoded(self) -> float:
        """Events decoded per node ÷ messages published (the mean of the nodes)."""
        return sum(self.events) / len(self.events) / self.k


@dataclass
class NodeSet:
    """Three nodes of one code version on their own Redis, their subscribers, their REST pools."""

    name: str
    revision: str
    nodes: list[Target]
    redis: list[ServerProc]
    redis_clients: list[Any]
    """One per Redis master (a Redis Cluster has several)."""
    client: LoadClient
    pools: list[HttpPool]
    """One publishing pool per node."""
    auth: dict[str, str]
    channels: list[str]
    per_channel: int = 1
    sent: int = 0
    """Messages published so far: the next repetition goes on through the channels from here."""
    k: int = 0
    reps: dict[str, list[SpreadRep]] = field(default_factory=dict)
    discarded: dict[str, int] = field(default_factory=dict)

    def pids(self) -> list[int]:
        nodes = [p for node in self.nodes for p in node.server.pids()]
        return [*nodes, *(p for r in self.redis for p in r.pids()), self.client.pid]

    def node_channels(self, j: int) -> list[str]:
        return self.channels[j :: len(self.nodes)]

    def sender(self) -> Send:
        """Message ``seq`` of the next repetition: to its channel, through its node's REST API."""
        base, m, c = self.sent, len(self.nodes), len(self.channels)

        async def send(seq: int) -> tuple[int, bytes]:
            i = base + seq
            pool = self.pools[(i // m) % m]
            path = f"/v1/channels/{self.channels[i % c]}/messages"
            body = b'{"e":"m","d":' + payload(i) + b"}"
            return await pool.request(http_request("POST", path, pool.port, body, self.auth))

        return send


async def start_set(
    name: str,
    src: str | None,
    servers: Servers,
    stack: contextlib.AsyncExitStack,
    redis_bin: str,
    args: argparse.Namespace,
) -> NodeSet:
    """Start one set: its Redis, three nodes with ``--metrics``, its load client and pools; make
    the channels."""
    import redis.asyncio as aioredis

    shards = args.redis_shards if name == "after" else 0
    if shards:
        rdss, url = await start_redis_cluster(servers, redis_bin, shards)
    else:
        rdss = [await start_redis(servers, redis_bin)]
        url = f"redis://{HOST}:{rdss[0].port}/0"
    first = await start_switchboard(servers, extra=["--redis", url, "--metrics"], src=src)
    others = await asyncio.gather(
        *(
            join_switchboard(servers, first, url, f"{name} node {j}", extra=["--metrics"], src=src)
            for j in range(1, NODES)
        )
    )
    nodes = [first, *others]
    client = await stack.enter_async_context(LoadClient())
    pools = [await stack.enter_async_context(HttpPool(n.pub_port, args.window)) for n in nodes]
    redis_clients = [aioredis.Redis(host=HOST, port=r.port) for r in rdss]
    for redis_client in redis_clients:
        stack.push_async_callback(redis_client.aclose)
    channels = [f"{CHANNEL_PREFIX}{c}" for c in range(args.channels)]
    auth = {"Authorization": first.info["ptk"]}
    code = revision(src)
    if args.redis_shards:
        code += f", Redis Cluster of {shards} masters" if shards else ", one Redis"
    nodeset = NodeSet(name, code, nodes, rdss, redis_clients, client, pools, auth, channels)
    nodeset.per_channel = args.subscribers_per_channel
    await asyncio.gather(
        *(
            pools[c % NODES].json("PUT", f"/v1/channels/{ch}", {"type": "unprotected"}, auth)
            for c, ch in enumerate(channels)
        )
    )
    return nodeset


async def start_redis_cluster(
    servers: Servers, redis_bin: str, masters: int
) -> tuple[list[ServerProc], str]:
    """``masters`` fresh ``redis-server --cluster-enabled yes`` (no replicas: the figures
    are the shards' own work), made one cluster with ``redis-cli --cluster create``."""
    procs = []
    for _ in range(masters):
        bus = free_port()
        extra = ("--cluster-enabled", "yes", "--cluster-port", str(bus))
        extra += ("--cluster-config-file", f"nodes-{bus}.conf")
        procs.append(await start_redis(servers, redis_bin, extra))
    cli = str(Path(redis_bin).with_name("redis-cli")) if "/" in redis_bin else "redis-cli"
    addresses = [f"{HOST}:{p.port}" for p in procs]
    create = [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"]
    await asyncio.to_thread(subprocess.run, create, check=True, capture_output=True, timeout=60)
    await asyncio.to_thread(_wait_cluster_ok, [p.port for p in procs])
    return procs, "redis+cluster://" + ",".join(addresses)


def _wait_cluster_ok(ports: list[int]) -> None:
    import redis

    deadline = time.monotonic() + 30
    for port in ports:
        with redis.Redis(host=HOST, port=port) as client:
            while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the Redis Cluster never said ok")
                time.sleep(0.1)


async def connect(nodeset: NodeSet) -> float:
    """Every channel's subscribers on its node; returns the seconds it took."""
    t0 = time.perf_counter()
    per = nodeset.per_channel
    for j, node in enumerate(nodeset.nodes):
        mine = [ch for ch in nodeset.node_channels(j) for _ in range(per)]
        await nodeset.client.connect(
            node, len(mine), channels=mine, concurrency=CONNECT_CONCURRENCY
        )
    return time.perf_counter() - t0


# Repetitions.


async def scrape(pool: HttpPool) -> dict[str, float]:
    """The broker's two metrics from a node's ``/metrics``."""
    status, body = await pool.request(http_request("GET", "/metrics", pool.port))
    if status != 200:
        raise RuntimeError(f"GET /metrics on port {pool.port} → {status}")
    found: dict[str, float] = {}
    for line in body.decode().splitlines():
        name, _, value = line.partition(" ")
        if name in (EVENTS, TOPICS):
            found[name] = float(value)
    return found


async def redis_calls(client: Any) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {
        k.removeprefix("cmdstat_"): int(v["calls"])
        for k, v in stats.items()
        if k.startswith("cmdstat_") and k != "cmdstat_info"
    }


async def redis_cpu(client: Any) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def one_rep(
    nodeset: NodeSet, k: int, publish: Publisher, timeout: float, ours: list[int]
) -> SpreadRep:
    """Publish ``k`` messages, wait for every frame; CPU, events decoded and topics over the span."""
    expected = k * nodeset.per_channel
    await nodeset.client.send({"cmd": "arm", "target": expected, "timeout": timeout})
    await nodeset.client.read(30)
    before = await asyncio.gather(*(scrape(pool) for pool in nodeset.pools))
    node_pids = [node.server.pids() for node in nodeset.nodes]
    calls0 = [await redis_calls(c) for c in nodeset.redis_clients]
    rcpu0 = [await redis_cpu(c) for c in nodeset.redis_clients]
    ncpu0, ccpu0 = [cpu_seconds(p) for p in node_pids], cpu_seconds([nodeset.client.pid])
    busy0, ours0 = machine_busy_seconds(), cpu_seconds(ours)
    t0 = time.time()
    statuses, _ = await publish(nodeset.sender(), k)
    done = await nodeset.client.read(timeout + 30)
    busy1, ours1 = machine_busy_seconds(), cpu_seconds(ours)
    ncpu1, ccpu1 = [cpu_seconds(p) for p in node_pids], cpu_seconds([nodeset.client.pid])
    rcpu1 = [await redis_cpu(c) for c in nodeset.redis_clients]
    calls1 = [await redis_calls(c) for c in nodeset.redis_clients]
    after = await asyncio.gather(*(scrape(pool) for pool in nodeset.pools))
    nodeset.sent += k
    return SpreadRep(
        k,
        done["t_done"] - t0,
        [b - a for a, b in zip(ncpu0, ncpu1, strict=True)],
        [b[EVENTS] - a[EVENTS] for a, b in zip(before, after, strict=True)],
        [b.get(TOPICS) for b in after],
        [b - a for a, b in zip(rcpu0, rcpu1, strict=True)],
        [{n: b[n] - a.get(n, 0) for n in b} for a, b in zip(calls0, calls1, strict=True)],
        ccpu1 - ccpu0,
        max(0.0, (busy1 - busy0) - (ours1 - ours0)),
        done["count"],
        expected,
        done["done"],
        sum(v for status, v in statuses.items() if status >= 300),
        done.get("close_codes", {}),
    )


async def run_phase(
    sets: list[NodeSet],
    phase: str,
    k: int | None,
    publish: Publisher,
    timeout: float,
    args: argparse.Namespace,
    ours: list[int],
) -> None:
    """``--reps`` repetitions of a phase, alternating the sets (each first in turn); K: ``k`` or
    each set's own from its warm-up; a disturbed repetition is re-run."""
    for i in range(args.reps):
        for nodeset in sets if i % 2 == 0 else sets[::-1]:
            runs = nodeset.reps.setdefault(phase, [])
            if runs and not runs[-1].done:
                continue  # lost messages once: don't pile up more
            for attempt in range(1 + args.retries):
                rep = await one_rep(nodeset, k or nodeset.k, publish, timeout, ours)
                disturbed = rep.others_cpu / rep.secs > args.max_others
                last = attempt == args.retries
                print_rep(phase, i, nodeset, rep, discarded=disturbed and rep.done and not last)
                if not disturbed or not rep.done or last:
                    break
                nodeset.discarded[phase] = nodeset.discarded.get(phase, 0) + 1
            runs.append(rep)


def print_rep(phase: str, i: int, nodeset: NodeSet, rep: SpreadRep, *, discarded: bool) -> None:
    decoded = " / ".join(f"{e / rep.k:.2f}" for e in rep.events)
    print(
        f"  {phase} rep {i + 1} {nodeset.name:6} {fmt_int(rep.publish_rate):>6} msg/s, "
        f"{rep.us_per_message:6.1f} node CPU µs/message + {rep.redis_us_per_message:5.1f} "
        f"Redis ({' / '.join(f'{c / rep.k * 1e6:.1f}' for c in rep.shard_cpu)}), events decoded per node ÷ published {decoded}, "
        f"others {100 * rep.others_cpu / rep.secs:3.0f}%"
        + ("" if rep.done else f"  LOST {rep.expected - rep.count:,}")
        + (" — disturbed, discarded" if discarded else ""),
        flush=True,
    )


async def run_spread(args: argparse.Namespace, redis_bin: str) -> list[NodeSet]:
    """Start the sets, connect, warm up, then the closed loop and the paced phase."""
    trees = {"after": source_dir(args.after_src)}
    if args.before_src or args.redis_shards:
        # With --redis-shards, "before" is the same code on one Redis.
        trees["before"] = source_dir(args.before_src or args.after_src)
    with Servers() as servers:
        async with contextlib.AsyncExitStack() as stack:
            sets = list(
                await asyncio.gather(
                    *(
                        start_set(n, src, servers, stack, redis_bin, args)
                        for n, src in trees.items()
                    )
                )
            )
            for nodeset, secs in zip(sets, await asyncio.gather(*map(connect, sets)), strict=True):
                print(f"{nodeset.name} ({nodeset.revision}): connected in {secs:.1f} s", flush=True)
            ours = [os.getpid(), *(p for nodeset in sets for p in nodeset.pids())]
            closed = closed_loop(args.window)
            for nodeset in sets:
                warm = await one_rep(
                    nodeset, max(300, len(nodeset.channels) // 3), closed, 60, ours
                )
                nodeset.k = max(30, round(warm.publish_rate * args.duration))
                print(f"{nodeset.name}: warm-up {warm.publish_rate:,.0f} msg/s -> K={nodeset.k}")
            timeout = max(20.0, 15 * args.duration)
            await run_phase(sets, "closed", None, closed, timeout, args, ours)
            rate = args.rate or args.pace * min(
                median([r.publish_rate for r in s.reps["closed"]]) for s in sets
            )
            if rate > 0:
                k = max(10, round(rate * args.paced_duration))
                print(f"paced at {rate:,.1f} messages/s, K={k}", flush=True)
                await run_phase(sets, "paced", k, paced(rate), args.paced_duration + 30, args, ours)
    return sets
