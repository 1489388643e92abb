"""Profiles: py-spy on a server through some load, and its top frames as text (``--profile``).

py-spy samples the server process from outside (``--gil``: only when it holds the GIL, i.e.
runs Python; ``--native`` adds C frames); nothing in the server changes for it.
"""

from __future__ import annotations

import asyncio
import collections
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path


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


async def profile_during(
    pid: int,
    seconds: float,
    native: bool,
    load: Callable[[], Awaitable[object]],
    *,
    file_name: str,
    what: str,
) -> str:
    """py-spy ``pid`` for ``seconds`` while ``load()`` runs; the report, or "" without py-spy."""
    raw = Path(tempfile.mkdtemp(prefix="sb-bench-profile-")) / file_name
    proc = start_py_spy(pid, seconds, raw, native)
    if proc is None:
        return ""
    await asyncio.sleep(0.5)
    await load()
    while proc.poll() is None:
        await asyncio.sleep(0.2)
    if not raw.exists():
        assert proc.stderr is not None
        return f"\n--profile: py-spy failed: {proc.stderr.read().decode()[-500:]}"
    return profile_report(raw, what)


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
