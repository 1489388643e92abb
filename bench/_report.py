"""Reports: the header every benchmark prints first, medians, numbers, Markdown tables, loss notes.

Benchmarks print Markdown (``table``) so that a run can be pasted into bench/README.md as is.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Protocol

from _procs import machine_summary


def header(title: str) -> None:
    """What ran, when, and on which machine and code: the first lines of every benchmark."""
    print(f"# {title} — {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"Machine: {machine_summary()}")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_int(x: float) -> str:
    return "—" if x != x else f"{x:,.0f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(lines)


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


class Repetition(Protocol):
    """What a loss note reads of a fan-out repetition (``_fanout.Rep``, ``_cluster.Rep``)."""

    count: int
    done: bool
    errors: int
    close_codes: dict[str, int]

    @property
    def deliveries(self) -> int: ...


def loss_note(reps: Sequence[Repetition], reruns: int, why: str) -> str:
    """The "loss (notes)" cell: the first loss, runs re-run because ``why``, publish errors."""
    loss = "none"
    bad = [r for r in reps if not r.done]
    if bad:
        r = bad[0]
        loss = f"LOST {r.deliveries - r.count:,} of {r.deliveries:,} (close codes {r.close_codes})"
    if reruns:
        loss += f" ({reruns} {why} runs re-run)"
    errors = sum(r.errors for r in reps)
    if errors:
        loss += f", {errors} publish errors"
    return loss
