"""This process's own figures (memory, open files, tasks, uptime), for ``GET /v1/stats``.

A soak test (``scripts/soak``) or an operator reads them from outside to tell a leak
from a steady state: resident memory, open file descriptors (sockets included) and
asyncio tasks should come back to where they were once the load that raised them is
gone. They are read from ``/proc/self`` (Linux); where that does not exist a figure is
``None`` rather than a guess. The task count works everywhere.
"""

from __future__ import annotations

import asyncio
import os
from typing import TypedDict


class ProcessFigures(TypedDict):
    rss_bytes: int | None
    open_fds: int | None
    asyncio_tasks: int
    uptime_s: float | None


_PROC = "/proc/self"


def rss_bytes() -> int | None:
    """Resident set size (``VmRSS`` of ``/proc/self/status``), or None off Linux."""
    try:
        with open(f"{_PROC}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024  # the kernel reports kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def open_fds() -> int | None:
    """Open file descriptors, not counting the one this count itself opens; None off Linux."""
    try:
        # listdir holds a descriptor on /proc/self/fd while it reads, and that
        # descriptor is in the listing: it is not one of the process's own.
        return len(os.listdir(f"{_PROC}/fd")) - 1
    except OSError:
        return None


def uptime_s() -> float | None:
    """Seconds since this process started (``/proc/self/stat`` and ``/proc/uptime``)."""
    try:
        with open(f"{_PROC}/stat", "rb") as f:
            stat = f.read()
        with open("/proc/uptime", "rb") as f:
            since_boot = float(f.read().split()[0])
        # Field 22 (starttime, in clock ticks after boot); the command name before it is
        # in parentheses and may contain spaces, so count from the last ")".
        start_ticks = int(stat[stat.rindex(b")") + 2 :].split()[19])
        return round(max(0.0, since_boot - start_ticks / os.sysconf("SC_CLK_TCK")), 1)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def process_figures() -> ProcessFigures:
    """The ``process`` object of ``GET /v1/stats`` (call it in the event loop's thread)."""
    return {
        "rss_bytes": rss_bytes(),
        "open_fds": open_fds(),
        "asyncio_tasks": len(asyncio.all_tasks()),
        "uptime_s": uptime_s(),
    }
