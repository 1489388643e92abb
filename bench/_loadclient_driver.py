"""The benchmark's side of the load client: ``LoadClient`` starts ``_loadclient.py`` and drives it.

The load client is a separate process (so its CPU is not the benchmark's nor the server's),
spoken to over its stdin/stdout, one JSON object per line; its commands are listed in
``_loadclient.py``'s docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from _procs import BENCH_DIR, PYTHON, die_with_parent
from _servers import HOST
from _targets import Target


class LoadClient:
    """Drives ``_loadclient.py`` over its stdin/stdout, one JSON object per line."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> LoadClient:
        self.proc = await asyncio.create_subprocess_exec(
            PYTHON,
            str(BENCH_DIR / "_loadclient.py"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            preexec_fn=die_with_parent,
            limit=2**24,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def send(self, msg: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
        await self.proc.stdin.drain()

    async def read(self, timeout: float | None = None) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError("the load client exited")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"load client: {answer['error']}")
        return answer

    async def call(self, msg: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        await self.send(msg)
        return await self.read(timeout)

    async def connect(self, target: Target, n: int, **extra: Any) -> dict[str, Any]:
        """Open ``n`` more connections to ``target`` and wait until every one is subscribed."""
        spec = {"host": HOST, **target.ws, **extra}
        answer = await self.call({"cmd": "connect", "spec": spec, "n": n}, timeout=600)
        if answer["failed"]:
            raise RuntimeError(
                f"{target.name}: {answer['failed']} of {n} connections failed: {answer['errors']}"
            )
        if answer.get("retried"):
            print(
                f"  {target.name}: {answer['retried']} of {n} connections failed once and were "
                f"opened again: {answer['retry_errors']}",
                flush=True,
            )
        return answer

    async def arm(self, target: int, timeout: float, **extra: Any) -> None:
        """Reset the counts and wait for ``target`` frames (``_loadclient.py``'s ``arm``); the
        answer comes with ``done()``."""
        await self.call({"cmd": "arm", "target": target, "timeout": timeout, **extra}, 30)

    async def done(self, timeout: float) -> dict[str, Any]:
        """The answer of the last ``arm``: frames counted, when the target was reached."""
        return await self.read(timeout)

    async def per_conn(self) -> list[int]:
        """Frames each connection counted since the last ``arm`` (call after ``done``)."""
        counts: list[int] = (await self.call({"cmd": "per_conn"}, 60))["counts"]
        return counts


def frame_check(counts: list[int], expected: int | list[int]) -> dict[str, int]:
    """Per connection, frames missing and frames beyond the expected number (a duplicate or a
    stray), and the connections with either; ``expected`` is one number for all or one each."""
    want = [expected] * len(counts) if isinstance(expected, int) else expected
    lost = extra = bad = 0
    for got, exp in zip(counts, want, strict=True):
        if got != exp:
            bad += 1
            if got < exp:
                lost += exp - max(got, 0)
            else:
                extra += got - exp
    return {"lost": lost, "extra": extra, "bad_conns": bad}
