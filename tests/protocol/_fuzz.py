"""The core of the protocol fuzzing: profiles, frame strategies, mutations and an oracle.

Used by ``tests/protocol/test_fuzz.py`` (the session state machine),
``tests/protocol/test_frames_fuzz.py`` (random and mutated frames),
``tests/edge/test_gateway_fuzz.py`` (mutated frames over a real socket) and
``scripts/fuzz-protocol`` (the same properties for minutes, with the ``long`` profile).

The oracle, :func:`expected`, reads SPEC §3 independently of the code under test: it
parses a frame with the standard library's ``json`` (not msgspec) and says what the
session must do with it: close with 4003, 4004 or 4005, or which intent or reply it
must hand out. The fuzz tests compare the session against it, frame by frame.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from switchboard.server.protocol.session import SessionLimits

# Profiles. "fuzz-ci" is the suite's: deterministic (the same cases every run, so the
# suite never fails on a case it has not seen before) and small. "fuzz-long" is the
# long run's: random, no example database (every round explores anew) and the blob
# to reproduce a failure printed. Not named "ci": Hypothesis has a built-in profile of
# that name, and this module must not replace it for the rest of the test session.

_COMMON: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
    "print_blob": True,
}
settings.register_profile("fuzz-ci", derandomize=True, database=None, **_COMMON)
settings.register_profile("fuzz-long", derandomize=False, database=None, **_COMMON)

PROFILE = "fuzz-long" if os.environ.get("SWITCHBOARD_FUZZ_PROFILE") == "long" else "fuzz-ci"


def fuzz_settings(examples: int, **overrides: Any) -> settings:
    """The current profile with ``examples`` examples (the suite's count for a property)."""
    return settings(settings.get_profile(PROFILE), max_examples=examples, **overrides)


CASES: collections.Counter[str] = collections.Counter()
"""How many cases each property has run in this process (the long run prints the sum)."""


def limits(**overrides: float) -> SessionLimits:
    """Session limits with ``overrides``, skipping any field this version does not have.

    Fuzzing must not trip the flood guard by accident (a property about close codes
    would see 4008); fields are set only where the session has them.
    """
    names = {f.name for f in dataclasses.fields(SessionLimits)}
    generous = {"frames_per_second": 1e9, "flood_strikes": 1e9}
    values = {k: v for k, v in {**generous, **overrides}.items() if k in names}
    return SessionLimits(**values)  # type: ignore[arg-type]


# JSON values and their text.


@dataclass(frozen=True)
class Lit:
    """A JSON number written exactly as ``text`` (``1e400``, ``2**70``, ``-0``...)."""

    text: str


@dataclass(frozen=True)
class Deep:
    """``value`` inside ``depth`` nested arrays."""

    depth: int
    value: Any


NUMBER_LITERALS = [
    "1e400",
    "-1e400",
    "1e-400",
    str(2**70),
    str(-(2**70)),
    str(2**64),
    str(2**63),
    "-0",
    "0.0",
    "-0.0",
    "1E+2",
    "1.5e3",
    "9" * 400,
    "9" * 5000,  # past the interpreter's 4300 digits for an int
]

# Strings: every code point but surrogates (they have no UTF-8 form; lone surrogates
# are fuzzed on purpose, elsewhere), NUL and controls included; and a few long ones.
texts = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["", "\x00", "a\x00b", "é", "\u2028", "\ufeff", "😀", "x" * 70_000]
)
scalars: st.SearchStrategy[Any] = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
    | st.sampled_from(NUMBER_LITERALS).map(Lit)
)
json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(texts, inner, max_size=4)
        # Shallow nesting (both parsers take it) or 10,000 levels (neither does):
        # between the two, where each gives up depends on the stack in use.
        | st.builds(Deep, st.sampled_from([1, 20, 10_000]), inner)
    ),
    max_leaves=8,
)


def dump(value: Any, ascii_only: bool = False) -> str:
    """JSON text for a value of :data:`json_values`."""
    if isinstance(value, Lit):
        return value.text
    if isinstance(value, Deep):
        return "[" * value.depth + dump(value.value, ascii_only) + "]" * value.depth
    if isinstance(value, list):
        return "[" + ",".join(dump(v, ascii_only) for v in value) + "]"
    if isinstance(value, dict):
        items = (
            json.dumps(k, ensure_ascii=ascii_only) + ":" + dump(v, ascii_only)
            for k, v in value.items()
        )
        return "{" + ",".join(items) + "}"
    return json.dumps(value, ensure_ascii=ascii_only)


def obj(**fields: Any) -> dict[str, Any]:
    return fields


# Frames a client might send: right, nearly right and wrong in every position.

EVENTS = ["SUBSCRIBE", "UNSUBSCRIBE", "MESSAGE", "SET_CHANNEL_STATE", "PIPE_ROOM_SUBSCRIBE"]


@st.composite
def frame_values(draw: st.DrawFn) -> Any:
    """A client frame as a value: mostly well formed, any part possibly replaced."""

    def maybe(strategy: st.SearchStrategy[Any]) -> Any:
        # One field in four takes any JSON value instead of a fitting one.
        return draw(st.one_of(strategy, json_values) if draw(st.integers(0, 3)) == 0 else strategy)

    op = maybe(st.sampled_from([0, 0, 0, 2, 2, 3, 3, 1, 4, 5, -1, 2**70]))
    kind = draw(st.sampled_from(["identify", "heartbeat", "dispatch", "message", "any"]))
    d: Any
    if kind == "identify":
        d = obj(project_id=maybe(texts))
        if draw(st.booleans()):
            d["token"] = maybe(st.none() | texts)
    elif kind == "heartbeat":
        d = draw(st.sampled_from([None, {}])) if draw(st.booleans()) else obj(tag=maybe(texts))
    elif kind in ("dispatch", "message"):
        d = obj(e=maybe(st.sampled_from(EVENTS)), c=maybe(st.none() | st.just("room") | texts))
        if kind == "message":
            d["e"] = "MESSAGE"
            d["d"] = maybe(st.builds(obj, e=texts, d=json_values))
        elif draw(st.booleans()):
            d["d"] = draw(json_values)
    else:
        d = draw(json_values)
    frame: dict[str, Any] = {"op": op}
    if draw(st.integers(0, 7)):
        frame["d"] = d
    if draw(st.integers(0, 7)) == 0:
        frame[draw(texts)] = draw(json_values)  # an extra key, ignored
    return draw(st.sampled_from([frame, frame, frame, draw(json_values)]))


@st.composite
def frame_texts(draw: st.DrawFn) -> str:
    return dump(draw(frame_values()), ascii_only=draw(st.booleans()))


# Mutations: data, so hypothesis shrinks them and the e2e fuzz can draw them from a
# seeded Random without hypothesis.

NASTY = [
    b"\x00",
    b"\xff",
    b"\xc3",  # a UTF-8 lead byte with nothing after it
    b"\xed\xa0\x80",  # a UTF-8-encoded surrogate
    b"\xef\xbb\xbf",  # a BOM
    b'"',
    b"\\",
    b'"\\ud800"',
    b'"\\udc00\\ud800"',
    b"\\u0000",
    b"[",
    b"]",
    b"{",
    b"}",
    b",",
    b":",
    b"1e400",
    str(2**70).encode(),
    b"NaN",
    b"Infinity",
    b"-",
    b".5",
    b"01",
    b" ",
    b"\t\n\r",
    b"\x0b",
    b"\xc2\xa0",
    b"[" * 10_000,
    b"x" * 100_000,
]


@dataclass(frozen=True)
class Mutation:
    kind: str
    """truncate, flip, insert, delete, duplicate, zlib, zlib_cut, as_bytes, surrogate."""
    at: float
    """Where, as a fraction of the frame's length."""
    arg: int
    """A bit, an index into :data:`NASTY`, a length or a compression level."""


MUTATION_KINDS = [
    "truncate",
    "flip",
    "insert",
    "insert",
    "delete",
    "duplicate",
    "zlib",
    "zlib_cut",
    "as_bytes",
    "surrogate",
]

mutations = st.builds(
    Mutation,
    st.sampled_from(MUTATION_KINDS),
    st.floats(0, 1, allow_nan=False),
    st.integers(0, 1 << 16),
)


def mutate(frame: str, steps: list[Mutation]) -> str | bytes:
    """Apply ``steps`` to ``frame``; the result is text if it still is, else bytes.

    A text result is what a WebSocket text frame holds (aiohttp hands the session a
    str); bytes is a binary frame. ``as_bytes`` forces a binary frame; ``surrogate``
    puts a lone surrogate into a str, which no UTF-8 text frame can carry but a
    caller of the sans-I/O session can pass.
    """
    data = frame.encode()
    binary = False
    lone_surrogate_at: float | None = None
    for m in steps:
        i = int(m.at * len(data))
        if m.kind == "truncate":
            data = data[:i]
        elif m.kind == "flip" and data:
            i = min(i, len(data) - 1)
            data = data[:i] + bytes([data[i] ^ (1 << (m.arg % 8))]) + data[i + 1 :]
        elif m.kind == "insert":
            data = data[:i] + NASTY[m.arg % len(NASTY)] + data[i:]
        elif m.kind == "delete":
            data = data[:i] + data[i + 1 + m.arg % 8 :]
        elif m.kind == "duplicate":
            data = data[:i] + data[i : i + 1 + m.arg % 16] + data[i:]
        elif m.kind == "zlib":
            data, binary = zlib.compress(data, m.arg % 10), True
        elif m.kind == "zlib_cut":
            packed = zlib.compress(data)
            data, binary = packed[: max(1, int(m.at * (len(packed) - 1)))], True
        elif m.kind == "as_bytes":
            binary = True
        elif m.kind == "surrogate":
            lone_surrogate_at = m.at
    if binary:
        return data
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return data
    if lone_surrogate_at is not None:
        i = int(lone_surrogate_at * len(text))
        text = text[:i] + "\ud800" + text[i:]
    return text


# The oracle.


@dataclass(frozen=True)
class Outcome:
    """What the session must do with one frame."""

    close: int | None = None
    """The close code, or None if the connection stays open."""
    kind: str = ""
    """Open: ack, identify, subscribe, unsubscribe, publish, ignored, error:<code>."""
    value: Any = None
    """ack: the tag; identify: (project_id, token); subscribe/unsubscribe: the channel;
    publish: (channel, event, data as a value)."""


class _Invalid(Exception):
    """Not JSON, as SPEC §3 means it (and RFC 8259)."""


class _HugeInt:
    """An integer with more digits than the interpreter will convert."""


def _parse_constant(name: str) -> Any:
    raise _Invalid(name)  # NaN, Infinity, -Infinity are not JSON


def _parse_int(text: str) -> Any:
    digits = len(text.lstrip("-"))
    return _HugeInt() if digits > sys.get_int_max_str_digits() else int(text)


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    return False


def parse(data: str | bytes) -> Any:
    """Parse strict JSON with the standard library, or raise :class:`_Invalid`."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        text.encode("utf-8")  # a str with a lone surrogate has no UTF-8 form
        value = json.loads(text, parse_constant=_parse_constant, parse_int=_parse_int)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeError
        raise _Invalid(str(exc)) from exc
    # json accepts "\ud800" escapes; a lone surrogate is not a Unicode string.
    if _has_surrogate(value):
        raise _Invalid("lone surrogate")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def expected(data: str | bytes, identified: bool, lim: SessionLimits) -> Outcome:
    """What SPEC §3 says the session must do with ``data``.

    ``identified``: INIT was sent (else the session waits for IDENTIFY). Message size
    limits are not judged here (the raw size of ``d`` is not known after parsing):
    callers use a payload limit no frame of theirs reaches.
    """
    bad = Outcome(close=4005)
    try:
        frame = parse(data)
    except _Invalid:
        return bad
    if not isinstance(frame, dict):
        return bad
    op = frame.get("op")
    if isinstance(op, _HugeInt):
        # An op too long to read as a number is not of the right shape.
        return bad
    if not _is_int(op):
        return bad
    d = frame.get("d")
    if op == 3:
        if d is None:
            return Outcome(kind="ack")
        if not isinstance(d, dict):
            return bad
        tag = d.get("tag")
        if tag is not None and not isinstance(tag, str):
            return bad
        return Outcome(kind="ack", value=tag)
    if op == 2:
        if identified:
            return bad  # IDENTIFY twice
        if not isinstance(d, dict) or not isinstance(d.get("project_id"), str):
            return bad
        token = d.get("token")
        if token is not None and not isinstance(token, str):
            return bad
        return Outcome(kind="identify", value=(d["project_id"], token or None))
    if op == 0:
        if not identified:
            return Outcome(close=4003)
        if not isinstance(d, dict) or not isinstance(d.get("e"), str):
            return bad
        channel, event = d.get("c"), d["e"]
        if channel is not None and not isinstance(channel, str):
            return bad
        if event not in ("SUBSCRIBE", "UNSUBSCRIBE", "MESSAGE", "SET_CHANNEL_STATE"):
            return Outcome(kind="ignored")
        if not channel:
            return bad
        if event == "SUBSCRIBE":
            return Outcome(kind="subscribe", value=channel)
        if event == "UNSUBSCRIBE":
            return Outcome(kind="unsubscribe", value=channel)
        if event == "SET_CHANNEL_STATE":
            return Outcome(kind="error:forbidden", value=channel)
        message = d.get("d")
        if not isinstance(message, dict) or not isinstance(message.get("e"), str):
            return bad
        if not 1 <= len(message["e"]) <= lim.max_event_name:
            return Outcome(kind="error:invalid_request", value=channel)
        return Outcome(kind="publish", value=(channel, message["e"], message.get("d")))
    return Outcome(close=4004)


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values (1 and 1.0 differ; nan never appears)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, _HugeInt):
        return True
    return bool(a == b)


def reason_fits_a_close_frame(reason: str) -> bool:
    """The gateway sends ``reason.encode()[:120]``: that must still be UTF-8."""
    try:
        reason.encode()[:120].decode()
    except UnicodeError:
        return False
    return True


Property = Callable[..., None]
