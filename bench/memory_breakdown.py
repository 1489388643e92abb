"""Where an idle connection's memory goes: a tracemalloc breakdown (an analysis aid, not a benchmark).

    .venv/bin/python bench/memory_breakdown.py [--connections 2000] [--subscribe]

Runs a Switchboard node *in this process* (``switchboard.server.node.Node``, unchanged) with
tracemalloc on, opens N identified connections from the load client (its own process), and
prints the Python allocations that the connections added, per connection, grouped by source
line and by file. tracemalloc sees what Python's allocators hand out (objects, buffers of C
extensions that use them); RSS also holds allocator slack and C allocations it cannot see,
so the total here is below bench/memory.py's figure. Tracing slows the server: no timings.
"""

from __future__ import annotations

import argparse
import asyncio
import linecache
import os
import tempfile
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING

from _cli import Command, run_main
from _loadclient_driver import LoadClient
from _procs import rss_bytes
from _report import header
from _servers import HOST
from _targets import CHANNEL, Target

if TYPE_CHECKING:
    from switchboard.server.node import Node


def short(filename: str) -> str:
    for marker in ("site-packages/", "src/", "lib/python3"):
        i = filename.find(marker)
        if i >= 0:
            return filename[i + len(marker) :]
    return filename


def command() -> Command:
    cmd = Command(__doc__)
    cmd.option("--connections", "connections", 2000, type=int)
    cmd.switch("--subscribe", "also SUBSCRIBE each one to a channel")
    return cmd


async def in_process_target(node: Node, subscribe: bool) -> Target:
    """The node of this process as a load-client target (no server process, no publishing)."""
    assert node.bootstrap is not None
    project_id = node.bootstrap.project.id
    await node.service.create_channel(node.bootstrap.project, "unprotected", CHANNEL)
    ws = {
        "port": node.port,
        "path": "/ws?encoding=json&compression=none",
        "proto": "leap",
        "project_id": project_id,
        "channel": CHANNEL if subscribe else None,
    }
    return Target("switchboard (in process)", None, ws, node.port, lambda d: b"")  # type: ignore[arg-type]


def print_lines(stats: list[tracemalloc.StatisticDiff], n: int) -> None:
    """Bytes and blocks per connection, by source line, with the line's code."""
    for stat in stats:
        frame = stat.traceback[0]
        code = linecache.getline(frame.filename, frame.lineno).strip()
        print(
            f"  {stat.size_diff / n:8.0f}  {stat.count_diff / n:5.1f}  "
            f"{short(frame.filename)}:{frame.lineno}  {code[:70]}"
        )


async def breakdown(target: Target, args: argparse.Namespace) -> None:
    """Open the connections between two tracemalloc snapshots and print what they added."""
    n = args.connections
    async with LoadClient() as warm:  # warm code paths and pools first
        await warm.connect(target, 100)
        await warm.call({"cmd": "close"})
    await asyncio.sleep(1.0)
    tracemalloc.start(12)
    rss0 = rss_bytes(os.getpid())
    before = tracemalloc.take_snapshot()
    async with LoadClient() as client:
        await client.connect(target, n)
        await asyncio.sleep(1.0)
        after = tracemalloc.take_snapshot()
        rss1 = rss_bytes(os.getpid())
        traced = sum(s.size_diff for s in after.compare_to(before, "filename"))
        print(
            f"{n:,} identified connections{' + 1 subscription each' if args.subscribe else ''}: "
            f"traced Python allocations {traced / n / 1024:.2f} KiB per connection, "
            f"RSS of this process {(rss1 - rss0) / n / 1024:.2f} KiB per connection "
            "(RSS includes tracemalloc's own bookkeeping)\n"
        )
        print("## By file (bytes per connection)\n")
        for stat in after.compare_to(before, "filename")[:15]:
            frame = stat.traceback[0]
            print(f"  {stat.size_diff / n:8.0f}  {short(frame.filename)}")
        print("\n## By line (bytes per connection; blocks per connection)\n")
        by_line = after.compare_to(before, "lineno")
        print_lines(by_line[:25], n)
        print("\n## Switchboard's own lines (bytes per connection; blocks per connection)\n")
        own = [st for st in by_line if "switchboard/" in st.traceback[0].filename]
        print_lines(own[:15], n)
    tracemalloc.stop()


async def main() -> int:
    args = command().parse()

    from switchboard.server.config import Settings
    from switchboard.server.node import Node

    header("Idle-connection memory breakdown")
    print()
    with tempfile.TemporaryDirectory(prefix="sb-bench-") as tmp:
        node = Node(Settings(host=HOST, port=0, data_dir=Path(tmp) / "data"))
        await node.start()
        try:
            await breakdown(await in_process_target(node, args.subscribe), args)
        finally:
            await node.stop()
    return 0


if __name__ == "__main__":
    run_main(main)
