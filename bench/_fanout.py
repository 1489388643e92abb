"""One fan-out repetition: K messages published to a server, N*K frames counted at its subscribers.

Shared by ``fanout.py`` (every server, round-robin) and ``latency.py`` (the maximum rate it
paces at a fraction of). ``Live`` is one server under test with its load client and its
publishing pool; ``one_rep`` measures a repetition (wall time, server and client CPU, the
server's wait for a CPU and its write calls); ``warm_up`` sizes K; ``summarize`` takes medians.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from _http_load import HttpPool, run_closed_loop
from _loadclient_driver import LoadClient
from _procs import cpu_seconds, runqueue_wait_seconds, write_syscalls
from _report import median
from _targets import Target, payload


@dataclass
class Rep:
    """What one repetition measured: K messages to N subscribers of one server."""

    n: int
    k: int
    secs: float
    server_cpu: float
    client_cpu: float
    server_wait: float
    """Seconds the server's threads were runnable but not running (another process had the CPU)."""
    count: int
    done: bool
    errors: int
    close_codes: dict[str, int]
    writes: int = 0
    """write/writev system calls the server made over the repetition (its replies included)."""

    @property
    def deliveries(self) -> int:
        return self.n * self.k

    @property
    def rate(self) -> float:
        return self.count / self.secs

    @property
    def us_per_delivery(self) -> float:
        return self.server_cpu / max(1, self.count) * 1e6


@dataclass
class Live:
    """One server under test, with its own load client and publishing pool."""

    name: str
    target: Target
    client: LoadClient
    pool: HttpPool
    pids: list[int]
    have: int = 0
    k: int = 0
    nap_ms: float = 0.0
    reps: dict[int, list[Rep]] = field(default_factory=dict)
    discarded: dict[int, int] = field(default_factory=dict)
    """Repetitions re-run because the server waited too long for a CPU."""


async def one_rep(live: Live, n: int, k: int, window: int, timeout: float) -> Rep:
    """Publish ``k`` messages, ``window`` in flight, and wait for the N*K frames (or ``timeout``)."""
    client = live.client
    await client.send(
        {"cmd": "arm", "target": n * k, "timeout": timeout, "throttle_ms": live.nap_ms}
    )
    await client.read(30)
    cpu0, ccpu0 = cpu_seconds(live.pids), cpu_seconds([client.pid])
    wait0 = runqueue_wait_seconds(live.pids)
    writes0 = write_syscalls(live.pids)
    t0 = time.time()
    build = live.target.build_publish
    _, statuses = await run_closed_loop(live.pool, k, lambda seq: build(payload(seq)), window)
    done = await client.read(timeout + 30)
    cpu1, ccpu1 = cpu_seconds(live.pids), cpu_seconds([client.pid])
    wait1 = runqueue_wait_seconds(live.pids)
    writes1 = write_syscalls(live.pids)
    return Rep(
        n,
        k,
        done["t_done"] - t0,
        cpu1 - cpu0,
        ccpu1 - ccpu0,
        wait1 - wait0,
        done["count"],
        done["done"],
        sum(v for status, v in statuses.items() if status >= 300),
        done.get("close_codes", {}),
        writes1 - writes0,
    )


async def warm_up(live: Live, n: int, duration: float, window: int) -> Rep:
    """Warm JITs, caches and buffers; size K for about ``duration`` seconds a repetition."""
    warm = await one_rep(live, n, max(5, 20_000 // n), window, 60)
    live.k = max(6, min(3000, round(warm.rate * duration / n)))
    return warm


def summarize(reps: list[Rep]) -> dict[str, float]:
    """Medians of the repetitions without loss (of all of them if every one lost frames)."""
    good = [r for r in reps if r.done] or reps
    return {
        "rate": median([r.rate for r in good]),
        "rate_lo": min(r.rate for r in good),
        "rate_hi": max(r.rate for r in good),
        "us": median([r.us_per_delivery for r in good]),
        "server_util": median([r.server_cpu / r.secs for r in good]),
        "client_util": median([r.client_cpu / r.secs for r in good]),
        "server_wait": median([r.server_wait / r.secs for r in good]),
        "per_write": median([r.count / r.writes if r.writes else 0.0 for r in good]),
        "k": good[0].k,
        "reps": len(good),
    }
