"""Write the sync server SDK from the async one: ``python -m switchboard._rest._unasync``.

``_async_api.py`` is the only hand-written client; ``_sync_api.py`` is this script's
output, so the two can never drift apart. Run with ``--check`` (the test suite does)
to fail instead of writing when the file on disk is stale.

The output must pass ``ruff format --check`` as is. Removing ``async``/``await`` only
shortens lines; where that would let the formatter join a wrapped signature, keep it
wrapped in the source with a trailing comma.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "_async_api.py"
TARGET = HERE / "_sync_api.py"

HEADER = '''\
# Generated from _async_api.py by `python -m switchboard._rest._unasync`. Do not edit:
# edit _async_api.py and run that command again (a test fails while they differ).
"""The sync server SDK: :class:`Switchboard`.

Generated from :mod:`switchboard._rest._async_api`; see there.
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
    # AsyncSwitchboard, _AsyncTransport, httpx.AsyncClient ... lose their prefix.
    (r"(?<![A-Za-z])Async(?=[A-Z])", ""),
    (r"\b_io_async\b", "_io_sync"),
]

_DOCSTRING = re.compile(r'\A"""(?:.|\n)*?"""\n', re.MULTILINE)


def generate(source: str) -> str:
    """The sync module's text for the async module's text."""
    body, count = _DOCSTRING.subn("", source, count=1)
    if count != 1:
        raise ValueError("the async module must start with its docstring")
    for pattern, replacement in RULES:
        body = re.sub(pattern, replacement, body)
    leftover = re.search(r"\b(async|await|asyncio)\b", body)
    if leftover:
        line = body[: leftover.start()].count("\n") + 1
        raise ValueError(f"no rule for {leftover.group(0)!r} (output line {line})")
    return HEADER + body


def main(argv: list[str]) -> int:
    expected = generate(SOURCE.read_text())
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text() != expected:
            print(f"{TARGET.name} is stale: run python -m switchboard._rest._unasync")
            return 1
        return 0
    TARGET.write_text(expected)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
