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
import time
import tracemalloc
from pathlib import Path

from _cli import run_main
from _loadclient_driver import LoadClient
from _procs import machine_summary, rss_bytes
from _servers import HOST
from _targets import CHANNEL, Target


def short(filename: str) -> str:
    for marker in ("site-packages/", "src/", "lib/python3"):
        i = filename.find(marker)
        if i >= 0:
            return filename[i + len(marker) :]
    return filename


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=2000, help="connections (default 2000)")
    parser.add_argument(
        "--subscribe", action="store_true", help="also SUBSCRIBE each one to a channel"
    )
    args = parser.parse_args()
    n = args.connections

    from switchboard.server.config import Settings
    from switchboard.server.node import Node

    print(f"# Idle-connection memory breakdown — {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"Machine: {machine_summary()}\n")
    with tempfile.TemporaryDirectory(prefix="sb-bench-") as tmp:
        node = Node(Settings(host=HOST, port=0, data_dir=Path(tmp) / "data"))
        await node.start()
        try:
            assert node.bootstrap is not None
            project_id = node.bootstrap.project.id
            await node.service.create_channel(node.bootstrap.project, "unprotected", CHANNEL)
            ws = {
                "port": node.port,
                "path": "/ws?encoding=json&compression=none",
                "proto": "leap",
                "project_id": project_id,
                "channel": CHANNEL if args.subscribe else None,
            }
            target = Target("switchboard (in process)", None, ws, node.port, lambda d: b"")  # type: ignore[arg-type]
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
                for stat in after.compare_to(before, "lineno")[:25]:
                    frame = stat.traceback[0]
                    code = linecache.getline(frame.filename, frame.lineno).strip()
                    print(
                        f"  {stat.size_diff / n:8.0f}  {stat.count_diff / n:5.1f}  "
                        f"{short(frame.filename)}:{frame.lineno}  {code[:70]}"
                    )
                print(
                    "\n## Switchboard's own lines (bytes per connection; blocks per connection)\n"
                )
                own = [
                    st
                    for st in after.compare_to(before, "lineno")
                    if "switchboard/" in st.traceback[0].filename
                ]
                for stat in own[:15]:
                    frame = stat.traceback[0]
                    code = linecache.getline(frame.filename, frame.lineno).strip()
                    print(
                        f"  {stat.size_diff / n:8.0f}  {stat.count_diff / n:5.1f}  "
                        f"{short(frame.filename)}:{frame.lineno}  {code[:70]}"
                    )
            tracemalloc.stop()
        finally:
            await node.stop()
    return 0


if __name__ == "__main__":
    run_main(main)
