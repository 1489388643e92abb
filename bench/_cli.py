"""Running a benchmark: ``run_main`` runs its async main on uvloop, as the servers run."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from _procs import raise_nofile

T = TypeVar("T")


def run_on_uvloop(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` on uvloop when installed (as the servers do), else on asyncio's loop; every
    process of a run first raises its open-file limit."""
    raise_nofile()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())


def run_main(main: Callable[[], Coroutine[Any, Any, int]]) -> None:
    """Run a benchmark's async main (``run_on_uvloop``); exit with its code, 130 on Ctrl-C."""
    code: int
    try:
        code = run_on_uvloop(main)
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped", file=sys.stderr)
        code = 130
    sys.exit(code)
