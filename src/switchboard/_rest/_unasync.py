"""Write the sync server SDK from the async one: ``python -m switchboard._rest._unasync``.

The async client is the only hand-written one: ``_async_api.py`` and its parts
``_channels_async.py``, ``_tokens_async.py``, ``_project_async.py`` and
``_transport_async.py`` (:data:`SOURCES`). Each one's sync twin (``_sync_api.py``,
``_channels_sync.py``...) is this script's output, so the two can never drift apart.
Run with ``--check`` (the test suite does) to fail instead of writing when a file on
disk is stale. The script needs only the standard library: when the package does not
import (a twin missing after a new split), run the file itself,
``python src/switchboard/_rest/_unasync.py``.

A new async module goes into :data:`SOURCES` (and its twin into ``GENERATED`` in
``tests/test_house.py``); name it ``_<part>_async.py`` like ``_io_async.py``, so that its
twin's imports sort as its own do. A generated module's docstring is the first line of
its source's, in sync words. The output must pass ``ruff check`` and ``ruff format
--check`` as is. Removing ``async``/``await`` only shortens lines; where that would let
the formatter join a wrapped signature, keep it wrapped in the source with a trailing
comma.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = tuple(
    HERE / name
    for name in (
        "_async_api.py",
        "_channels_async.py",
        "_tokens_async.py",
        "_project_async.py",
        "_transport_async.py",
    )
)
"""Every hand-written async module; each one's twin is :func:`target_of` it."""

HEADER = '''\
# Generated from {name} by `python -m switchboard._rest._unasync`. Do not edit:
# edit {name} and run that command again (a test fails while they differ).
"""{summary}

Generated from :mod:`switchboard._rest.{stem}`; see there.
"""
'''

RULES: list[tuple[str, str]] = [
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\baclose\b", "close"),
    # AsyncSwitchboard, AsyncTransport, httpx.AsyncClient ... lose their prefix.
    (r"(?<![A-Za-z])Async(?=[A-Z])", ""),
    # Modules: _io_async -> _io_sync, _channels_async -> _channels_sync ...
    (r"\b(_\w+?)_async\b", r"\1_sync"),
]

_DOCSTRING = re.compile(r'\A"""((?:.|\n)*?)"""\n', re.MULTILINE)


def target_of(source: Path) -> Path:
    """The generated twin of an async module: ``_x_async.py`` -> ``_x_sync.py``."""
    return source.with_name(re.sub(r"(?<=_)async(?=[_.])", "sync", source.name, count=1))


def _sync(text: str) -> str:
    for pattern, replacement in RULES:
        text = re.sub(pattern, replacement, text)
    return text


def generate(source: str, name: str) -> str:
    """The sync module's text for the text of the async module ``name``."""
    match = _DOCSTRING.match(source)
    if match is None:
        raise ValueError(f"{name} must start with its docstring")
    summary = _sync(re.sub(r"\basync\b", "sync", match.group(1).splitlines()[0]))
    header = HEADER.format(name=name, stem=Path(name).stem, summary=summary)
    text = header + _sync(source[match.end() :])
    leftover = re.search(r"\b(async|await|asyncio)\b", text)
    if leftover:
        line = text[: leftover.start()].count("\n") + 1
        raise ValueError(
            f"no rule for {leftover.group(0)!r} ({target_of(Path(name)).name} line {line})"
        )
    return text


def stale() -> list[Path]:
    """The generated modules on disk that differ from their source (or are missing)."""
    return [
        target_of(source)
        for source in SOURCES
        if not target_of(source).exists()
        or target_of(source).read_text() != generate(source.read_text(), source.name)
    ]


def main(argv: list[str]) -> int:
    if "--check" in argv:
        found = stale()
        for path in found:
            print(f"{path.name} is stale: run python -m switchboard._rest._unasync")
        return 1 if found else 0
    for source in SOURCES:
        target_of(source).write_text(generate(source.read_text(), source.name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
