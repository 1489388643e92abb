"""A benchmark's command line: its options, declared once with their defaults, and running its main.

Every script's ``--help`` is its module docstring. Many options have two defaults, the normal
one and a smaller one under ``--quick``: ``Command.option`` takes both and writes them into the
help text, and ``Command.parse`` fills in the one that applies, so that no script repeats
``args.x or (a if args.quick else b)``. Comma-separated lists (``--sizes``; the names of
``--peers``, ``--servers``, ``--configs``, checked against what the script can run) are parsed
here too, and the options several scripts share (``--retries``, ``--history``, ``--profile``)
are declared once. ``run_main`` runs a benchmark's async main on uvloop, as the servers run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from _procs import raise_nofile

T = TypeVar("T")

_NO_QUICK: Any = object()
"""``option(quick=…)`` left out: ``--quick`` does not change this option."""


def comma_ints(text: str) -> list[int]:
    """``--sizes 5000,1000`` → ``[1000, 5000]``: the benchmarks run sizes smallest first."""
    return sorted(int(x) for x in text.split(","))


def _shown(value: object) -> str:
    """A default as the help text shows it: lists comma-separated, empty ones as "none"."""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "none"
    return str(value) or "none"


class Command:
    """One benchmark's argument parser, with ``--quick`` defaults and checked lists of names."""

    def __init__(self, doc: str | None, *, quick: str | None = None) -> None:
        """``doc`` is the script's docstring (its ``--help``); ``quick`` the help of ``--quick``,
        if the script has a quick mode."""
        self.parser = argparse.ArgumentParser(
            description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        self._quick_defaults: dict[str, tuple[object, object]] = {}
        self._name_lists: dict[str, tuple[Sequence[str], str]] = {}
        if quick is not None:
            self.parser.add_argument("--quick", action="store_true", help=quick)

    def option(
        self,
        flag: str,
        help: str,
        default: object,
        *,
        quick: object = _NO_QUICK,
        type: Callable[[str], object] = str,
        note: str = "",
        metavar: str | None = None,
    ) -> None:
        """An option taking a value; its help ends with its defaults: ``(default D; --quick Q)``."""
        shown = f"default {_shown(default)}"
        if quick is not _NO_QUICK:
            shown += f"; --quick {_shown(quick)}"
        if note:
            shown += f"; {note}"
        # With a --quick default, argparse's default stays None: parse() can then tell an option
        # left out (either default applies) from one given (it wins, also under --quick).
        action = self.parser.add_argument(
            flag,
            type=type,
            default=default if quick is _NO_QUICK else None,
            metavar=metavar,
            help=f"{help} ({shown})",
        )
        if quick is not _NO_QUICK:
            self._quick_defaults[action.dest] = (default, quick)

    def names(
        self,
        flag: str,
        help: str,
        default: Sequence[str],
        *,
        allowed: Sequence[str],
        what: str,
        quick: Sequence[str] | None = None,
    ) -> None:
        """A comma-separated list of names, each one of ``allowed`` (else a usage error naming
        it as a ``what``); parsed to a list."""
        self.option(flag, help, list(default), quick=_NO_QUICK if quick is None else list(quick))
        self._name_lists[flag.lstrip("-").replace("-", "_")] = (allowed, what)

    def switch(self, flag: str, help: str) -> None:
        self.parser.add_argument(flag, action="store_true", help=help)

    def retries(self) -> None:
        """``--retries``: how often a repetition disturbed by other work may be re-run."""
        self.option(
            "--retries",
            "re-runs allowed per repetition",
            1,
            type=int,
            note="0 keeps every run",
        )

    def history(self) -> None:
        """``--history SIZE``: turn the channel's history on (docs/history.md)."""
        self.option(
            "--history",
            "keep the last SIZE messages of the Switchboard channel, none if 0",
            0,
            type=int,
            metavar="SIZE",
        )

    def profile(self, help: str) -> None:
        """``--profile`` (py-spy Switchboard, ``_profile.py``) and ``--native`` with it."""
        self.switch("--profile", help)
        self.switch("--native", "with --profile: include native (C) frames")

    def parse(self) -> argparse.Namespace:
        """The arguments, every ``--quick`` default filled in and every list of names checked."""
        args = self.parser.parse_args()
        quick = getattr(args, "quick", False)
        for dest, (normal, fast) in self._quick_defaults.items():
            if getattr(args, dest) is None:
                setattr(args, dest, fast if quick else normal)
        for dest, (allowed, what) in self._name_lists.items():
            value = getattr(args, dest)
            if isinstance(value, str):
                value = [x.strip() for x in value.split(",") if x.strip()]
                setattr(args, dest, value)
            for name in value:
                if name not in allowed:
                    self.parser.error(f"unknown {what} {name!r}; choose from {', '.join(allowed)}")
        return args


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
